"""What the monitor measures, kept per sentence, so that any subset aggregates without running the model
again: the observation of a whole input, and the sampling noise of each drift measure (bootstrap
resamples of the reference, of the input's size, compared with the reference itself)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SentenceStats:
    """One sentence's share of every drift measure."""

    words: Counter
    subwords: Counter
    n_words: int
    n_subwords: int
    chars: int
    byte_chars: int
    upos: Counter
    flops: float
    dense_flops: float
    confidence: float
    uncertainty: float


def sentence_stats(model, controller, tokenizer, sentences: list[list[str]]) -> list[SentenceStats]:
    """Tokenise ``sentences`` and run the controller's hard decisions on them (the one walker, score())."""
    from metasparse.control.controller import controlled
    from metasparse.diagnostics.shift import byte_piece_chars
    from metasparse.model.corpus import EncodedCorpus
    from metasparse.model.uncertainty import normalized_entropy
    from metasparse.scoring import score

    corpus = EncodedCorpus.unlabelled(sentences, tokenizer, model.spec.suffix_buckets)
    stats: list[SentenceStats | None] = [None] * len(sentences)

    def watch(batch, idx, out) -> None:
        top = torch.stack([p.max(-1).values for p in out.decision_probs], 1).mean(1)  # [B] mean over layers
        word_unc, tags = normalized_entropy(out.logits["upos"]), out.logits["upos"].argmax(-1)
        for b, (i, n) in enumerate(zip(idx, batch.lengths.tolist(), strict=True)):
            words = sentences[i]
            ids = tokenizer.encode_words(list(words)).input_ids
            stats[i] = SentenceStats(
                Counter(w.casefold() for w in words),
                Counter(ids),
                len(words),
                len(ids),
                sum(len(w) for w in words),
                sum(byte_piece_chars(tokenizer, w) for w in words),
                Counter(tags[b, :n].tolist()),
                float(out.flops[b]),
                float(out.dense_flops[b]),
                float(top[b]),
                float(word_unc[b, :n].mean()),
            )

    score(controlled(model, controller), corpus, max_words=4096, observe=watch)
    return stats  # type: ignore[return-value]


def aggregate(stats: Sequence[SentenceStats]) -> dict:
    """The observation of a set of sentences (what :func:`metasparse.diagnostics.drift.compare` reads)."""
    words, subwords, upos = Counter(), Counter(), Counter()
    for s in stats:
        words.update(s.words)
        subwords.update(s.subwords)
        upos.update(s.upos)
    n_words = sum(s.n_words for s in stats)
    chars = sum(s.chars for s in stats)
    return {
        "words": words,
        "subwords": subwords,
        "fertility": sum(s.n_subwords for s in stats) / n_words,
        "unknown_char_rate": sum(s.byte_chars for s in stats) / chars if chars else 0.0,
        "mean_length": n_words / len(stats),
        "predicted_upos": upos,
        "flops_fraction": sum(s.flops for s in stats) / sum(s.dense_flops for s in stats),
        "confidence": float(np.mean([s.confidence for s in stats])),
        "uncertainty": float(np.mean([s.uncertainty for s in stats])),
        "sentences": len(stats),
    }


def noise_floor(
    stats: Sequence[SentenceStats],
    ref: dict,
    compare: Callable[[dict, dict], dict[str, float]],
    n: int,
    *,
    resamples: int,
    quantile: float,
    seed: int = 0,
) -> dict[str, float]:
    """Per measure, the ``quantile`` of its value between ``resamples`` bootstrap samples of ``n`` reference
    sentences and the reference: how large a measure gets from sampling alone, with no drift at all."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    for _ in range(resamples):
        sample = [stats[i] for i in rng.integers(0, len(stats), n)]
        for m, v in compare(aggregate(sample), ref).items():
            values.setdefault(m, []).append(v)
    return {m: float(np.quantile(v, quantile)) for m, v in values.items()}
