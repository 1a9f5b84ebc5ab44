"""Training-free activation sparsity by magnitude thresholding (TEAL, Liu et al. 2024).

The input of every linear layer (q/k/v share one input, then the attention output projection, the FFN
up-projection and the FFN down-projection) keeps only entries whose magnitude passes a threshold. The
thresholds are quantiles of the dense model's activations on calibration sentences at one sparsity
level shared by all sites; that level is bisected so the FLOPs fraction meets the budget. FLOPs count
the non-zeros each sentence really has (a linear with an input of ``z`` non-zeros costs ``2 z d_out``).

Its savings need sparse matrix-vector kernels (the paper's are GPU Triton kernels); this engine runs
it masked on dense matmuls, so it reports FLOPs, not wall-clock savings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metasparse.model.attention import attend
from metasparse.model.block import GatedBlock
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import EncoderOutput, GatedEncoder
from metasparse.model.features import Batch
from metasparse.model.flops import fixed_flops
from metasparse.scoring.methods import Method

SITES = ("qkv", "o", "w1", "w2")


def _sparse_block(blk: GatedBlock, x, mask, thr: dict[str, float] | None, record: dict | None, nnz: torch.Tensor):
    """One block with thresholded linear inputs; adds each sentence's FLOPs to ``nnz`` ``[B]`` and, with
    ``record``, collects the valid tokens' absolute activations per site."""
    B, T, d = x.shape
    H, dh = blk.n_heads, blk.d_head
    valid = mask[..., None]

    def cut(name: str, a: torch.Tensor, d_out: int) -> torch.Tensor:
        if record is not None:
            record.setdefault(name, []).append(a.abs()[mask].flatten())
        if thr is not None:
            a = a * (a.abs() > thr[name])
        nnz.add_(2.0 * d_out * ((a != 0) & valid).flatten(1).sum(1))
        return a

    h = cut("qkv", blk.attn_input(x), 3 * d)
    q = blk.q(h).view(B, T, H, dh).transpose(1, 2)
    k = blk.k(h).view(B, T, H, dh).transpose(1, 2)
    v = blk.v(h).view(B, T, H, dh).transpose(1, 2)
    n = mask.sum(1).to(x.dtype)
    nnz.add_(2 * 2 * n * n * d)  # scores and context stay dense
    ctx = cut("o", attend(q, k, v, mask, None).transpose(1, 2).reshape(B, T, d), d)
    x = blk.attn_residual(x, ctx @ blk.o_weight + blk.o_bias)  # pre- or post-LN, as the block is built
    a = F.gelu(blk.w1(cut("w1", blk.ffn_input(x), blk.w1.out_features)))
    return blk.ffn_residual(x, cut("w2", a, d) @ blk.w2_weight + blk.w2_bias)


class TealMethod(Method):
    """Magnitude-thresholded activations with per-layer, per-site thresholds.

    Args:
        model: the backbone.
        thresholds: ``[layer][site]`` absolute-value thresholds.
        sparsity: the shared quantile level they came from.
    """

    name, family = "teal", "training-free"

    def __init__(self, model: GatedEncoder, thresholds: list[dict[str, float]] | None, sparsity: float = 0.0) -> None:
        self.model, self.thresholds, self.sparsity = model, thresholds, sparsity
        self._flops: torch.Tensor | None = None

    def run(self, batch: Batch, record: list[dict] | None = None) -> EncoderOutput:
        nnz = torch.zeros(batch.size)
        thr = self.thresholds

        def layer(i, blk, x, m):
            return _sparse_block(blk, x, m, thr[i] if thr else None, record[i] if record is not None else None, nnz)

        out = self.model.forward_with(batch, layer)
        self._flops = nnz
        return out

    def forward(self, batch: Batch) -> EncoderOutput:
        return self.run(batch)

    def flops(self, batch: Batch, out: EncoderOutput) -> list[float]:
        spec = self.model.spec
        return [
            float(f) + fixed_flops(spec, n) for f, n in zip(self._flops.tolist(), batch.lengths.tolist(), strict=True)
        ]


@torch.no_grad()
def teal_calibrated(model: GatedEncoder, calib: EncodedCorpus, target: float, *, iters: int = 14) -> TealMethod:
    """Thresholds from the dense activations on ``calib``, at the sparsity level that meets ``target``."""
    model.eval()
    dense = TealMethod(model, None)
    record: list[dict] = [{} for _ in model.blocks]
    batches = [calib.batch(idx) for idx in calib.batches(4096, shuffle=False)]
    for b in batches:
        dense.run(b, record)
    acts = [{s: torch.cat(r[s]) for s in SITES} for r in record]
    # Subsample for quantiles: torch.quantile refuses very large inputs.
    gen = torch.Generator().manual_seed(0)
    acts = [{s: a[torch.randperm(a.numel(), generator=gen)[:200_000]] for s, a in r.items()} for r in acts]

    def at(level: float) -> TealMethod:
        thr = [{s: float(torch.quantile(a, level)) if level > 0 else 0.0 for s, a in r.items()} for r in acts]
        return TealMethod(model, thr, level)

    def fraction(m: TealMethod) -> float:
        used = total = 0.0
        for b in batches:
            o = m(b)
            used += sum(o.flops)
            total += sum(o.dense_flops)
        return used / total

    lo, hi = 0.0, 0.999  # FLOPs fall as the level rises: keep the lowest level within the target
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fraction(at(mid)) > target else (lo, mid)
    return at(hi)
