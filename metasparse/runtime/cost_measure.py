"""Measuring a cost table (:class:`~metasparse.runtime.costs.CostTable`) on this machine: every layer cell
timed alone after a cache eviction, interleaved, then every pattern inside whole forwards
(:mod:`metasparse.runtime.in_context`), and the controller's decision inside dense forwards.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from metasparse.model.encoder import GatedEncoder
from metasparse.model.features import Batch
from metasparse.model.grouped import run_grouped
from metasparse.runtime.controller_timing import controller_signature, in_place_ms
from metasparse.runtime.costs import BATCH_BUCKETS, LENGTH_BUCKETS, TIMING, CostTable, codebook_units
from metasparse.runtime.identity import backbone_identity, machine_fingerprint
from metasparse.runtime.in_context import context_plan_ms, pattern_weights
from metasparse.runtime.latency import interleaved_samples
from metasparse.runtime.synthetic import bucket_grid

# Whole-forward samples per cell round: a forward's time is noisier than a cell's (7 rounds left the
# ratio of two patterns 0.1 apart between measurements; 21 kept it within 0.03)
CONTEXT_ROUNDS_PER_ROUND = 3


def _timed_calls(model: GatedEncoder, grid: list[list[Batch]]) -> tuple[list[tuple], list]:
    """Every cell of the table, ``(kind, layer, batch bucket, length bucket, pattern)``, and the call that
    times it, on the synthetic batch of each (batch, length) bucket (``grid``: see
    :func:`~metasparse.runtime.synthetic.bucket_grid`)."""
    cells: list[tuple] = []
    fns: list = []
    two_groups = [model.full, model.full]  # for the split's cell: any two non-skip patterns (identity step)
    for bi, row in enumerate(grid):
        for ti, batch in enumerate(row):
            with torch.no_grad():
                x = model.embed(batch)
            m = batch.word_mask
            scores = torch.randn(m.shape)
            cells.append(("fixed", None, bi, ti, None))
            fns.append(lambda batch=batch: model.forward_with(batch, lambda i, block, h, mask: h))
            if m.shape[0] > 1:  # the split alone: two groups, each passed through unchanged
                half = (torch.arange(m.shape[0]) % 2).flip(0)  # interleaved, as sentences' choices are
                cells.append(("grouping", None, bi, ti, None))
                fns.append(lambda x=x, m=m, lv=half: run_grouped(_unchanged, x, m, lv, two_groups, None))
            for li, block in enumerate(model.blocks):
                for p, pat in enumerate(model.codebook):
                    cells.append(("layer", li, bi, ti, p))
                    fns.append(lambda b=block, x=x, m=m, q=pat, s=scores: b.forward_sliced(x, m, q, s))
    return cells, fns


def _unchanged(x, mask, pattern, scores, active):
    return x


def measure(
    model: GatedEncoder,
    *,
    backbone: str | None = None,
    batches=BATCH_BUCKETS,
    lengths=LENGTH_BUCKETS,
    rounds: int = 7,
    min_ms: float = 2.0,
    threads: int | None = None,
    controller=None,
    progress=None,
) -> CostTable:
    """Measure a cost table for ``model`` here: every (cell, pattern) once per round, in a new random
    order each round (interleaved, so drift spreads over all cells), median over rounds.

    Args:
        backbone: the backbone's identity stored in the table (default: :func:`backbone_identity`).
        rounds: timed rounds (one untimed warm-up round first).
        min_ms: each timed call is repeated until it takes about this long (sub-millisecond calls).
        threads: torch threads to measure with (default: the current setting).
        controller: a :class:`metasparse.control.Controller` whose decision is timed, inside forwards;
            None: no controller cost (0).
        progress: optional callable ``(done, total)``.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    model.eval()
    grid = bucket_grid(model, batches, lengths)
    cells, fns = _timed_calls(model, grid)
    samples = interleaved_samples(fns, rounds, min_ms, progress)
    med = [float(np.median(s)) for s in samples]
    iqr = [float(np.subtract(*np.percentile(s, [75, 25])) / max(np.median(s), 1e-9)) for s in samples]
    shape = (len(model.blocks), len(batches), len(lengths), model.n_patterns)
    layer_ms, fixed_ms, grouping_ms = _cell_arrays(cells, med, shape)
    uniform, single = context_plan_ms(model, grid, CONTEXT_ROUNDS_PER_ROUND * rounds, progress)
    table = CostTable(
        machine=machine_fingerprint(),
        threads=threads,
        backbone=backbone or backbone_identity(model),
        codebook=codebook_units(model.codebook),
        batches=list(batches),
        lengths=list(lengths),
        layer_ms=layer_ms.tolist(),
        fixed_ms=fixed_ms.tolist(),
        controller_ms=np.zeros_like(fixed_ms).tolist(),
        grouping_ms=grouping_ms.tolist(),
        context_ms=uniform.tolist(),
        single_ms=[] if single is None else single.tolist(),
        pattern_weights=pattern_weights(model),
        spread=float(np.median(iqr)),
        rounds=rounds,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        timing=TIMING,
    )
    return table if controller is None else retime_controller(table, model, controller, rounds=rounds)


def _cell_arrays(cells: list[tuple], med: list[float], shape: tuple[int, int, int, int]):
    """The medians of :func:`_timed_calls`' cells as ``layer_ms`` ``shape`` = ``[L, B, T, P]`` and the
    ``fixed_ms`` and ``grouping_ms`` ``[B, T]`` arrays."""
    _, B, T, _ = shape
    layer_ms = np.zeros(shape)
    fixed_ms, grouping_ms = np.zeros((B, T)), np.zeros((B, T))
    for (kind, li, bi, ti, p), m in zip(cells, med, strict=True):
        if kind == "fixed":
            fixed_ms[bi, ti] = m
        elif kind == "grouping":
            grouping_ms[bi, ti] = m
        else:
            layer_ms[li, bi, ti, p] = m
    return layer_ms, fixed_ms, grouping_ms


def retime_controller(table: CostTable, model: GatedEncoder, controller, *, rounds: int = 7) -> CostTable:
    """``table`` with its controller row timed for ``controller`` (same buckets and thread count; the layer
    cells are kept): a controller's settings change its cost, not the backbone's."""
    old = torch.get_num_threads()
    torch.set_num_threads(table.threads)
    try:
        grid = bucket_grid(model, table.batches, table.lengths)
        ms = in_place_ms(model, controller, grid, rounds, level=table.full_index())
    finally:
        torch.set_num_threads(old)
    return replace(table, controller_ms=ms.tolist(), controller=controller_signature(controller))
