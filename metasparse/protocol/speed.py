"""Latency percentiles, throughput and CPU time of methods, measured side by side with dense.

All methods run the same batches in one process, interleaved round by round in a new random order each
round, so that drift on a shared machine hits every method alike, and each after a few untimed inputs of
its own, as if deployed alone; ratios to dense are ratios of medians taken in the same rounds. CPU time
(``time.process_time``, all threads) per 1,000 words is the energy proxy.
"""

from __future__ import annotations

import statistics
import time
from functools import partial

import numpy as np
import torch

from metasparse.model.corpus import EncodedCorpus
from metasparse.runtime.costs import CostTable
from metasparse.runtime.latency import interleaved, quantiles
from metasparse.scoring.methods import Method, StaticMethod

# Untimed inputs each method runs right before its timed ones: a method deployed alone finds its own
# weights in the caches, not the previous method's (several methods here run separate weight copies, which
# together outgrow a 32 MiB L3)
WARM_SENTENCES = 8


def timing_batches(corpus: EncodedCorpus, batch: int, sentences: int, seed: int) -> list:
    """``sentences`` random sentences of ``corpus`` cut into batches of ``batch``."""
    rng = np.random.default_rng([seed, batch])
    idx = rng.choice(len(corpus), min(len(corpus), sentences), replace=False).tolist()
    return [corpus.batch(idx[i : i + batch]) for i in range(0, len(idx), batch)]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def _timed_batches(forward, batches: list, latencies: list[float]) -> None:
    """Run ``forward`` over ``batches``, appending each batch's latency (seconds)."""
    for b in batches:
        t0 = time.perf_counter()
        forward(b)
        latencies.append(time.perf_counter() - t0)


def codebook_levels(method: Method, batch) -> torch.Tensor | None:
    """``[B, L]`` codebook index per sentence and layer as ``method`` runs ``batch``: its decisions, a static
    structure whose unit counts are codebook patterns, or every layer full for dense; None when the
    structure is not made of codebook patterns (its latency is not in the table)."""
    model = method.model
    if method.family == "dense":
        return torch.full((batch.size, len(model.blocks)), model.codebook.index(model.full))
    if isinstance(method, StaticMethod):
        lookup = {(p.n_heads, p.n_groups): i for i, p in enumerate(model.codebook) if p.tokens >= 1 and p.topk is None}
        idx = [lookup.get((p.n_heads, p.n_groups)) for p in method.patterns]
        return None if None in idx else torch.tensor(idx).expand(batch.size, -1)
    return method(batch).levels


def predicted_ratio(method: Method, dense: Method, batches: list, table: CostTable) -> float | None:
    """Latency of ``method`` over dense on ``batches`` as the cost table predicts it (every row at its
    batch's padded length, the controller's decisions included for per-input methods); None when the
    method's structure is not in the table. The batches run as a stream, in order: each is priced at the
    union of its plan and the one before (:mod:`metasparse.runtime.in_context`)."""
    used = ref = 0.0
    before = None
    for b in batches:
        levels, full = codebook_levels(method, b), codebook_levels(dense, b)
        if levels is None:
            return None
        T = int(b.word_mask.shape[1])
        decides = method.family == "per-input" and bool(getattr(method, "controller_flops", lambda n: 0)(T))
        # the table holds one decision: per layer, or per forward for an upfront controller (as the budget
        # prices it, metasparse.control.budget.LatencyCost)
        n = (getattr(method, "decisions_per_forward", None) or levels.shape[1]) if decides else 0
        plan = levels.T.tolist()
        used += table.predict_ms(plan, T, decisions=n, previous=before)
        ref += table.predict_ms(full.T.tolist(), T)
        before = plan
    return used / ref


@torch.no_grad()
def measure_speed(
    methods: dict[str, Method],
    corpus: EncodedCorpus,
    *,
    batch_sizes: tuple[int, ...] = (1, 32),
    sentences: int = 64,
    repeats: int = 10,
    warmup: int = 2,
    seed: int = 0,
    baseline: str = "dense",
    table: CostTable | None = None,
) -> list[dict]:
    """One row per (batch size, method): latency p50/p90/p99 per batch (ms), words per second, CPU ms per
    1,000 words, the wall ratio to ``baseline`` (ratio of medians, with the IQR of per-round ratios) and,
    given the backbone's cost ``table``, the ratio it predicts (None where the structure is not in it).
    Every timed pass of a method follows a few untimed inputs of its own (:data:`WARM_SENTENCES`), in a new
    random order of methods each round (:func:`~metasparse.runtime.latency.interleaved`)."""
    rows = []
    for bs in batch_sizes:
        batches = timing_batches(corpus, bs, max(sentences, bs), seed)
        words = sum(int(b.lengths.sum()) for b in batches)
        for m in methods.values():
            m.model.eval()
        lat: dict[str, list[float]] = {n: [] for n in methods}
        fns = {n: partial(_timed_batches, m.forward, batches, lat[n]) for n, m in methods.items()}
        warm = batches[-max(1, WARM_SENTENCES // bs) :]  # the stream's last inputs, as if it had run before
        before = {n: partial(_timed_batches, m.forward, warm, []) for n, m in methods.items()}
        cpu: dict[str, list[float]] = {}
        wall = interleaved(fns, repeats=repeats, warmup=warmup, cpu=cpu, before=before, seed=seed)
        for n in methods:
            per = lat[n][warmup * len(batches) :]  # the warm-up rounds' batches come first
            ratios = [a / b for a, b in zip(wall[n], wall[baseline], strict=True)] if baseline in wall else []
            q = quantiles(ratios) if len(ratios) > 1 else {"p25": float("nan"), "p75": float("nan")}
            rows.append(
                {
                    "batch": bs,
                    "method": n,
                    "p50_ms": 1000 * _pct(per, 50),
                    "p90_ms": 1000 * _pct(per, 90),
                    "p99_ms": 1000 * _pct(per, 99),
                    "words_per_s": words / statistics.median(wall[n]),
                    "cpu_ms_per_1k_words": 1000 * statistics.median(cpu[n]) / words * 1000,
                    "wall_ratio": statistics.median(wall[n]) / statistics.median(wall[baseline])
                    if ratios
                    else float("nan"),
                    "wall_ratio_p25": q["p25"],
                    "wall_ratio_p75": q["p75"],
                    "predicted_ratio": None
                    if table is None or baseline not in methods
                    else predicted_ratio(methods[n], methods[baseline], batches, table),
                    "repeats": repeats,
                    "words": words,
                }
            )
    return rows
