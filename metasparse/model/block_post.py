"""The masked (reference and relaxed-training) path of a post-LN :class:`~metasparse.model.block.GatedBlock`.

In a pre-LN block every pattern's branches add onto one residual stream, so the patterns mix inside one
computation. After a post-LN norm they no longer add up: each pattern's output is computed in full and
the outputs are mixed by the decision weights (exact for one-hot weights, like the pre-LN path). It
costs one block per pattern, which is the price of a differentiable reference for BERT-family weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from metasparse.model.attention import attend_topk_masked
from metasparse.model.patterns import Pattern
from metasparse.model.tokens import select_tokens

if TYPE_CHECKING:
    from metasparse.model.block import GatedBlock


def forward_masked_post(
    block: GatedBlock,
    x: torch.Tensor,
    mask: torch.Tensor,
    codebook: list[Pattern],
    weights: torch.Tensor,
    token_scores: torch.Tensor | None,
    token_gate: torch.Tensor | None,
    active: torch.Tensor | None,
) -> torch.Tensor:
    """Each pattern's post-LN block output mixed by ``weights`` ``[B, len(codebook)]``; same contract as
    :meth:`GatedBlock.forward_masked`. A sub-block with no unit on is skipped, norm included."""
    act = mask if active is None else active
    B, T, _ = x.shape
    H, dh = block.n_heads, block.d_head
    q, k, v = (lin(x).view(B, T, H, dh).transpose(1, 2) for lin in (block.q, block.k, block.v))
    unit_h = torch.arange(H, device=x.device)
    unit_f = torch.arange(block.n_groups * block.group_size, device=x.device) // block.group_size
    out = torch.zeros_like(x)
    for j, p in enumerate(codebook):
        w = weights[:, j, None, None]
        if p.skip:
            out = out + w * x
            continue
        x1 = x
        if p.n_heads > 0:
            hm = (unit_h < p.n_heads).to(x.dtype)[None, :, None, None]
            ctx = (attend_topk_masked(q, k, v, mask, p.topk) * hm).transpose(1, 2).reshape(B, T, H * dh)
            x1 = block.attn_residual(x, block._masked_heads_out(ctx) + block.o_bias)
        out = out + w * _ffn_post(block, x1, act, p, unit_f, token_scores, token_gate)
    return out if active is None else torch.where(active[..., None], out, x)


def _ffn_post(block: GatedBlock, x1, act, p: Pattern, unit_f, token_scores, token_gate) -> torch.Tensor:
    """One pattern's FFN sub-block on ``x1``: its groups, on its routed tokens (the others keep ``x1``)."""
    if p.n_groups == 0:
        return x1
    gm = (unit_f < p.n_groups).to(x1.dtype)[None, None, :]
    a = F.gelu(block.w1(x1))
    x2 = block.ffn_residual(x1, block._masked_ffn_out(a, gm) + block.w2_bias)
    if p.tokens >= 1.0:
        return x2
    if token_scores is None:
        raise ValueError("a pattern with tokens < 1 needs token scores from the policy")
    tok = select_tokens(token_scores, act, p.tokens).to(x1.dtype)
    if token_gate is not None:
        tok = tok * token_gate
    tok = tok[..., None]
    return tok * x2 + (1 - tok) * x1
