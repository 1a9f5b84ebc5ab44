"""The model's uncertainty about a word: the normalised entropy of a tag distribution."""

from __future__ import annotations

import math

import torch


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` over the last dim divided by its maximum ``log(labels)``: 0 for a
    certain prediction, 1 for a uniform one. Shape: ``logits.shape[:-1]``."""
    log_p = torch.log_softmax(logits, dim=-1)
    return (log_p.exp() * log_p).sum(-1) * (-1.0 / math.log(logits.shape[-1]))
