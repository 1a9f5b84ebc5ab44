"""Latency-aware static pruning, HALP-style (Shen et al. 2022): unit importance, pruned under a measured
latency table as a knapsack.

Each unit's importance is Michel et al.'s expected absolute gate gradient (as for ``importance``). Each
layer keeps its most important heads and FFN groups in the counts of one codebook pattern, whose
wall-clock the backbone's cost table gives; one pattern per layer is chosen to keep the most importance
while the predicted latency stays within the budget (a multiple-choice knapsack, solved exactly by
dynamic programming over a fine latency grid). Where FLOPs-driven pruning removes units by FLOPs, this
removes them by time: at batch 1 a skipped layer saves more time than its FLOPs, a narrow matmul less.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from metasparse.baselines.importance import unit_importance
from metasparse.baselines.units import KeptUnits, reorder_units
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import GatedEncoder
from metasparse.runtime.costs import CostTable
from metasparse.runtime.in_context import footprint_position
from metasparse.scoring.methods import StaticMethod

log = logging.getLogger(__name__)
GRID = 4000  # latency steps of the knapsack: the budget is met to 1/GRID of dense latency
KNAPSACK_ROUNDS = 6  # solves at most, each at the footprint of the plan before (a plan repeating stops it)


@dataclass
class KnapsackChoice:
    """The chosen pattern per layer, its kept importance and predicted latency fraction."""

    levels: list[int]
    value: float
    latency_fraction: float


def layer_values(model: GatedEncoder, head_imp: torch.Tensor, group_imp: torch.Tensor) -> np.ndarray:
    """``[L, P]``: importance a layer keeps under each codebook pattern (its best ``n_heads`` heads and
    best ``n_groups`` groups); -inf for patterns that route tokens or cut attention (not unit choices)."""
    hs = torch.sort(head_imp, dim=1, descending=True).values.cumsum(1)
    gs = torch.sort(group_imp, dim=1, descending=True).values.cumsum(1)
    out = np.zeros((len(model.blocks), model.n_patterns))
    for li in range(len(model.blocks)):
        for p, pat in enumerate(model.codebook):
            if pat.tokens < 1.0 or pat.topk is not None:  # no unit choice: a static structure cannot route tokens
                out[li, p] = -np.inf
                continue
            h = float(hs[li, pat.n_heads - 1]) if pat.n_heads else 0.0
            g = float(gs[li, pat.n_groups - 1]) if pat.n_groups else 0.0
            out[li, p] = h + g
    return out


def solve_knapsack(values: np.ndarray, costs: np.ndarray, capacity: float) -> list[int] | None:
    """One choice per row maximising the summed value with summed cost <= ``capacity``.

    Args:
        values, costs: ``[L, P]``.
        capacity: the cost allowed.

    Returns:
        The column chosen in each row, or None when even the cheapest choices exceed the capacity.
    """
    if capacity < costs.min(1).sum():
        return None
    scale = GRID / max(capacity, 1e-12)
    w = np.ceil(costs * scale - 1e-9).astype(int)  # rounded up: a chosen set never exceeds the capacity
    L, P = values.shape
    best = np.full(GRID + 1, -np.inf)
    best[0] = 0.0
    choice = np.zeros((L, GRID + 1), dtype=int)
    for li in range(L):
        nxt = np.full(GRID + 1, -np.inf)
        for p in range(P):
            if w[li, p] > GRID:
                continue
            cand = np.full(GRID + 1, -np.inf)
            cand[w[li, p] :] = best[: GRID + 1 - w[li, p]] + values[li, p]
            better = cand > nxt
            nxt[better], choice[li, better] = cand[better], p
        best = nxt
    if not np.isfinite(best).any():
        return None
    c = int(np.argmax(best))
    levels = []
    for li in reversed(range(L)):
        p = int(choice[li, c])
        levels.append(p)
        c -= w[li, p]
    return levels[::-1]


def latency_knapsack(
    model: GatedEncoder, values: np.ndarray, table: CostTable, lengths, target: float, batch: int = 1
) -> KnapsackChoice:
    """The pattern per layer keeping the most importance within ``target`` of dense latency, predicted by
    ``table`` for sentences of ``lengths`` run ``batch`` at a time.

    Where the table prices a pattern by the footprint of the plan it runs in (a plan reading fewer
    weights keeps more in the caches), the knapsack is solved at a footprint, the plan's own footprint
    re-priced and solved again, until the plan repeats; the best plan that meets the target at its own
    footprint is kept."""
    c = table.per_example(list(lengths), batch)
    fixed, dense = float(c["fixed"].sum()), float(c["dense"].sum())
    weights = c["weights"].numpy() if "weights" in c else None

    def costs_at(footprint: float | None) -> np.ndarray:  # [L, P], summed over the sentences
        if footprint is None or weights is None:
            return c["layers"].sum(1).numpy()
        x = footprint_position([footprint], weights, len(c["layers"]))[0]
        return (c["single"] + torch.as_tensor(x, dtype=torch.float32) * (c["layers"] - c["single"])).sum(1).numpy()

    footprint, tried, best = None, [], None
    for _ in range(KNAPSACK_ROUNDS):
        levels = solve_knapsack(values, costs_at(footprint), target * dense - fixed)
        if levels is None or levels in tried:
            break
        tried.append(levels)
        footprint = None if weights is None else float(sum(weights[p] for p in levels))
        used = fixed + sum(costs_at(footprint)[li, p] for li, p in enumerate(levels))
        value = float(sum(values[li, p] for li, p in enumerate(levels)))
        if used <= target * dense * (1 + 1e-9) and (best is None or value > best.value):
            best = KnapsackChoice(levels, value, used / dense)
    if best is None:
        raise ValueError(
            f"latency budget {target} is below what skipping every layer costs here "
            f"({fixed / dense:.3f} of dense: embeddings and heads)"
        )
    return best


def ranked_units(head_imp: torch.Tensor, group_imp: torch.Tensor) -> KeptUnits:
    """Every unit of every layer, most important first: a backbone reordered by it runs the structure
    :func:`latency_pruned` keeps for any pattern per layer as plain prefix patterns."""
    rank = lambda imp: [torch.argsort(row, descending=True, stable=True).tolist() for row in imp]  # noqa: E731
    return KeptUnits(rank(head_imp), rank(group_imp))


def latency_pruned(
    model: GatedEncoder,
    train: EncodedCorpus,
    calib: EncodedCorpus,
    target: float,
    table: CostTable,
    *,
    batch: int = 1,
) -> StaticMethod:
    """The backbone pruned to ``target`` of dense latency (predicted by ``table`` at ``batch`` on
    ``calib``'s lengths), units ranked by importance measured on ``train``."""
    head_imp, group_imp = unit_importance(model, train)
    choice = latency_knapsack(model, layer_values(model, head_imp, group_imp), table, calib.lengths(), target, batch)
    pats = [model.codebook[p] for p in choice.levels]
    order = lambda imp, li, n: torch.argsort(imp[li], descending=True, stable=True)[:n].tolist()  # noqa: E731
    kept = KeptUnits(
        [order(head_imp, li, p.n_heads) for li, p in enumerate(pats)],
        [order(group_imp, li, p.n_groups) for li, p in enumerate(pats)],
    )
    log.info(
        "latency-aware static: patterns %s, predicted latency %.3f of dense at batch %d",
        choice.levels,
        choice.latency_fraction,
        batch,
    )
    return StaticMethod(reorder_units(model, kept), kept.patterns(), "latency")
