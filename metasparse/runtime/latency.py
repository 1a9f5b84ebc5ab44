"""Interleaved wall-clock measurement: absolute times on a shared machine drift, ratios taken in one
process with the contenders alternating do not (much)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, rotating their order every round.

    Returns:
        name -> list of seconds per call, one per repeat (warm-up rounds dropped).
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            fns[n]()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[n].append(dt)
    return times


def quantiles(xs: list[float]) -> dict[str, float]:
    """Median and interquartile range of ``xs``."""
    if len(xs) < 2:
        v = xs[0] if xs else float("nan")
        return {"median": v, "p25": v, "p75": v}
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return {"median": statistics.median(xs), "p25": q[0], "p75": q[2]}
