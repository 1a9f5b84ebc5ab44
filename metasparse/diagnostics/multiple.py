"""One report's relations are one family of tests: p-values adjusted for multiple comparisons (Holm's
step-down, or Benjamini-Hochberg's false discovery rate), and relations over too few cells kept out of it.

Judging two dozen relations each at p < 0.05 finds about one by chance in every report; a reader must see
the adjusted p beside the raw one, and read significance from the adjusted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ADJUSTMENTS = ("holm", "bh")


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in input order; NaN stays NaN and does not
    count in the family."""
    idx = [i for i, v in enumerate(p) if not math.isnan(v)]
    m, out = len(idx), [float("nan")] * len(p)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: p[i])):
        running = max(running, min(1.0, (m - rank) * p[i]))  # monotone: never below an earlier one
        out[i] = running
    return out


def benjamini_hochberg(p: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order; NaN stays NaN and does
    not count in the family."""
    idx = [i for i, v in enumerate(p) if not math.isnan(v)]
    m, out = len(idx), [float("nan")] * len(p)
    running = 1.0
    for rank, i in reversed(list(enumerate(sorted(idx, key=lambda i: p[i]), start=1))):
        running = min(running, m * p[i] / rank)  # monotone from the largest p down
        out[i] = running
    return out


def adjust(p: Sequence[float], method: str) -> list[float]:
    """``holm`` or ``bh`` adjusted p-values."""
    return holm(p) if method == "holm" else benjamini_hochberg(p)


def judge_family(rows: list[dict], *, p_key: str, n_key: str, method: str, alpha: float, min_cells: int) -> None:
    """Add ``p_adjusted``, ``tested``, ``significant`` and ``status`` to every row (in place), all rows one
    family.

    A row whose ``n_key`` counts cells below ``min_cells`` (rows with ``unit`` ``sentences`` are never
    too small) is ``too few cells to test``: no adjusted p, never significant, out of the family.
    """
    small = [r.get("unit", "cells") != "sentences" and r[n_key] < min_cells for r in rows]
    raw = [float("nan") if s else float(r[p_key]) for r, s in zip(rows, small, strict=True)]
    adjusted = adjust(raw, method)
    for r, s, a in zip(rows, small, adjusted, strict=True):
        r["p_adjusted"] = a
        r["tested"] = not s
        r["significant"] = bool(not s and not np.isnan(a) and a < alpha)
        if s:
            r["status"] = f"too few cells to test ({r[n_key]} < {min_cells})"
        else:
            r["status"] = f"significant ({method}-adjusted p < {alpha})" if r["significant"] else "not significant"
