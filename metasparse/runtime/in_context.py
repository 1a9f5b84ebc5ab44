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
codebook has a skip). The table stays additive over layers, which the budget's gradient and the static
knapsack need. What it cannot express: a plan that skips most layers streams fewer weights, so its
remaining layers run faster than the same pattern does on every layer (batch 1, same machine: plans of
0.2-0.35 of dense with two or three skipped layers still over-predicted by 10-25%, uniform and mixed plans
without skips within 8%).
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


def uniform_plan_ms(model: GatedEncoder, grid: list[list[Batch]], rounds: int, progress=None) -> np.ndarray:
    """``[batch bucket][length bucket][pattern]`` median milliseconds of one forward that runs the pattern
    on every layer, on each bucket's synthetic batch (``grid``).

    A sample runs one pattern over every length bucket's batch in a row, as a stream of sentences of
    mixed lengths runs on one plan, after one untimed forward that brings the plan's weights in; every
    (batch bucket, pattern) is sampled once per round, in a new random order each round (interleaved,
    so drift spreads over all of them)."""
    L, P = len(model.blocks), model.n_patterns
    keys = [(bi, p) for bi in range(len(grid)) for p in range(P)]
    out = np.zeros((len(grid), len(grid[0]), P, rounds))
    rng = np.random.default_rng(1)
    model.eval()
    with torch.no_grad():
        for r in range(rounds):
            for i in rng.permutation(len(keys)).tolist():
                bi, p = keys[i]
                model(grid[bi][0], plan=[p] * L)
                for ti, batch in enumerate(grid[bi]):
                    t0 = time.perf_counter()
                    model(batch, plan=[p] * L)
                    out[bi, ti, p, r] = (time.perf_counter() - t0) * 1000
            if progress is not None:
                progress(r + 1, rounds)
    return np.median(out, axis=-1)


def context_scales(
    layer_ms: np.ndarray, fixed_ms: np.ndarray, context_ms: np.ndarray, codebook: list[list]
) -> tuple[np.ndarray, np.ndarray]:
    """The scale of each pattern's cells ``[B, T, P]`` and the fixed part ``[B, T]`` under which every
    uniform plan's prediction equals its whole-forward time ``context_ms``.

    Args:
        layer_ms: cells ``[L, B, T, P]`` timed alone.
        fixed_ms: ``[B, T]`` the forward with every layer passed through, timed alone.
        context_ms: ``[B, T, P]`` from :func:`uniform_plan_ms`.
        codebook: the table's unit counts per pattern (a skip pattern has no heads and no groups).
    """
    skip = [p for p, c in enumerate(codebook) if c[0] == 0 and c[1] == 0]
    fixed = fixed_ms
    if skip:  # the all-skip forward is the fixed part in context: its ratio to the one timed alone
        fixed = fixed_ms * _over_lengths(context_ms[:, :, skip[0]] / np.maximum(fixed_ms, 1e-9))
    cells = layer_ms.sum(0)  # [B, T, P]: the uniform plan's layers, as timed alone
    scale = np.ones_like(context_ms)
    live = [p for p in range(len(codebook)) if p not in skip]
    raw = _over_lengths((context_ms[:, :, live] - fixed[:, :, None]) / np.maximum(cells[:, :, live], 1e-9))
    clipped = np.clip(raw, *SCALE_RANGE)
    if (clipped != raw).any():
        log.warning(
            "cost table: %d of %d in-context scales outside %s (whole forwards against their cells; noise "
            "or another job on the CPU) were clipped: %s",
            int((clipped != raw).sum()),
            raw.size,
            SCALE_RANGE,
            np.round(raw[clipped != raw], 2).tolist(),
        )
    scale[:, :, live] = clipped
    return scale, fixed


def _over_lengths(ratios: np.ndarray) -> np.ndarray:
    """``ratios`` ``[B, T, ...]`` replaced by their median over the length buckets: a whole forward's
    timing is noisier than a cell's (three forwards a sample against the cells' evicted calls; one
    bucket's scale moved 0.3 between neighbours), and what the scale corrects, how many weights a plan
    streams, depends on the pattern and the batch more than on the length."""
    return np.broadcast_to(np.median(ratios, axis=1, keepdims=True), ratios.shape).copy()
