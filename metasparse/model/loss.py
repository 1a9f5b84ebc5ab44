"""The training signal every trainer shares: token cross-entropy summed over tasks."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from metasparse.model.features import IGNORE_INDEX


def task_loss(
    logits: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    tasks: Iterable[str] | None = None,
    *,
    normalizers: dict[str, int] | None = None,
) -> torch.Tensor:
    """Sum over ``tasks`` (default: every task with both logits and labels) of the mean token cross-entropy;
    padding positions carry ``IGNORE_INDEX`` and do not count. Computed in fp32 (the logits of a bf16
    autocast pass are cast up; fp32 logits are used as they are).

    Args:
        normalizers: task -> the token count to divide the summed cross-entropy by (default: this batch's
            labelled tokens). A data-parallel rank passes the whole batch's counts, so that the ranks'
            losses add up to the one-process loss.
    """
    names = list(tasks) if tasks is not None else [t for t in logits if t in labels]
    if normalizers is None:
        return sum(
            F.cross_entropy(logits[t].flatten(0, 1).float(), labels[t].flatten(), ignore_index=IGNORE_INDEX)
            for t in names
        )
    return sum(
        F.cross_entropy(
            logits[t].flatten(0, 1).float(), labels[t].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        / max(1, normalizers[t])
        for t in names
    )
