"""Accuracy and FLOPs of a model (dense, a static plan, or a policy) on an encoded corpus."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from metasparse.model.encoder import GatedEncoder, Policy
from metasparse.model.flops import dense_flops, gated_flops
from metasparse.train.corpus import EncodedCorpus
from metasparse.train.metrics import AccuracyTable


@dataclass
class EvalResult:
    """Accuracy per language and per cell, and FLOPs used over dense FLOPs (summed over sentences)."""

    by_lang: AccuracyTable
    by_cell: AccuracyTable
    flops_fraction: float
    pattern_counts: list[list[int]]  # [layer][pattern] how often each pattern ran


@torch.no_grad()
def evaluate(
    model: GatedEncoder,
    corpus: EncodedCorpus,
    *,
    policy: Policy | None = None,
    plan: Sequence[int] | None = None,
    controller_flops: Callable[[int], int] | None = None,
    max_words: int = 4096,
) -> EvalResult:
    """Label every sentence of ``corpus`` and score it.

    Args:
        model: the encoder (put in eval mode here).
        corpus: encoded sentences with gold labels.
        policy: per-input decisions (hard); None with no ``plan`` runs dense.
        plan: one codebook index per layer for every input.
        controller_flops: ``n_words -> FLOPs`` of the controller per layer, counted when a policy runs.
        max_words: padded words per evaluation batch.
    """
    was_training = model.training
    model.eval()
    by_lang, by_cell = AccuracyTable(), AccuracyTable()
    used = dense = 0
    counts = [[0] * model.n_patterns for _ in model.blocks]
    for idx in corpus.batches(max_words, shuffle=False):
        batch = corpus.batch(idx)
        out = model(batch, policy, plan=plan)
        lengths = batch.lengths.tolist()
        levels = [d.levels.tolist() if d is not None else None for d in out.decisions]
        for b, n in enumerate(lengths):
            pats = [model.codebook[lv[b]] if lv is not None else model.full for lv in levels]
            for layer, lv in enumerate(levels):
                counts[layer][lv[b] if lv is not None else model.full_index()] += 1
            ctrl = controller_flops(n) if (policy is not None and controller_flops) else 0
            used += gated_flops(model.spec, pats, n, ctrl)
            dense += dense_flops(model.spec, n)
        for task, logits in out.logits.items():
            gold = batch.labels[task]
            hit = (logits.argmax(-1) == gold) & batch.word_mask
            for b, i in enumerate(idx):
                c, n = int(hit[b].sum()), lengths[b]
                by_lang.add(corpus.langs[i], task, c, n)
                by_cell.add(corpus.cells[i], task, c, n)
    model.train(was_training)
    return EvalResult(by_lang, by_cell, used / dense if dense else float("nan"), counts)
