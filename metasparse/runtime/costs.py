"""Measured latency of every execution pattern: the cost table a latency budget reads (HALP, LASNet).

FLOPs savings do not turn into speed by themselves (at batch 1 a narrow matmul costs nearly what a wide
one does; a skipped layer saves more than its FLOPs say). For one backbone, machine and thread count the
table holds the median wall-clock of each pattern on each layer per batch and length bucket, what no
pattern changes, and one controller decision; :meth:`CostTable.per_example` reads it for a budget.
Storing and re-using tables beside the backbones is :mod:`metasparse.runtime.cost_store`'s job.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from metasparse.model.encoder import GatedEncoder
from metasparse.model.features import Batch
from metasparse.model.grouped import run_grouped
from metasparse.model.patterns import Pattern
from metasparse.runtime.controller_timing import controller_signature, in_place_ms
from metasparse.runtime.identity import backbone_identity, machine_fingerprint
from metasparse.runtime.in_context import context_scales, uniform_plan_ms
from metasparse.runtime.latency import interleaved_samples
from metasparse.runtime.synthetic import bucket_grid

log = logging.getLogger(__name__)

# How cells are timed (stored in each table; a table timed another way is re-measured): "cold-l2" times
# every call after evicting the caches, as a real forward leaves them (each layer's weights follow other
# layers' weights); tables before it ("warm") repeated each call on a warm cache, where a narrow slice fits
# in L2 and looked cheaper than it runs (a quarter layer at batch 1: 0.57 of the full one warm, 0.69 cold).
# "-fused": since inference stacks q/k/v and attends in one SDPA call (metasparse.model.attention), a
# table timed on the unfused ops prices every layer higher than it now runs.
# "+context": every pattern is also timed on every layer as whole forwards and its cells scaled to match
# (:mod:`metasparse.runtime.in_context`); cells alone under-priced wide layers at batch 1 by a third.
TIMING = "cold-l2-fused+context"
BATCH_BUCKETS = (1, 8, 32)
# 24 and 48 since the grouping row: a layer's time grows faster than linearly between 32 and 64 words at
# batch 32 (attention, and an FFN activation past L2), so interpolating there priced a 45-word batch's dense
# layer 16% high (11.3 ms predicted, 9.7 measured) and made every ratio against dense look too good
LENGTH_BUCKETS = (8, 16, 24, 32, 48, 64)
FORMAT = 1
# Whole-forward samples per cell round: a forward's time is noisier than a cell's (7 rounds left the
# ratio of two patterns 0.1 apart between measurements; 21 kept it within 0.03)
CONTEXT_ROUNDS_PER_ROUND = 3


def codebook_units(codebook: list[Pattern]) -> list[list]:
    """The codebook as plain unit counts (what a table's columns are)."""
    return [[p.n_heads, p.n_groups, p.tokens, p.topk] + ([] if p.exit is None else [p.exit]) for p in codebook]


@dataclass
class CostTable:
    """Median milliseconds per call, for a whole batch of ``batch`` sentences of ``length`` words.

    Attributes:
        machine: :func:`machine_fingerprint` where it was measured.
        threads: torch threads during the measurement.
        backbone: the backbone's identity (its cache key, or a hash of its architecture).
        codebook: unit counts of each pattern (columns of ``layer_ms``).
        batches, lengths: the buckets.
        layer_ms: ``[layer][batch][length][pattern]``, each cell timed alone.
        fixed_ms: ``[batch][length]``: embeddings, character encoder, final norm and task heads.
        context_ms: ``[batch][length][pattern]``: one forward running the pattern on every layer, back to
            back; predictions scale each pattern's cells to it (:func:`~metasparse.runtime.in_context.
            context_scales`). Empty in a table made by hand: its cells are used as they are.
        controller_ms: ``[batch][length]``: one controller decision (per layer; an upfront controller's one
            per forward), timed inside dense forwards (:mod:`metasparse.runtime.controller_timing`).
        controller: :func:`controller_signature` of the controller timed in ``controller_ms`` ("": none,
            its row is zeros); a run with another controller re-times that row before pricing with it.
        grouping_ms: ``[batch][length]``: splitting a batch by pattern at one layer and putting it back
            together (sort, gathers, concatenation; 0 at batch 1), paid by every layer whose sentences chose
            different patterns; empty in tables from before it (re-measured).
        spread: median over cells of the interquartile range relative to the median (measurement noise).
        rounds: timed rounds (every cell once per round, in a new random order each round).
    """

    machine: str
    threads: int
    backbone: str
    codebook: list[list]
    batches: list[int]
    lengths: list[int]
    layer_ms: list[list[list[list[float]]]]
    fixed_ms: list[list[float]]
    controller_ms: list[list[float]]
    spread: float = 0.0
    rounds: int = 0
    measured_at: str = ""
    controller: str = ""
    timing: str = "warm"
    format: int = FORMAT
    extra: dict = field(default_factory=dict)
    grouping_ms: list[list[float]] = field(default_factory=list)
    context_ms: list[list[list[float]]] = field(default_factory=list)

    # ----- storage ------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> CostTable:
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}, expected {FORMAT}")
            table = cls(**d)
            table.check_shape()  # inside: a shape error names the file too
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source}: not a metasparse cost table ({e})") from e
        return table

    def check_shape(self) -> None:
        L, B, T, P = len(self.layer_ms), len(self.batches), len(self.lengths), len(self.codebook)
        arr = np.asarray(self.layer_ms, dtype=float)
        if arr.shape != (L, B, T, P) or np.asarray(self.fixed_ms).shape != (B, T):
            raise ValueError(f"cost table shapes disagree: layer_ms {arr.shape}, buckets {B}x{T}, patterns {P}")
        for name, shape in (("grouping_ms", (B, T)), ("context_ms", (B, T, P))):
            got = np.asarray(getattr(self, name)).shape
            if getattr(self, name) and got != shape:  # empty: an older or hand-made table
                raise ValueError(f"cost table shapes disagree: {name} {got}, buckets {B}x{T}, patterns {P}")

    def stale_reason(self, machine: str, threads: int, backbone: str, codebook: list[list]) -> str | None:
        """Why this table does not describe the current setting (None: it does)."""
        if self.machine != machine:
            return f"measured on another machine ({self.machine!r}, here {machine!r})"
        if self.threads != threads:
            return f"measured with {self.threads} threads, here {threads}"
        if self.backbone != backbone:
            return f"measured for backbone {self.backbone}, here {backbone}"
        if [list(c) for c in self.codebook] != [list(c) for c in codebook]:
            return "measured for another codebook"
        if self.timing != TIMING:
            return f"timed as {self.timing!r}, now {TIMING!r}"
        if not self.grouping_ms:
            return "it has no grouping row (a batch split by pattern was priced as if it ran whole)"
        return None

    # ----- reading ------------------------------------------------------------------------------
    def priced(self) -> tuple[np.ndarray, np.ndarray]:
        """The cells ``[L, B, T, P]`` and fixed part ``[B, T]`` predictions read: calibrated to whole
        forwards where the table has ``context_ms``, as timed alone where it does not."""
        layer, fixed = np.asarray(self.layer_ms, dtype=float), np.asarray(self.fixed_ms, dtype=float)
        if not self.context_ms:
            return layer, fixed
        scale, fixed = context_scales(layer, fixed, np.asarray(self.context_ms, dtype=float), self.codebook)
        return layer * scale[None], fixed

    def batch_bucket(self, batch: int) -> int:
        """Index of the batch bucket nearest to ``batch`` (in log scale)."""
        return int(np.argmin([abs(np.log2(b) - np.log2(max(1, batch))) for b in self.batches]))

    def _interp(self, values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Interpolate ``values`` ``[..., len(self.lengths)]`` at ``lengths``: linear between buckets, held
        at the shortest bucket's value below it (a call has a floor, not a zero) and proportional to the
        length past the longest. Timing noise can make a longer bucket measure faster than a shorter one;
        a latency cannot fall with length, so values are read as their running maximum over lengths."""
        xs = np.asarray(self.lengths, dtype=float)
        values = np.maximum.accumulate(np.asarray(values, dtype=float), axis=-1)
        n = np.asarray(lengths, dtype=float)
        if len(xs) == 1:
            return np.take(values, np.zeros(len(n), dtype=int), axis=-1) * np.maximum(n / xs[0], 1.0)
        lo = np.clip(np.searchsorted(xs, n) - 1, 0, len(xs) - 2)
        w = np.clip((n - xs[lo]) / (xs[lo + 1] - xs[lo]), 0.0, 1.0)
        v0, v1 = np.take(values, lo, axis=-1), np.take(values, lo + 1, axis=-1)
        out = v0 + w * (v1 - v0)
        return out * np.maximum(n / xs[-1], 1.0)

    def per_example(self, lengths, batch: int = 1) -> dict[str, torch.Tensor]:
        """Predicted milliseconds per sentence, for sentences of ``lengths`` words run ``batch`` at a time.

        Returns:
            ``layers`` ``[L, N, P]`` per pattern, ``fixed`` ``[N]``, ``controller`` ``[N]`` per layer, and
            ``dense`` ``[N]`` (every layer on its full pattern plus the fixed part).
        """
        b = self.batch_bucket(batch)
        size = self.batches[b]
        n = np.asarray([float(x) for x in lengths])
        layer_ms, fixed_ms = self.priced()
        layer = layer_ms[:, b]  # [L, T, P]
        per_layer = np.stack([self._interp(lay.T, n).T for lay in layer]) / size  # [L, N, P]
        fixed = self._interp(fixed_ms[b], n) / size
        ctrl = self._interp(np.asarray(self.controller_ms[b]), n) / size
        full = self.full_index()
        dense = per_layer[:, :, full].sum(0) + fixed
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        return {"layers": as_t(per_layer), "fixed": as_t(fixed), "controller": as_t(ctrl), "dense": as_t(dense)}

    def full_index(self) -> int:
        """The column of the widest pattern (every head and group, every token, full attention)."""
        widest = max(range(len(self.codebook)), key=lambda i: (self.codebook[i][0], self.codebook[i][1]))
        full = [
            i
            for i, c in enumerate(self.codebook)
            if c[0] == self.codebook[widest][0] and c[1] == self.codebook[widest][1] and c[2] >= 1.0 and c[3] is None
        ]
        return full[0] if full else widest

    def sized_ms(self, values, size: int, length: float) -> float:
        """Milliseconds of one call on ``size`` sentences of ``length`` words, from whole-call ``values``
        ``[batch bucket][length bucket]``: read at the length (:meth:`_interp`), then linear in the size
        between batch buckets (a call's overhead is shared by its sentences) and proportional past the largest."""
        per_bucket = self._interp(np.asarray(values, dtype=float), np.asarray([length]))[:, 0]
        top = self.batches[-1]
        return float(per_bucket[-1] * size / top if size > top else np.interp(size, self.batches, per_bucket))

    def predict_ms(self, patterns_per_layer: list[list[int]], length: float, decisions: int = 0) -> float:
        """Predicted milliseconds of one batch padded to ``length`` words: ``patterns_per_layer[l][i]`` is
        sentence i's pattern at layer l, plus ``decisions`` controller decisions per forward (one per layer
        for per-layer controllers, one for an upfront controller, 0 for none).

        At each layer the sentences that chose the same pattern run together (:mod:`metasparse.model.grouped`),
        so each group is priced at its own size: a batch of 32 split into groups of 2 costs what 16 small
        calls cost, not 32 shares of one full call (pricing shares predicted random per-input decisions at
        batch 32 about half as slow as measured). A layer with more than one group also pays the split
        itself (``grouping_ms``)."""
        n = len(patterns_per_layer[0])
        layers, fixed = self.priced()  # [L, B, T, P], [B, T]
        total = self.sized_ms(fixed, n, length) + decisions * self.sized_ms(self.controller_ms, n, length)
        split = self.sized_ms(self.grouping_ms, n, length) if self.grouping_ms else 0.0
        for li, row in enumerate(patterns_per_layer):
            patterns, counts = np.unique(np.asarray(row), return_counts=True)
            total += split if len(patterns) > 1 else 0.0
            for p, k in zip(patterns, counts, strict=True):
                total += self.sized_ms(layers[li, :, :, int(p)], int(k), length)
        return total


# ----- measurement ----------------------------------------------------------------------------------
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
    L, P = len(model.blocks), model.n_patterns
    B, T = len(batches), len(lengths)
    layer_ms = np.zeros((L, B, T, P))
    fixed_ms, grouping_ms = np.zeros((B, T)), np.zeros((B, T))
    for (kind, li, bi, ti, p), m in zip(cells, med, strict=True):
        if kind == "fixed":
            fixed_ms[bi, ti] = m
        elif kind == "grouping":
            grouping_ms[bi, ti] = m
        else:
            layer_ms[li, bi, ti, p] = m
    table = CostTable(
        machine=machine_fingerprint(),
        threads=threads,
        backbone=backbone or backbone_identity(model),
        codebook=codebook_units(model.codebook),
        batches=list(batches),
        lengths=list(lengths),
        layer_ms=layer_ms.tolist(),
        fixed_ms=fixed_ms.tolist(),
        controller_ms=np.zeros((B, T)).tolist(),
        grouping_ms=grouping_ms.tolist(),
        context_ms=uniform_plan_ms(model, grid, CONTEXT_ROUNDS_PER_ROUND * rounds, progress).tolist(),
        spread=float(np.median(iqr)),
        rounds=rounds,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        timing=TIMING,
    )
    return table if controller is None else retime_controller(table, model, controller, rounds=rounds)


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
