"""int8 dynamic quantization on top of gating: each prefix width the codebook uses gets its own
prepacked int8 weights (few patterns, so few prefixes), and sliced execution runs
``quantized.linear_dynamic`` on them. Activations stay fp32, quantized on the fly per batch."""

from __future__ import annotations

import copy
import warnings

import torch

from metasparse.model.block import GatedBlock
from metasparse.model.encoder import GatedEncoder


def _pack(weight_out_in: torch.Tensor, bias: torch.Tensor):
    w = weight_out_in.detach().contiguous()
    scale = w.abs().amax(1).clamp(min=1e-8) / 127.0
    with warnings.catch_warnings():  # torch marks quantized tensor constructors deprecated; still the CPU int8 path
        warnings.simplefilter("ignore")
        qw = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(qw, bias.detach().contiguous())


class QuantizedSlices:
    """Build an int8 copy of a gated encoder for inference."""

    @staticmethod
    def wrap(model: GatedEncoder) -> GatedEncoder:
        """A deep copy of ``model`` whose sliced linears run int8 for every prefix in its codebook."""
        q = copy.deepcopy(model).eval()
        heads = sorted({p.n_heads for p in q.codebook if not p.skip} | {q.spec.heads})
        groups = sorted({p.n_groups for p in q.codebook if not p.skip} | {q.spec.ffn_groups})
        for block in q.blocks:
            block.packed = QuantizedSlices._pack_block(block, heads, groups)
        return q

    @staticmethod
    def _pack_block(block: GatedBlock, heads: list[int], groups: list[int]) -> dict:
        packed = {}
        for h in heads:
            n = h * block.d_head
            for name in ("q", "k", "v"):
                lin = getattr(block, name)
                packed[name, n] = _pack(lin.weight[:n], lin.bias[:n])
            packed["o", n] = _pack(block.o_weight[:n].T, block.o_bias)
        for g in groups:
            f = g * block.group_size
            packed["w1", f] = _pack(block.w1.weight[:f], block.w1.bias[:f])
            packed["w2", f] = _pack(block.w2_weight[:f].T, block.w2_bias)
        return packed
