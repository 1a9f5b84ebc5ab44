"""Per-input hard decisions at batch > 1: inputs that chose the same pattern run together.

The union of everyone's units would cover nearly all units from batch 8 on (measured here), so
running the union saves nothing; grouping by pattern runs one sliced matmul per pattern present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from metasparse.model.patterns import Pattern
from metasparse.model.profiling import region

# (inputs [b, T, d], mask [b, T], pattern, token scores [b, T] or None, running tokens [b, T] or None)
#   -> outputs [b, T, d]
SlicedStep = Callable[..., torch.Tensor]


def run_grouped(
    step: SlicedStep,
    x: torch.Tensor,
    mask: torch.Tensor,
    levels: torch.Tensor,
    codebook: Sequence[Pattern],
    token_scores: torch.Tensor | None,
    active: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply ``step`` to each group of rows that share a pattern; skipped rows pass through unchanged
    (``active``: tokens that have not exited, handed to each group's step)."""
    if levels.numel() == 1:  # batch 1: nothing to group
        return step(x, mask, codebook[int(levels)], token_scores, active)
    with region("grouping"):
        uniq = torch.unique(levels).tolist()
    if len(uniq) == 1:  # the whole batch agrees: no gather/scatter at all
        return step(x, mask, codebook[uniq[0]], token_scores, active)
    out = x
    for lv in uniq:
        p = codebook[lv]
        if p.skip:
            continue
        with region("grouping"):
            idx = (levels == lv).nonzero().squeeze(1)
            scores = None if token_scores is None else token_scores.index_select(0, idx)
            xs, ms = x.index_select(0, idx), mask.index_select(0, idx)
            act = None if active is None else active.index_select(0, idx)
        y = step(xs, ms, p, scores, act)
        with region("grouping"):
            out = out.index_copy(0, idx, y)
    return out
