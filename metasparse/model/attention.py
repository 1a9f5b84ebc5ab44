"""Attention kernels in plain matmuls (second-order meta-learning needs double backward, which SDPA's
CPU flash kernel lacks), with an exact top-k variant that only multiplies the kept values. Without
autograd (inference, benchmarks) full attention runs as one fused SDPA call instead: at batch 1 the
five small ops it replaces cost more in dispatch than in arithmetic."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import flop_registry, register_flop_formula, sdpa_flop_count

_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
if _CPU_SDPA.default not in flop_registry and _CPU_SDPA not in flop_registry:
    # torch counts the fused attention kernels of GPUs but not this CPU one, which :func:`attend` runs at
    # inference; registered here, beside the call, so any model that can run it is counted
    # (FlopCounterMode would otherwise see no attention products at all).
    @register_flop_formula(_CPU_SDPA)
    def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)


def scores(q: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Scaled scores ``[B, h, T, T]`` with padded keys at -inf."""
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return s.masked_fill(~key_mask[:, None, None, :], float("-inf"))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, topk: int | None) -> torch.Tensor:
    """Multi-head attention context ``[B, h, Tq, dh]``.

    Args:
        q: ``[B, h, Tq, dh]`` (``Tq`` may be less than ``T``: only the tokens still running ask).
        k, v: ``[B, h, T, dh]``.
        key_mask: ``[B, T]`` True for real tokens.
        topk: keep the k largest scores per query; None or k >= T is full attention.
    """
    if (topk is None or topk >= k.shape[-2]) and not torch.is_grad_enabled():
        # a batch without padding passes no mask, which lets SDPA take its fused (flash) CPU kernel
        mask = None if bool(key_mask.all()) else key_mask[:, None, None, :]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    s = scores(q, k, key_mask)
    if topk is None or topk >= s.shape[-1]:
        return torch.softmax(s, dim=-1) @ v
    top, ix = s.topk(topk, dim=-1)  # [B, h, Tq, k]
    B, h, T, dh = v.shape
    Tq = s.shape[-2]  # queries may be fewer than keys (exited tokens still serve as keys)
    vg = torch.gather(v.unsqueeze(2).expand(B, h, Tq, T, dh), 3, ix.unsqueeze(-1).expand(B, h, Tq, topk, dh))
    return (torch.softmax(top, dim=-1).unsqueeze(-2) @ vg).squeeze(-2)


def attend_topk_masked(q, k, v, key_mask, topk: int | None) -> torch.Tensor:
    """Reference for :func:`attend`: full scores, everything outside the top-k set to -inf."""
    s = scores(q, k, key_mask)
    if topk is not None and topk < s.shape[-1]:
        kth = s.topk(topk, dim=-1).values[..., -1:]
        s = s.masked_fill(s < kth, float("-inf"))
    return torch.softmax(s, dim=-1) @ v
