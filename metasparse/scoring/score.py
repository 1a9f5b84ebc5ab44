"""The one corpus walker: accuracy per cell and per language, macro-F1 and FLOPs of a method on a corpus."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from metasparse.model.corpus import EncodedCorpus
from metasparse.model.features import Batch
from metasparse.scoring.methods import Method, MethodOutput
from metasparse.scoring.metrics import AccuracyTable

# Called once per batch with the batch, its corpus indices and what the method produced: the hook through
# which diagnostics and the monitor read more of a walk (uncertainty, decision probabilities) than scores.
BatchObserver = Callable[[Batch, Sequence[int], MethodOutput], None]


@dataclass
class Scores:
    """One method on one corpus.

    Attributes:
        by_cell: correct / total words per (cell, task).
        by_lang: correct / total words per (language, task).
        flops_fraction: FLOPs spent / dense FLOPs, summed over sentences.
        flops_per_token: FLOPs spent per word.
        words, sentences: corpus size.
        sentence_flops: per sentence (corpus order), FLOPs spent / its dense FLOPs.
        predictions: task -> predicted label ids per sentence (corpus order).
        levels: per sentence, the codebook pattern per layer (per-input methods), else None.
        gold: task -> gold label ids per sentence (the corpus's own lists), for macro-F1.
    """

    by_cell: AccuracyTable
    by_lang: AccuracyTable
    flops_fraction: float
    flops_per_token: float
    words: int
    sentences: int
    sentence_flops: list[float] = field(repr=False, default_factory=list)
    predictions: dict[str, list[list[int]]] = field(repr=False, default_factory=dict)
    levels: list[list[int]] | None = field(repr=False, default=None)
    gold: dict[str, list[list[int]]] = field(repr=False, default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.gold)

    @property
    def accuracy(self) -> dict[str, float]:
        """Task -> token accuracy over all words (micro)."""
        return {t: self.by_cell.micro(t) for t in self.tasks}

    @property
    def macro_cells(self) -> dict[str, float]:
        """Task -> mean of per-cell accuracies (each cell counts the same)."""
        return {t: self.by_cell.macro(t) for t in self.tasks}

    @property
    def macro_langs(self) -> dict[str, float]:
        """Task -> mean of per-language accuracies (each language counts the same)."""
        return {t: self.by_lang.macro(t) for t in self.tasks}

    @cached_property
    def macro_f1(self) -> dict[str, float]:
        """Task -> macro-F1 over the labels that occur in gold or predictions (scikit-learn)."""
        from sklearn.metrics import f1_score  # here: importing scikit-learn adds ~1 s to every CLI's start

        out = {}
        for t in self.tasks:
            gold = [y for sent in self.gold[t] for y in sent]
            pred = [y for sent in self.predictions[t] for y in sent]
            out[t] = float(f1_score(gold, pred, average="macro", zero_division=0)) if gold else float("nan")
        return out

    def summary(self) -> dict:
        """The scalars and tables, without per-sentence lists (for JSON)."""
        return {
            "accuracy": self.accuracy,
            "macro_cells": self.macro_cells,
            "macro_langs": self.macro_langs,
            "macro_f1": self.macro_f1,
            "by_cell": self.by_cell.as_dict(self.tasks),
            "by_lang": self.by_lang.as_dict(self.tasks),
            "flops_fraction": self.flops_fraction,
            "flops_per_token": self.flops_per_token,
            "words": self.words,
            "sentences": self.sentences,
        }


def score(
    method: Method, corpus: EncodedCorpus, *, max_words: int = 4096, observe: BatchObserver | None = None
) -> Scores:
    """Run ``method`` over ``corpus`` in length-bucketed batches of about ``max_words`` padded words.

    Args:
        method: how the backbone runs (dense, a policy, a static plan ...).
        corpus: encoded sentences; tasks without gold labels in it are predicted but not scored.
        max_words: padded words per batch.
        observe: called after each batch (see :data:`BatchObserver`).
    """
    tasks = sorted(corpus.labels)
    n = len(corpus)
    preds: dict[str, list] = {t: [None] * n for t in tasks}
    levels: list | None = [None] * n
    sent_flops: list[float] = [0.0] * n
    used = dense = 0.0
    by_cell, by_lang = AccuracyTable(), AccuracyTable()
    for idx in corpus.batches(max_words, shuffle=False):
        batch = corpus.batch(idx)
        out = method(batch)
        lengths = batch.lengths.tolist()
        for b, i in enumerate(idx):
            used, dense = used + out.flops[b], dense + out.dense_flops[b]
            sent_flops[i] = out.flops[b] / out.dense_flops[b] if out.dense_flops[b] else float("nan")
        for t in tasks:
            am = out.logits[t].argmax(-1)
            hits = ((am == batch.labels[t]) & batch.word_mask).sum(1).tolist()
            for b, i in enumerate(idx):
                preds[t][i] = am[b, : lengths[b]].tolist()
                by_cell.add(corpus.cells[i], t, hits[b], lengths[b])
                by_lang.add(corpus.langs[i], t, hits[b], lengths[b])
        if out.levels is None:
            levels = None
        elif levels is not None:
            for b, i in enumerate(idx):
                levels[i] = out.levels[b].tolist()
        if observe is not None:
            observe(batch, idx, out)
    words = int(corpus.lengths().sum())
    return Scores(
        by_cell,
        by_lang,
        used / dense if dense else float("nan"),
        used / words if words else float("nan"),
        words,
        n,
        sent_flops,
        preds,
        levels,
        {t: corpus.labels[t] for t in tasks},
    )
