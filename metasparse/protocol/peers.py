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


def _speed(dense: Method, tagger_fn, corpus: EncodedCorpus, covered: set[str], cfg: EvaluateConfig) -> dict:
    """The peer and dense at batch 1 over the same sentences (of languages the peer covers), interleaved:
    words/s and the wall ratio."""
    positions = [i for i, lang in enumerate(corpus.langs) if lang in covered][: cfg.latency.sentences]
    n = len(positions)
    batches = [corpus.batch([i]) for i in positions]
    rows = [int(corpus.rows[i]) for i in positions]
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
    from metasparse.baselines.udpipe import load_taggers, train_taggers, udpipe_scores

    ds = loaded.bundle.dataset
    t0 = time.time()
    train_rows = source_train_rows(loaded, cfg.udpipe.max_train_sentences)
    models = train_taggers(ds, train_rows, iterations=cfg.udpipe.iterations, workers=cfg.udpipe.workers)
    taggers = load_taggers(models)
    log.info("udpipe: %d taggers ready in %.0fs", len(models), time.time() - t0)

    def scores(corpus: EncodedCorpus) -> dict:
        return udpipe_scores(ds, [int(r) for r in corpus.rows], list(corpus.cells), taggers).summary()

    langs, words = ds["lang"], ds["words"]

    def tag_rows(rows: list[int]) -> None:
        for r in rows:
            taggers[langs[r]].tag(words[r])

    src = scores(splits.test)
    up = src["accuracy"]["upos"], src["macro_langs"]["upos"]
    log.info("udpipe: source UPOS %.4f (macro over languages %.4f)", *up)
    return {
        "family": "peer",
        "source_test": src,
        "targets_zero_shot": scores(targets) if targets is not None else None,
        "speed": _speed(dense, tag_rows, splits.test, set(taggers), cfg),
        "options": {"iterations": cfg.udpipe.iterations, "max_train_sentences": cfg.udpipe.max_train_sentences},
        "train_sentences": {lang: len(r) for lang, r in train_rows.items()},
    }
