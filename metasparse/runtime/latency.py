"""Interleaved wall-clock measurement: absolute times on a shared machine drift, ratios taken in one
process with the contenders alternating do not (much)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 2,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, rotating their order every round.

    Args:
        fns: name -> the work to time (no arguments).
        repeats: timed rounds.
        warmup: untimed rounds first.
        cpu: if given, filled with name -> CPU seconds per call (``time.process_time``, all threads).

    Returns:
        name -> list of wall seconds per call, one per repeat (warm-up rounds dropped).
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    if cpu is not None:
        cpu.update({n: [] for n in names})
    for r in range(warmup + repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            c0, t0 = time.process_time(), time.perf_counter()
            fns[n]()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if r >= warmup:
                times[n].append(dt)
                if cpu is not None:
                    cpu[n].append(dc)
    return times


def quantiles(xs: list[float]) -> dict[str, float]:
    """Median and interquartile range of ``xs``."""
    if len(xs) < 2:
        v = xs[0] if xs else float("nan")
        return {"median": v, "p25": v, "p75": v}
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return {"median": statistics.median(xs), "p25": q[0], "p75": q[2]}
