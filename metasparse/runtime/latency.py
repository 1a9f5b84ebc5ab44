"""Interleaved wall-clock measurement: absolute times on a shared machine drift, ratios taken in one
process with the contenders alternating do not (much)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

# Larger than the L2 caches of the cores a measurement runs on (2 MiB a core here): writing it with the
# measurement's threads leaves every core's L2 without the timed call's weights, as in a real forward
EVICT_BYTES = 8 * 1024 * 1024
# Calls a cold sample repeats at most: each follows an eviction that takes longer than a small layer call,
# so sizing small calls to min_ms multiplied a table's measurement time (the tests' tiny tables by ~5);
# perf_counter resolves a single 0.05 ms call, and the median over rounds absorbs the rest.
COLD_MAX_REPS = 3


def interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 2,
    cpu: dict[str, list[float]] | None = None,
    before: dict[str, Callable[[], object]] | None = None,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, in a new random order every round (seeded).

    A fixed rotation kept every function behind the same neighbour in every round, so the one after a
    function on other weights always started with cold caches and the one after a function on its own
    weights always warm: on a run's six evaluation methods that moved batch-1 ratios against dense by up
    to 25% between the rotation and random orders. ``before`` removes the neighbour from the measurement
    altogether, as a deployment has none: each call of ``fns[n]`` follows ``before[n]`` (untimed), e.g.
    a few forwards of the same method.

    Args:
        fns: name -> the work to time (no arguments).
        repeats: timed rounds.
        warmup: untimed rounds first.
        cpu: if given, filled with name -> CPU seconds per call (``time.process_time``, all threads).
        before: name -> untimed work run right before each of its calls (warm-up rounds included).
        seed: the rounds' orders.

    Returns:
        name -> list of wall seconds per call, one per repeat (warm-up rounds dropped).
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    if cpu is not None:
        cpu.update({n: [] for n in names})
    rng = np.random.default_rng(seed)
    for r in range(warmup + repeats):
        for n in (names[i] for i in rng.permutation(len(names))):
            if before is not None and n in before:
                before[n]()
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


def cold_call_ms(fn: Callable[[], object], reps: int, evict: torch.Tensor) -> float:
    """Milliseconds per call of ``fn`` over ``reps`` calls, each after ``evict`` is rewritten (untimed).

    A layer's call repeated on a warm cache keeps its weights in L2 when they fit: a narrow slice then
    looks cheaper, relative to the full layer, than it runs inside a forward, where each layer's weights
    come after other layers' (a quarter layer at batch 1: 0.57 of the full one warm, 0.69 cold)."""
    total = 0.0
    for _ in range(reps):
        evict.add_(1.0)
        t0 = time.perf_counter()
        fn()
        total += time.perf_counter() - t0
    return total * 1000 / reps


def interleaved_samples(fns: list, rounds: int, min_ms: float, progress=None) -> list[list[float]]:
    """Milliseconds per call of each function, once per round in a new random order, every call after the
    caches are evicted (:func:`cold_call_ms`), after an untimed warm-up round that also sizes each call's
    repetitions (about ``min_ms`` of calls a sample, at most :data:`COLD_MAX_REPS`)."""
    evict = torch.zeros(EVICT_BYTES // 4)
    reps = []
    with torch.no_grad():
        for fn in fns:
            fn()
            n = int(np.ceil(min_ms / max(cold_call_ms(fn, 1, evict), 1e-3)))
            reps.append(min(max(1, n), COLD_MAX_REPS))
        samples: list[list[float]] = [[] for _ in fns]
        rng = np.random.default_rng(0)
        for r in range(rounds):
            for i in rng.permutation(len(fns)).tolist():
                samples[i].append(cold_call_ms(fns[i], reps[i], evict))
            if progress is not None:
                progress(r + 1, rounds)
    return samples
