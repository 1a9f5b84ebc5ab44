"""Tagging sentences with a method (the gated model's hard decisions, or any other) and summarising what
the controller chose: label ids per word, FLOPs against dense, words per second, patterns per layer."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from metasparse.model.corpus import EncodedCorpus
from metasparse.model.patterns import Pattern
from metasparse.scoring.methods import Method


@dataclass
class Tagged:
    """What tagging a corpus produced.

    Attributes:
        predictions: task -> label ids per sentence (corpus order), one per word.
        levels: per sentence, the codebook pattern index per layer (None for methods without decisions).
        flops_fraction: FLOPs spent / dense FLOPs over the corpus.
        words: words tagged.
        seconds: wall-clock of the forwards (encoding the text excluded).
    """

    predictions: dict[str, list[list[int]]]
    levels: list[list[int]] | None
    flops_fraction: float
    words: int
    seconds: float

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds > 0 else float("nan")


@torch.no_grad()
def tag(method: Method, corpus: EncodedCorpus, tasks: list[str], batch_size: int) -> Tagged:
    """Run ``method`` over ``corpus`` in batches of ``batch_size`` sentences of similar length."""
    n = len(corpus)
    order = np.argsort(corpus.lengths(), kind="stable")
    preds: dict[str, list] = {t: [None] * n for t in tasks}
    levels: list | None = [None] * n
    used = dense = 0.0
    seconds = 0.0
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size].tolist()
        batch = corpus.batch(idx)
        t0 = time.perf_counter()
        out = method(batch)
        seconds += time.perf_counter() - t0
        used, dense = used + sum(out.flops), dense + sum(out.dense_flops)
        lengths = batch.lengths.tolist()
        for t in tasks:
            am = out.logits[t].argmax(-1)
            for b, i in enumerate(idx):
                preds[t][i] = am[b, : lengths[b]].tolist()
        if out.levels is None:
            levels = None
        elif levels is not None:
            for b, i in enumerate(idx):
                levels[i] = out.levels[b].tolist()
    words = int(corpus.lengths().sum())
    return Tagged(preds, levels, used / dense if dense else float("nan"), words, seconds)


def decision_summary(levels: list[list[int]], codebook: list[Pattern]) -> list[dict]:
    """Per layer: the share of sentences that ran each pattern, most chosen first."""
    if not levels:
        return []
    out = []
    for layer in range(len(levels[0])):
        counts = Counter(sent[layer] for sent in levels)
        total = sum(counts.values())
        shares = [{"pattern": codebook[k].label, "share": c / total} for k, c in counts.most_common()]
        out.append({"layer": layer, "patterns": shares})
    return out
