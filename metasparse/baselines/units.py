"""Unit bookkeeping for static structured pruning: FLOPs per head and per FFN group, pruning a scored
set of units to a FLOPs budget, and reordering a backbone so the kept units form prefixes.

Block FLOPs are linear in the number of heads and of FFN groups (``metasparse.model.flops``), so the
FLOPs fraction of any kept set is exact, and the reordered copy computes exactly what the gated dense
model computes with the pruned units' gates at zero.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metasparse.model.adapters import permute_units
from metasparse.model.encoder import GatedEncoder
from metasparse.model.flops import block_flops, dense_flops, fixed_flops
from metasparse.model.patterns import Pattern


@dataclass
class UnitCosts:
    """Summed FLOPs over a set of sentence lengths.

    Attributes:
        head: FLOPs of one attention head in one layer.
        group: FLOPs of one FFN channel group in one layer.
        fixed: FLOPs no pruning removes (task heads), plus a controller if any.
        dense: FLOPs of the dense model.
    """

    head: float
    group: float
    fixed: float
    dense: float

    @classmethod
    def of(cls, model: GatedEncoder, lengths: Sequence[int]) -> UnitCosts:
        s = model.spec
        return cls(
            float(sum(block_flops(s, Pattern(1, 0), int(n)) for n in lengths)),
            float(sum(block_flops(s, Pattern(0, 1), int(n)) for n in lengths)),
            float(sum(fixed_flops(s, int(n)) for n in lengths)),
            float(sum(dense_flops(s, int(n)) for n in lengths)),
        )

    def fraction(self, heads: Sequence[int], groups: Sequence[int]) -> float:
        return (self.head * sum(heads) + self.group * sum(groups) + self.fixed) / self.dense


@dataclass
class KeptUnits:
    """Which heads and FFN groups each layer keeps, in order of importance (most important first)."""

    heads: list[list[int]]
    groups: list[list[int]]

    def patterns(self) -> list[Pattern]:
        return [Pattern(len(h), len(g)) for h, g in zip(self.heads, self.groups, strict=True)]


def prune_to_budget(
    head_scores: torch.Tensor, group_scores: torch.Tensor, costs: UnitCosts, target: float, *, per_flop: bool = True
) -> KeptUnits:
    """Remove the least important units until the FLOPs fraction is at most ``target``.

    Args:
        head_scores: ``[layers, heads]`` importance (higher: keep).
        group_scores: ``[layers, groups]``.
        costs: unit FLOPs on representative sentence lengths.
        target: FLOPs budget as a fraction of dense.
        per_flop: rank by importance per FLOP (a head and an FFN group cost different amounts).
    """
    n_layers, n_h = head_scores.shape
    n_g = group_scores.shape[1]
    head_cost = costs.head if per_flop else 1.0
    group_cost = costs.group if per_flop else 1.0
    units = [(float(head_scores[li, h]) / head_cost, "h", li, h) for li in range(n_layers) for h in range(n_h)]
    units += [(float(group_scores[li, g]) / group_cost, "g", li, g) for li in range(n_layers) for g in range(n_g)]
    kept = {(k, li, i) for _, k, li, i in units}
    n_heads, n_groups = [n_h] * n_layers, [n_g] * n_layers
    removed = []
    for u in sorted(units):
        if costs.fraction(n_heads, n_groups) <= target:
            break
        _, k, li, i = u
        kept.discard((k, li, i))
        (n_heads if k == "h" else n_groups)[li] -= 1
        removed.append(u)
    # The last removal can overshoot by a whole unit: put back the best removed units that still fit.
    for _, k, li, i in sorted(removed, reverse=True):
        counts = n_heads if k == "h" else n_groups
        counts[li] += 1
        if costs.fraction(n_heads, n_groups) <= target:
            kept.add((k, li, i))
        else:
            counts[li] -= 1

    def order(scores: torch.Tensor, li: int, n: int, kind: str) -> list[int]:
        return sorted((i for i in range(n) if (kind, li, i) in kept), key=lambda i: -float(scores[li, i]))

    return KeptUnits(
        [order(head_scores, li, n_h, "h") for li in range(n_layers)],
        [order(group_scores, li, n_g, "g") for li in range(n_layers)],
    )


def reorder_units(model: GatedEncoder, kept: KeptUnits) -> GatedEncoder:
    """A copy of ``model`` whose heads and FFN groups are permuted so each layer's kept units come first
    (in ``kept``'s order, the rest after). A permutation of units does not change the dense function."""
    out = copy.deepcopy(model)
    for blk, heads, groups in zip(out.blocks, kept.heads, kept.groups, strict=True):
        h_order = heads + [h for h in range(blk.n_heads) if h not in heads]
        g_order = groups + [g for g in range(blk.n_groups) if g not in groups]
        hi = torch.as_tensor(np.concatenate([np.arange(h * blk.d_head, (h + 1) * blk.d_head) for h in h_order]))
        gi = torch.as_tensor(np.concatenate([np.arange(g * blk.group_size, (g + 1) * blk.group_size) for g in g_order]))
        with torch.no_grad():
            for lin in (blk.q, blk.k, blk.v):
                lin.weight.copy_(lin.weight[hi])
                lin.bias.copy_(lin.bias[hi])
            blk.o_weight.copy_(blk.o_weight[hi])
            blk.w1.weight.copy_(blk.w1.weight[gi])
            blk.w1.bias.copy_(blk.w1.bias[gi])
            blk.w2_weight.copy_(blk.w2_weight[gi])
        if blk.adapter is not None:  # each unit keeps its own pathway adapter
            permute_units(blk.adapter, h_order, g_order)
    return out
