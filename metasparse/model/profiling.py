"""Named regions of the execution paths, visible to ``torch.profiler`` only when asked for.

``region(name)`` is a shared ``nullcontext`` unless :func:`labels_enabled` is active, so the hot path
pays for no profiler calls in timed runs (dense and gated alike).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

_NULL = nullcontext()
_enabled = False


def region(name: str):
    """A ``record_function`` region when labels are enabled, else a no-op context."""
    return torch.profiler.record_function(name) if _enabled else _NULL


@contextmanager
def labels_enabled():
    """Turn the region labels on (for a profiled run)."""
    global _enabled
    old, _enabled = _enabled, True
    try:
        yield
    finally:
        _enabled = old
