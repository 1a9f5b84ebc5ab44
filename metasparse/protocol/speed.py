"""Latency percentiles, throughput and CPU time of methods, measured side by side with dense.

All methods run the same batches in one process, interleaved round by round with their order rotated,
so that drift on a shared machine hits every method alike; ratios to dense are ratios of medians taken
in the same rounds. CPU time (``time.process_time``, all threads) per 1,000 words is the energy proxy.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from metasparse.scoring.methods import Method
from metasparse.train.corpus import EncodedCorpus


def timing_batches(corpus: EncodedCorpus, batch: int, sentences: int, seed: int) -> list:
    """``sentences`` random sentences of ``corpus`` cut into batches of ``batch``."""
    rng = np.random.default_rng([seed, batch])
    idx = rng.choice(len(corpus), min(len(corpus), sentences), replace=False).tolist()
    return [corpus.batch(idx[i : i + batch]) for i in range(0, len(idx), batch)]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


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
) -> list[dict]:
    """One row per (batch size, method): latency p50/p90/p99 per batch (ms), words per second, CPU ms per
    1,000 words, and the wall ratio to ``baseline`` (median of per-round ratios, with its IQR)."""
    rows = []
    for bs in batch_sizes:
        batches = timing_batches(corpus, bs, max(sentences, bs), seed)
        words = sum(int(b.lengths.sum()) for b in batches)
        for m in methods.values():
            m.model.eval()
        lat = {n: [] for n in methods}
        wall = {n: [] for n in methods}
        cpu = {n: [] for n in methods}
        names = list(methods)
        for r in range(warmup + repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for n in order:
                f = methods[n].forward
                c0, t0 = time.process_time(), time.perf_counter()
                per = []
                for b in batches:
                    t1 = time.perf_counter()
                    f(b)
                    per.append(time.perf_counter() - t1)
                if r >= warmup:
                    wall[n].append(time.perf_counter() - t0)
                    cpu[n].append(time.process_time() - c0)
                    lat[n].extend(per)
        for n in names:
            ratios = [a / b for a, b in zip(wall[n], wall[baseline], strict=True)] if baseline in wall else []
            q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [float("nan")] * 3
            rows.append(
                {
                    "batch": bs,
                    "method": n,
                    "p50_ms": 1000 * _pct(lat[n], 50),
                    "p90_ms": 1000 * _pct(lat[n], 90),
                    "p99_ms": 1000 * _pct(lat[n], 99),
                    "words_per_s": words / statistics.median(wall[n]),
                    "cpu_ms_per_1k_words": 1000 * statistics.median(cpu[n]) / words * 1000,
                    "wall_ratio": statistics.median(wall[n]) / statistics.median(wall[baseline])
                    if ratios
                    else float("nan"),
                    "wall_ratio_p25": q[0],
                    "wall_ratio_p75": q[2],
                    "repeats": repeats,
                    "words": words,
                }
            )
    return rows
