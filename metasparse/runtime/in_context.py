"""Each pattern's price inside whole forwards: the cost table calibrated against how a forward runs.

A layer cell is timed alone, after the caches are evicted (:func:`~metasparse.runtime.latency.cold_call_ms`).
Inside a forward that runs one plan again and again, as a deployment does, a pattern's cost also depends
on how many weights the whole plan streams through the caches. On a 2-core machine with 2 MiB of L2 a
core, lean plans ran as their cells add up while a full layer ran at 0.95 ms inside dense forwards against
0.66 ms alone (batch 1): dense was under-priced, so every lean plan's ratio against dense was over-predicted
(by 21-58% at batch 1 for plans of 0.2-0.5 of dense) and a latency budget of 0.3 ran at 0.22.

So each pattern is also timed on every layer at once, as whole forwards, in every (batch, length) bucket;
its cells are scaled so that the uniform plan's prediction meets that time (one scale per batch bucket and
pattern, the median over lengths), and the fixed part is scaled to the all-skip forward's time (where the
codebook has a skip). A plan that runs few layers reads fewer weights and keeps more of them in the
caches: there a full layer ran 15% below its time inside dense forwards (batch 1, same machine; a quarter
layer the same in both). So each pattern is also timed on a single layer, the others skipped, and a plan's
layers are priced between the two scales by its footprint (the share of a layer's weights each of its
patterns reads, summed over its layers: :func:`footprint_position`). The table stays additive over layers
at a given footprint, which the budget's gradient and the static knapsack need.

A stream whose plan changes from one input to the next reads, forward after forward, the weights of both
plans: sentences alternating between two plans of two full layers each ran 11% above their own plans'
predictions at batch 1 (measured 0.57 of dense, predicted 0.51), 3-4% above when each forward is priced
at the union of its plan and the one before; windows of 4 to 32 forwards changed nothing more there, and
moved random per-input plans by 1-2% (uniformly random plans: -5% per plan, -3% with the union). So a
stream's prediction prices each forward at that union (``previous`` in
:meth:`~metasparse.runtime.costs.CostTable.predict_ms`), and the budget prices each sentence's plan with
another drawn from its batch's mix (:meth:`metasparse.control.budget.CostParts.footprint`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from metasparse.model.encoder import GatedEncoder
from metasparse.model.features import Batch

log = logging.getLogger(__name__)

# A scale outside this range is measurement noise (a whole forward cannot be 4x its cells, nor a quarter):
# it is clipped and reported, not used as measured
SCALE_RANGE = (0.25, 4.0)


def pattern_weights(model: GatedEncoder) -> list[float]:
    """The share of a layer's weights each pattern reads (attention projections and FFN, by their sizes):
    what a plan streams through the caches, summed over its layers (its footprint, in layers)."""
    s = model.spec
    attn, ffn = 4 * s.d_model * s.d_model, 2 * s.d_model * s.d_ffn
    return [(attn * p.n_heads / s.heads + ffn * p.n_groups / s.ffn_groups) / (attn + ffn) for p in model.codebook]


def context_plan_ms(
    model: GatedEncoder, grid: list[list[Batch]], rounds: int, progress=None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Median milliseconds ``[batch bucket][length bucket][pattern]`` of one forward that runs the pattern
    on every layer (uniform), and of one that runs it on a single layer with every other layer skipped
    (single; the layer moves round by round; None without a skip pattern), on each bucket's synthetic
    batch (``grid``).

    A sample runs one plan over every length bucket's batch in a row, as a stream of sentences of mixed
    lengths runs on one plan, after one untimed forward that brings the plan's weights in; every (batch
    bucket, pattern, plan) is sampled once per round, in a new random order each round (interleaved, so
    drift spreads over all of them)."""
    L, P = len(model.blocks), model.n_patterns
    skip = next((i for i, p in enumerate(model.codebook) if p.skip), None)
    kinds = ["uniform"] + (["single"] if skip is not None and L > 1 else [])
    keys = [(k, bi, p) for k in kinds for bi in range(len(grid)) for p in range(P)]
    out = {k: np.zeros((len(grid), len(grid[0]), P, rounds)) for k in kinds}
    rng = np.random.default_rng(1)
    model.eval()
    with torch.no_grad():
        for r in range(rounds):
            for i in rng.permutation(len(keys)).tolist():
                kind, bi, p = keys[i]
                plan = [p] * L if kind == "uniform" else [p if li == r % L else skip for li in range(L)]
                model(grid[bi][0], plan=plan)
                for ti, batch in enumerate(grid[bi]):
                    t0 = time.perf_counter()
                    model(batch, plan=plan)
                    out[kind][bi, ti, p, r] = (time.perf_counter() - t0) * 1000
            if progress is not None:
                progress(r + 1, rounds)
    med = {k: np.median(v, axis=-1) for k, v in out.items()}
    return med["uniform"], med.get("single")


def context_scales(
    layer_ms: np.ndarray,
    fixed_ms: np.ndarray,
    context_ms: np.ndarray,
    codebook: list[list],
    single_ms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The scales of each pattern's cells ``[B, T, P]`` under which the uniform plan's prediction equals
    its whole-forward time ``context_ms`` (and, given ``single_ms``, the single-layer plan's its own; None
    without), and the fixed part ``[B, T]`` (the all-skip forward's time, where there is a skip).

    Args:
        layer_ms: cells ``[L, B, T, P]`` timed alone.
        fixed_ms: ``[B, T]`` the forward with every layer passed through, timed alone.
        context_ms, single_ms: ``[B, T, P]`` from :func:`context_plan_ms`.
        codebook: the table's unit counts per pattern (a skip pattern has no heads and no groups).
    """
    skip = [p for p, c in enumerate(codebook) if c[0] == 0 and c[1] == 0]
    fixed = fixed_ms
    if skip:  # the all-skip forward is the fixed part in context: its ratio to the one timed alone
        fixed = fixed_ms * _over_lengths(context_ms[:, :, skip[0]] / np.maximum(fixed_ms, 1e-9))
    live = [p for p in range(len(codebook)) if p not in skip]

    def scale(forward_ms: np.ndarray, cells: np.ndarray) -> np.ndarray:
        out = np.ones_like(forward_ms)
        out[:, :, live] = _plausible(
            _over_lengths((forward_ms[:, :, live] - fixed[:, :, None]) / np.maximum(cells[:, :, live], 1e-9))
        )
        return out

    # the single-layer plan's layer moved round by round: its cells are the mean over layers
    single = None if single_ms is None else scale(single_ms, layer_ms.mean(0))
    return scale(context_ms, layer_ms.sum(0)), single, fixed


def footprint_position(footprint, weights, n_layers: int) -> np.ndarray:
    """``[N, P]`` where a plan of ``footprint`` (layers' worth of weights it reads, ``[N]``) lies for each
    pattern between the pattern on a single layer (0) and on every layer (1); 1 for a skip."""
    F = np.atleast_1d(np.asarray(footprint, dtype=float))[:, None]
    w = np.asarray(weights, dtype=float)[None, :]
    span = np.maximum((n_layers - 1) * w, 1e-9)
    return np.where(w > 0, np.clip((F - w) / span, 0.0, 1.0), 1.0)


_reported: set[str] = set()  # a table is priced on every budget step: each clipping is reported once


def _plausible(raw: np.ndarray) -> np.ndarray:
    clipped = np.clip(raw, *SCALE_RANGE)
    if (clipped != raw).any():
        message = (
            f"cost table: {int((clipped != raw).sum())} of {raw.size} in-context scales outside {SCALE_RANGE} "
            "(whole forwards against their cells; noise or another job on the CPU) were clipped: "
            f"{np.round(raw[clipped != raw], 2).tolist()}"
        )
        if message not in _reported:
            _reported.add(message)
            log.warning(message)
    return clipped


def _over_lengths(ratios: np.ndarray) -> np.ndarray:
    """``ratios`` ``[B, T, ...]`` replaced by their median over the length buckets: a whole forward's
    timing is noisier than a cell's (three forwards a sample against the cells' evicted calls; one
    bucket's scale moved 0.3 between neighbours), and what the scale corrects, how many weights a plan
    streams, depends on the pattern and the batch more than on the length."""
    return np.broadcast_to(np.median(ratios, axis=1, keepdims=True), ratios.shape).copy()
