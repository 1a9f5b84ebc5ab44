"""Measured latency of every execution pattern: the cost table a latency budget reads (HALP, LASNet).

FLOPs savings do not turn into speed by themselves (at batch 1 a narrow matmul costs nearly what a wide
one does; a skipped layer saves more than its FLOPs say). For one backbone, machine and thread count the
table holds the median wall-clock of each pattern on each layer per batch and length bucket, what no
pattern changes, and one controller decision; :meth:`CostTable.per_example` reads it for a budget.
Measuring one is :mod:`metasparse.runtime.cost_measure`'s job, storing and re-using tables beside the
backbones :mod:`metasparse.runtime.cost_store`'s.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from metasparse.model.patterns import Pattern
from metasparse.runtime.in_context import context_scales, footprint_position

log = logging.getLogger(__name__)

# How cells are timed (stored in each table; a table timed another way is re-measured): "cold-l2" times
# every call after evicting the caches, as a real forward leaves them (each layer's weights follow other
# layers' weights); tables before it ("warm") repeated each call on a warm cache, where a narrow slice fits
# in L2 and looked cheaper than it runs (a quarter layer at batch 1: 0.57 of the full one warm, 0.69 cold).
# "-fused": since inference stacks q/k/v and attends in one SDPA call (metasparse.model.attention), a
# table timed on the unfused ops prices every layer higher than it now runs.
# "+context": every pattern is also timed on every layer as whole forwards and its cells scaled to match
# (:mod:`metasparse.runtime.in_context`); cells alone under-priced wide layers at batch 1 by a third.
# "+single": and on one layer with the others skipped, priced by a plan's footprint between the two.
TIMING = "cold-l2-fused+context+single"
BATCH_BUCKETS = (1, 8, 32)
# 24 and 48 since the grouping row: a layer's time grows faster than linearly between 32 and 64 words at
# batch 32 (attention, and an FFN activation past L2), so interpolating there priced a 45-word batch's dense
# layer 16% high (11.3 ms predicted, 9.7 measured) and made every ratio against dense look too good
LENGTH_BUCKETS = (8, 16, 24, 32, 48, 64)
FORMAT = 1


def codebook_units(codebook: list[Pattern]) -> list[list]:
    """The codebook as plain unit counts (what a table's columns are)."""
    return [[p.n_heads, p.n_groups, p.tokens, p.topk] + ([] if p.exit is None else [p.exit]) for p in codebook]


@dataclass
class CostTable:
    """Median milliseconds per call, for a whole batch of ``batch`` sentences of ``length`` words.

    Attributes:
        machine: :func:`~metasparse.runtime.identity.machine_fingerprint` where it was measured.
        threads: torch threads during the measurement.
        backbone: the backbone's identity (its cache key, or a hash of its architecture).
        codebook: unit counts of each pattern (columns of ``layer_ms``).
        batches, lengths: the buckets.
        layer_ms: ``[layer][batch][length][pattern]``, each cell timed alone.
        fixed_ms: ``[batch][length]``: embeddings, character encoder, final norm and task heads.
        context_ms: ``[batch][length][pattern]``: one forward running the pattern on every layer, back to
            back; predictions scale each pattern's cells to it (:func:`~metasparse.runtime.in_context.
            context_scales`). Empty in a table made by hand: its cells are used as they are.
        single_ms: ``[batch][length][pattern]``: one forward running the pattern on one layer, the others
            skipped. A plan that reads fewer weights keeps more of them in the caches: its layers are
            priced between the two by its footprint (``pattern_weights`` summed over its layers).
        pattern_weights: share of a layer's weights each pattern reads.
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
    single_ms: list[list[list[float]]] = field(default_factory=list)
    pattern_weights: list[float] = field(default_factory=list)

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
        for name, shape in (("grouping_ms", (B, T)), ("context_ms", (B, T, P)), ("single_ms", (B, T, P))):
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
    def priced(self, footprint: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The cells ``[L, B, T, P]`` and fixed part ``[B, T]`` predictions read: calibrated to whole
        forwards where the table has ``context_ms`` (as timed alone where it does not), for a plan reading
        ``footprint`` layers' worth of weights (None: every pattern as on every layer)."""
        layer, fixed = np.asarray(self.layer_ms, dtype=float), np.asarray(self.fixed_ms, dtype=float)
        if not self.context_ms:
            return layer, fixed
        single = np.asarray(self.single_ms, dtype=float) if self.single_ms else None
        scale, one, fixed = context_scales(
            layer, fixed, np.asarray(self.context_ms, dtype=float), self.codebook, single
        )
        if footprint is not None and one is not None:
            x = footprint_position(footprint, self.pattern_weights, len(layer))[0]  # [P]
            scale = one + x * (scale - one)
        return layer * scale[None], fixed

    def footprint(self, patterns_per_layer, previous=None) -> float:
        """Layers' worth of weights a batch reads: per layer the widest pattern any of its rows runs (the
        patterns are prefixes of one another); with ``previous``, the patterns the forward before it ran,
        the union of both (a stream of forwards: :mod:`metasparse.runtime.in_context`)."""
        w = np.asarray(self.pattern_weights or [1.0] * len(self.codebook))
        rows = (
            patterns_per_layer
            if previous is None
            else [[*a, *b] for a, b in zip(patterns_per_layer, previous, strict=True)]
        )
        return float(sum(w[np.asarray(row, dtype=int)].max() for row in rows))

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
            ``layers`` ``[L, N, P]`` per pattern (as run on every layer), ``fixed`` ``[N]``, ``controller``
            ``[N]`` per layer, and ``dense`` ``[N]`` (every layer on its full pattern plus the fixed part);
            where the table has single-layer forwards, also ``single`` ``[L, N, P]`` (as run on one layer,
            the others skipped) and ``weights`` ``[P]`` (:attr:`pattern_weights`), which
            :meth:`metasparse.control.budget.CostParts.layers_at` mixes by a plan's footprint.
        """
        b = self.batch_bucket(batch)
        size = self.batches[b]
        n = np.asarray([float(x) for x in lengths])
        at = lambda layer_ms: np.stack([self._interp(lay.T, n).T for lay in layer_ms[:, b]]) / size  # noqa: E731
        layer_ms, fixed_ms = self.priced()
        per_layer = at(layer_ms)  # [L, N, P]
        fixed = self._interp(fixed_ms[b], n) / size
        ctrl = self._interp(np.asarray(self.controller_ms[b]), n) / size
        dense = per_layer[:, :, self.full_index()].sum(0) + fixed
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        out = {"layers": as_t(per_layer), "fixed": as_t(fixed), "controller": as_t(ctrl), "dense": as_t(dense)}
        if self.single_ms and self.context_ms:
            out["single"], out["weights"] = as_t(at(self.priced(0.0)[0])), as_t(self.pattern_weights)
        return out

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

    def predict_ms(
        self, patterns_per_layer: list[list[int]], length: float, decisions: int = 0, previous=None
    ) -> float:
        """Predicted milliseconds of one batch padded to ``length`` words: ``patterns_per_layer[l][i]`` is
        sentence i's pattern at layer l, plus ``decisions`` controller decisions per forward (one per layer
        for per-layer controllers, one for an upfront controller, 0 for none); ``previous``: the patterns
        the forward before ran, in the same layout (a stream of forwards reads the union of both plans'
        weights; None: this forward alone, as a run of one plan).

        At each layer the sentences that chose the same pattern run together (:mod:`metasparse.model.grouped`),
        so each group is priced at its own size: a batch of 32 split into groups of 2 costs what 16 small
        calls cost, not 32 shares of one full call (pricing shares predicted random per-input decisions at
        batch 32 about half as slow as measured). A layer with more than one group also pays the split
        itself (``grouping_ms``)."""
        n = len(patterns_per_layer[0])
        layers, fixed = self.priced(self.footprint(patterns_per_layer, previous))  # [L, B, T, P], [B, T]
        total = self.sized_ms(fixed, n, length) + decisions * self.sized_ms(self.controller_ms, n, length)
        split = self.sized_ms(self.grouping_ms, n, length) if self.grouping_ms else 0.0
        for li, row in enumerate(patterns_per_layer):
            patterns, counts = np.unique(np.asarray(row), return_counts=True)
            total += split if len(patterns) > 1 else 0.0
            for p, k in zip(patterns, counts, strict=True):
                total += self.sized_ms(layers[li, :, :, int(p)], int(k), length)
        return total
