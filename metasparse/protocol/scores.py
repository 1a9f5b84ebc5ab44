"""Accuracy, macro-F1 and FLOPs of a method on an encoded corpus."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import f1_score

from metasparse.baselines.methods import Method
from metasparse.train.corpus import EncodedCorpus
from metasparse.train.metrics import AccuracyTable


@dataclass
class Scores:
    """One method on one corpus.

    Attributes:
        accuracy: task -> token accuracy over all words (micro).
        macro_cells: task -> mean of per-cell accuracies (each cell counts the same).
        macro_f1: task -> macro-F1 over the labels that occur in gold or predictions (scikit-learn).
        by_cell: cell -> task -> accuracy.
        flops_fraction: FLOPs spent / dense FLOPs, summed over sentences.
        flops_per_token: FLOPs spent per word.
        words, sentences: corpus size.
        predictions: task -> predicted label ids per sentence (corpus order).
        levels: per sentence, the codebook pattern per layer (per-input methods), else None.
    """

    accuracy: dict[str, float]
    macro_cells: dict[str, float]
    macro_f1: dict[str, float]
    by_cell: dict[str, dict[str, float]]
    flops_fraction: float
    flops_per_token: float
    words: int
    sentences: int
    predictions: dict[str, list[list[int]]] = field(repr=False, default_factory=dict)
    levels: list[list[int]] | None = field(repr=False, default=None)

    def summary(self) -> dict:
        """Everything but the per-sentence lists (for JSON)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("predictions", "levels")}


def score(method: Method, corpus: EncodedCorpus, *, max_words: int = 4096) -> Scores:
    """Run ``method`` over ``corpus`` (length-bucketed batches of about ``max_words`` words) and score it."""
    tasks = sorted(corpus.labels)
    preds: dict[str, list] = {t: [None] * len(corpus) for t in tasks}
    levels: list | None = [None] * len(corpus)
    used = dense = 0.0
    table = AccuracyTable()
    for idx in corpus.batches(max_words, shuffle=False):
        batch = corpus.batch(idx)
        out = method(batch)
        used += sum(out.flops)
        dense += sum(out.dense_flops)
        lengths = batch.lengths.tolist()
        for t in tasks:
            am = out.logits[t].argmax(-1)
            for b, i in enumerate(idx):
                p = am[b, : lengths[b]].tolist()
                preds[t][i] = p
                table.add(
                    corpus.cells[i],
                    t,
                    sum(int(x == y) for x, y in zip(p, corpus.labels[t][i], strict=True)),
                    lengths[b],
                )
        if out.levels is None:
            levels = None
        elif levels is not None:
            for b, i in enumerate(idx):
                levels[i] = out.levels[b].tolist()
    words = int(corpus.lengths().sum())
    acc, f1 = {}, {}
    for t in tasks:
        gold = np.concatenate([np.asarray(g, dtype=np.int64) for g in corpus.labels[t]]) if len(corpus) else np.zeros(0)
        pred = np.concatenate([np.asarray(p, dtype=np.int64) for p in preds[t]]) if len(corpus) else np.zeros(0)
        acc[t] = float((gold == pred).mean()) if gold.size else float("nan")
        f1[t] = float(f1_score(gold, pred, average="macro", zero_division=0)) if gold.size else float("nan")
    return Scores(
        acc,
        {t: table.macro(t) for t in tasks},
        f1,
        table.as_dict(tasks),
        used / dense if dense else float("nan"),
        used / words if words else float("nan"),
        words,
        len(corpus),
        preds,
        levels,
    )
