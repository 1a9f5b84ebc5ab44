"""Batch-size consistency: a sentence gets the same labels and the same decisions alone as in a batch.

Padding, grouping by pattern and batched matmuls must not change what a sentence is computed as; if
they did, a deployment's answers would depend on its traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from metasparse.model.corpus import EncodedCorpus
from metasparse.scoring.methods import Method


@dataclass
class Consistency:
    """Share of sentences whose predictions (all tasks) and decisions agree at batch 1 and batch ``big``."""

    sentences: int
    big: int
    same_predictions: float
    same_decisions: float | None
    mismatched: list[int]


def batch_consistency(method: Method, corpus: EncodedCorpus, *, big: int = 32, limit: int = 64) -> Consistency:
    """Run the first ``limit`` sentences one by one and in batches of ``big``; compare."""
    n = min(limit, len(corpus))
    single = [method(corpus.batch([i])) for i in range(n)]
    batched: dict[int, tuple] = {}
    for start in range(0, n, big):
        idx = list(range(start, min(n, start + big)))
        out = method(corpus.batch(idx))
        for b, i in enumerate(idx):
            batched[i] = (out, b)
    same_pred = same_dec = 0
    mismatched = []
    has_levels = single[0].levels is not None if n else False
    for i in range(n):
        k = corpus.items[i].n_words
        s, (o, b) = single[i], batched[i]
        p_ok = all(s.logits[t][0, :k].argmax(-1).tolist() == o.logits[t][b, :k].argmax(-1).tolist() for t in s.logits)
        d_ok = (s.levels[0].tolist() == o.levels[b].tolist()) if has_levels else True
        same_pred += p_ok
        same_dec += d_ok
        if not (p_ok and d_ok):
            mismatched.append(i)
    return Consistency(n, big, same_pred / max(n, 1), (same_dec / max(n, 1)) if has_levels else None, mismatched)
