"""Which tokens the FFN sees: the top share of each sentence's valid tokens by a score."""

from __future__ import annotations

import math

import torch


def select_tokens(scores: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean ``[B, T]``: the ``ceil(fraction * n_valid)`` highest-scoring valid tokens of each row.

    Ties are broken by position (stable sort), so the choice is deterministic.
    """
    if fraction >= 1.0:
        return mask.clone()
    n_valid = mask.sum(1)
    keep = torch.clamp(torch.ceil(n_valid.to(torch.float64) * fraction).to(torch.long), min=1)
    keep = torch.minimum(keep, n_valid)
    s = scores.detach().masked_fill(~mask, float("-inf"))
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(s.shape[1], device=s.device).expand_as(order))
    return (rank < keep[:, None]) & mask


def kept_count(n: int, fraction: float) -> int:
    """How many of ``n`` tokens :func:`select_tokens` keeps."""
    return n if fraction >= 1.0 else min(n, max(1, math.ceil(n * fraction)))
