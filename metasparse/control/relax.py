"""Relaxations of discrete choices: straight-through Gumbel-softmax with an annealed temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gumbel_softmax_st(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Sample a straight-through one-hot over the last dim: one-hot forward, the relaxed softmax sample's
    gradient backward (the global torch generator draws the noise, so callers seed it)."""
    u = torch.rand(logits.shape, dtype=logits.dtype).clamp_(1e-9, 1 - 1e-9)
    y = F.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)
    one_hot = F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)
    return one_hot + y - y.detach()


def anneal_temperature(step: int, total: int, start: float = 2.0, end: float = 0.3) -> float:
    """Exponential decay from ``start`` to ``end`` over ``total`` steps."""
    if total <= 0:
        return end
    frac = min(max(step / total, 0.0), 1.0)
    return start * math.exp(frac * math.log(end / start))
