"""The compute budget: expected FLOPs as a differentiable function of the controller's choices."""

from __future__ import annotations

import torch

from metasparse.model.encoder import GatedEncoder
from metasparse.model.flops import block_flops, dense_flops, heads_flops


def pattern_flops_table(model: GatedEncoder, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, P]`` FLOPs of one block per example (its length) and pattern."""
    rows = [[block_flops(model.spec, p, int(n)) for p in model.codebook] for n in lengths.tolist()]
    return torch.tensor(rows, dtype=torch.float32)


def expected_flops_fraction(
    model: GatedEncoder,
    probs_per_layer: list[torch.Tensor],
    lengths: torch.Tensor,
    controller_per_layer: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-example expected FLOPs over dense FLOPs ``[B]``, differentiable in the probabilities."""
    table = pattern_flops_table(model, lengths)
    exp = sum((probs * table).sum(-1) for probs in probs_per_layer)
    if controller_per_layer is not None:
        exp = exp + controller_per_layer * len(probs_per_layer)
    dense = torch.tensor([dense_flops(model.spec, int(n)) for n in lengths.tolist()], dtype=torch.float32)
    heads = torch.tensor([heads_flops(model.spec, int(n)) for n in lengths.tolist()], dtype=torch.float32)
    return (exp + heads) / dense


def budget_penalty(fraction: torch.Tensor, target: float, kind: str = "hinge") -> torch.Tensor:
    """Penalty pushing the mean FLOPs fraction to ``target``: ``hinge`` (only above) or ``square``."""
    gap = fraction.mean() - target
    if kind == "hinge":
        return torch.relu(gap) ** 2
    if kind == "square":
        return gap**2
    raise ValueError(f"budget kind {kind!r}; allowed: hinge, square")


def annealed_target(step: int, steps: int, target: float, warmup: float) -> float:
    """The budget at ``step`` of ``steps``: dense (1.0) annealed linearly to ``target`` over the first
    ``warmup`` share of the steps, then ``target``.

    Why anneal: a controller that must meet the budget from its first step never learns which inputs need
    width; starting dense lets it learn that first and give width up gradually.
    """
    warm = max(1, int(warmup * steps))  # whole steps; warmup 0 gives the target from the first step
    return 1.0 - (1.0 - target) * min(1.0, (step + 1) / warm)
