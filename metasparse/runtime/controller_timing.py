"""One controller decision's time, measured where it runs: inside forwards, right after the layers it follows.

A decision is a few dozen small ops, so its time is dispatch and cache state, not arithmetic. Timed alone
and repeated on a warm cache it took about half what it takes inside a forward (the first tables priced it
that way, and predicted a meta-trained controller's batch-1 wall-clock 14% low). Here it is timed by a
policy that wraps the controller's own: it times each decision, then runs every layer at its widest
pattern, so the caches hold what a real forward leaves in them.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from metasparse.model.encoder import Decision, GatedEncoder
from metasparse.model.features import Batch


def controller_signature(ctrl) -> str:
    """What a controller's decision costs depends on, and how it was timed: its settings (placement,
    uncertainty feature, width, router), not its weights."""
    return f"in place: {ctrl.spec!r}"


class TimedPolicy:
    """Wraps a policy and accumulates the seconds spent deciding; with ``returns``, the layers get that
    decision instead of the policy's (the controller timed while the layers run a fixed pattern)."""

    def __init__(self, policy, returns: Decision | None = None) -> None:
        self.policy, self.returns, self.seconds = policy, returns, 0.0

    def __call__(self, i, x, mask) -> Decision:
        t0 = time.perf_counter()
        d = self.policy(i, x, mask)
        self.seconds += time.perf_counter() - t0
        return d if self.returns is None else self.returns


def in_place_ms(model: GatedEncoder, ctrl, grid: list[list[Batch]], rounds: int, *, level: int) -> np.ndarray:
    """Milliseconds of one decision of ``ctrl`` (per layer for per-layer controllers, per forward for an
    upfront one) on each batch of ``grid`` (``[batch bucket][length bucket]``), every layer running codebook
    entry ``level`` (the widest): the median over ``rounds`` forwards, after one untimed forward each."""
    decisions = 1 if ctrl.upfront else len(model.blocks)
    out = np.zeros((len(grid), len(grid[0])))
    ctrl.eval()
    with torch.no_grad():
        for bi, row in enumerate(grid):
            for ti, batch in enumerate(row):
                wide = Decision(hard_levels=torch.full((batch.size,), level, dtype=torch.long))
                samples = []
                for r in range(rounds + 1):
                    timed = TimedPolicy(ctrl.policy(model), returns=wide)
                    model(batch, timed)
                    if r:  # the first forward warms up
                        samples.append(1000 * timed.seconds / decisions)
                out[bi, ti] = float(np.median(samples))
    return out
