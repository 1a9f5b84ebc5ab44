"""One controller decision's time, measured where it runs: inside forwards, right after the layers it follows.

A decision is a few dozen small ops, so its time is dispatch and cache state, not arithmetic. Timed alone
and repeated on a warm cache it took about half what it takes inside a forward (the first tables priced it
that way, and predicted a meta-trained controller's batch-1 wall-clock 14% low). Here it is timed by a
policy that wraps the controller's own: it times each decision, then runs every layer dense, so the caches
hold what a real forward leaves in them.
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


def in_place_ms(model: GatedEncoder, ctrl, grid: list[list[Batch]], rounds: int) -> np.ndarray:
    """Milliseconds of one decision of ``ctrl`` (per layer for per-layer controllers, per forward for an
    upfront one) on each batch of ``grid`` (``[batch bucket][length bucket]``): the median over ``rounds``
    dense forwards, after one untimed forward each."""
    cb = model.codebook  # the layers run the widest pattern (a codebook need not hold the full layer)
    full = max(range(len(cb)), key=lambda i: (cb[i].n_heads, cb[i].n_groups, cb[i].tokens))
    spent = [0.0]

    def timing_policy(decide, size: int):
        dense = torch.full((size,), full, dtype=torch.long)

        def policy(layer: int, x: torch.Tensor, mask: torch.Tensor) -> Decision:
            t0 = time.perf_counter()
            decide(layer, x, mask)
            spent[0] += time.perf_counter() - t0
            return Decision(hard_levels=dense)

        return policy

    decisions = 1 if ctrl.upfront else len(model.blocks)
    out = np.zeros((len(grid), len(grid[0])))
    ctrl.eval()
    with torch.no_grad():
        for bi, row in enumerate(grid):
            for ti, batch in enumerate(row):
                samples = []
                for r in range(rounds + 1):
                    spent[0] = 0.0
                    model(batch, timing_policy(ctrl.policy(model), batch.size))
                    if r:  # the first forward warms up
                        samples.append(1000 * spent[0] / decisions)
                out[bi, ti] = float(np.median(samples))
    return out
