"""Freeze a module's parameters for a while and give the caller back exactly the flags it had."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Turn ``requires_grad`` off on every parameter of ``module``, and restore each one's own flag on exit.

    Why per parameter: a caller may have frozen part of the backbone on purpose (meta-training freezes all of
    it, adaptation only some); switching every flag back on afterwards would silently unfreeze those.

    Example:
        >>> with frozen(backbone):
        ...     train_controller(...)
    """
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
