"""Peer taggers in the evaluation protocol: trained on the run's source train split, scored on the same
source test and target sentences as every method, and timed side by side with dense at batch 1."""

from __future__ import annotations

import logging
import statistics
import time
from collections import defaultdict

import torch

from metasparse.config import EvaluateConfig
from metasparse.model.corpus import EncodedCorpus
from metasparse.runtime.latency import interleaved
from metasparse.scoring import Method

log = logging.getLogger(__name__)


def source_train_rows(loaded, limit: int | None) -> dict[str, list[int]]:
    """Per language, the run's source cells' train sentences (dataset rows; the first ``limit`` of them)."""
    idx, out = loaded.bundle.index, defaultdict(list)
    for c in loaded.bundle.sources:
        out[c.lang] += [int(r) for r in idx.rows(c, "train")]
    return {lang: sorted(rows)[:limit] if limit else sorted(rows) for lang, rows in out.items()}


def _speed(dense: Method, tagger_fn, corpus: EncodedCorpus, cfg: EvaluateConfig) -> dict:
    """The peer and dense at batch 1 over the same sentences, interleaved: words/s and the wall ratio."""
    n = min(len(corpus), cfg.latency.sentences)
    batches = [corpus.batch([i]) for i in range(n)]
    rows = [int(r) for r in corpus.rows[:n]]
    words = sum(int(b.lengths.sum()) for b in batches)

    def run_dense() -> None:
        with torch.no_grad():
            for b in batches:
                dense(b)

    times = interleaved({"dense": run_dense, "udpipe": lambda: tagger_fn(rows)}, repeats=cfg.latency.repeats)
    ratios = [u / d for u, d in zip(times["udpipe"], times["dense"], strict=True)]
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "batch": 1,
        "sentences": n,
        "words_per_s": words / statistics.median(times["udpipe"]),
        "dense_words_per_s": words / statistics.median(times["dense"]),
        "wall_ratio": statistics.median(times["udpipe"]) / statistics.median(times["dense"]),
        "wall_ratio_p25": q[0],
        "wall_ratio_p75": q[2],
        "threads": {"udpipe": 1, "dense": cfg.latency.threads},
    }


def udpipe_result(loaded, splits, targets: EncodedCorpus | None, dense: Method, cfg: EvaluateConfig) -> dict:
    """The UDPipe 1 peer (see :mod:`metasparse.baselines.udpipe`): UPOS on the source test cells and the
    targets, and its speed next to dense."""
    from metasparse.baselines.udpipe import Tagger, train_taggers, udpipe_scores

    ds = loaded.bundle.dataset
    t0 = time.time()
    models = train_taggers(
        ds,
        source_train_rows(loaded, cfg.udpipe.max_train_sentences),
        iterations=cfg.udpipe.iterations,
        workers=cfg.udpipe.workers,
    )
    log.info("udpipe: %d taggers ready in %.0fs", len(models), time.time() - t0)

    def scores(corpus: EncodedCorpus) -> dict:
        return udpipe_scores(ds, [int(r) for r in corpus.rows], list(corpus.cells), models).summary()

    taggers = {lang: Tagger(p) for lang, p in models.items()}
    langs, words = ds["lang"], ds["words"]

    def tag_rows(rows: list[int]) -> None:
        for r in rows:
            if langs[r] in taggers:
                taggers[langs[r]].tag(words[r])

    src = scores(splits.test)
    log.info(
        "udpipe: source UPOS %.4f (macro over languages %.4f)", src["accuracy"]["upos"], src["macro_langs"]["upos"]
    )
    return {
        "family": "peer",
        "source_test": src,
        "targets_zero_shot": scores(targets) if targets is not None else None,
        "speed": _speed(dense, tag_rows, splits.test, cfg),
        "options": {"iterations": cfg.udpipe.iterations, "max_train_sentences": cfg.udpipe.max_train_sentences},
        "train_sentences": {
            lang: len(r) for lang, r in source_train_rows(loaded, cfg.udpipe.max_train_sentences).items()
        },
    }
