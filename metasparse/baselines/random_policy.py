"""Random per-input decisions at a budget: each layer of each sentence draws a codebook pattern from one
fixed distribution, tilted toward cheap or wide patterns so that the expected cost meets the target, in
FLOPs or in the run's own unit (a latency table: the same budget a latency-priced controller meets). The
draw is seeded by the sentence itself, so a sentence gets the same decisions in any batch."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

import numpy as np
import torch

from metasparse.control.budget import CostModel, FlopsCost
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import Decision, GatedEncoder
from metasparse.scoring.methods import PolicyMethod


def pattern_probs(
    model: GatedEncoder, lengths, target: float, *, cost: CostModel | None = None, iters: int = 40
) -> np.ndarray:
    """``softmax(c * cost_share)`` over the codebook with ``c`` bisected so that the expected cost of
    sentences of ``lengths`` over their dense cost equals ``target`` (``cost``: FLOPs by default; random
    decisions pay no controller)."""
    lengths = torch.as_tensor(np.asarray(lengths))
    parts = (cost or FlopsCost(model)).parts(lengths)
    layers = parts.layers.double().sum(1)  # [L, P] summed over the sentences, each pattern as on every layer
    dense, fixed = float(parts.dense.double().sum()), float(parts.fixed.double().sum())
    share = layers.sum(0) / layers.sum(0).max()

    def frac(c: float) -> float:
        p = torch.softmax(c * share, 0)
        at = parts.layers_at(parts.footprint([p.float()[None]] * len(layers)))  # priced at the plans' footprint
        return float(((at.double().sum(1) * p).sum() + fixed) / dense)

    lo, hi = -60.0, 60.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if frac(mid) < target else (lo, mid)
    return torch.softmax(lo * share, 0).numpy()


_MASK64 = (1 << 64) - 1


def sentence_keys(batch) -> list[int]:
    """A stable integer per sentence of ``batch`` (its word-form hashes), independent of padding."""
    keys = []
    for row, n in zip(batch.word_hash.tolist(), batch.lengths.tolist(), strict=True):
        h = 0xCBF29CE484222325  # FNV-1a over the word-form ids, in plain Python (see random_levels)
        for v in row[:n]:
            h = ((h ^ v) * 0x100000001B3) & _MASK64
        keys.append(h)
    return keys


def _mix(z: int) -> int:
    """splitmix64's finaliser: well-spread 64-bit values from consecutive integers."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def random_levels(probs, keys: list[int], layers: int, seed: int = 0) -> torch.Tensor:
    """``[B, layers]`` pattern draws from ``probs``, a pure function of (seed, sentence key, layer): one
    hashed uniform per draw read through the cumulative distribution.

    Plain Python on purpose, because the draw is timed with the method: a generator built per sentence
    cost 9% of dense latency at batch 1, and even a few numpy calls between two forwards cost ~0.1 ms
    there (about 5% of dense), time that random decisions, the reference for what a learned controller
    adds, should not pay."""
    cdf = list(accumulate(float(p) for p in probs))
    cdf = [c / cdf[-1] for c in cdf]
    base = (seed * 0x9E3779B97F4A7C15) & _MASK64
    rows = []
    for k in keys:
        start = (k * (layers + 1) + base) & _MASK64
        rows.append([min(bisect_right(cdf, (_mix(start + i) >> 11) / 2.0**53), len(cdf) - 1) for i in range(layers)])
    return torch.tensor(rows, dtype=torch.long)


def random_policy(model: GatedEncoder, levels: torch.Tensor):
    """A policy that plays back pre-drawn ``levels`` ``[B, layers]``."""
    routed = any(p.tokens < 1.0 for p in model.codebook)

    def decide(layer: int, x: torch.Tensor, mask: torch.Tensor) -> Decision:
        return Decision(token_scores=model.token_uncertainty(x) if routed else None, hard_levels=levels[:, layer])

    return decide


class RandomMethod(PolicyMethod):
    """Random per-input decisions (see the module docstring)."""

    def __init__(self, model: GatedEncoder, probs: np.ndarray, seed: int = 0) -> None:
        self.probs, self.seed = probs, seed
        super().__init__(model, None, lambda n: 0, "random")

    def forward(self, batch):
        levels = random_levels(self.probs, sentence_keys(batch), self.model.spec.layers, self.seed)
        return self.model(batch, random_policy(self.model, levels))


def random_calibrated(
    model: GatedEncoder, calib: EncodedCorpus, target: float, seed: int = 0, cost: CostModel | None = None
) -> RandomMethod:
    """Random decisions whose expected cost on ``calib`` is ``target`` of dense (``cost``: FLOPs if None)."""
    return RandomMethod(model, pattern_probs(model, calib.lengths(), target, cost=cost), seed)
