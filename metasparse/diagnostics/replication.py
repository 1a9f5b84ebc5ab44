"""Findings that replicate: the same relations over several runs (e.g. seeds), pooled.

Per relation: its value in each run, the mean with a t interval across runs (on Fisher's z), Fisher's
combined p over the runs' raw p-values, and whether it *replicates*: significant after the report's
adjustment, with the same sign, in every run. Only what replicates is a finding; the rest is listed with its numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

MANTEL_KEY = ("test", "shift", "pathway", "controls")


def _key(row: dict, kind: str) -> tuple:
    return tuple(row[k] for k in MANTEL_KEY) if kind == "relations" else (row["relation"],)


# Correlations of exactly +-1 (common with few cells) have an infinite Fisher z: held at |r| <= 0.999
# (z 3.8), or one such run would decide the interval alone.
_R_MAX = 0.999


def _interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean correlation across runs: a Student t interval on Fisher's z = atanh(r), mapped
    back with tanh. A t interval on r itself left [-1, 1] for two runs far apart (0.9 and 0.1 gave an upper
    bound of 5.6). NaN with fewer than two runs."""
    r = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(r) < 2:
        return float("nan"), float("nan")
    z = np.arctanh(np.clip(r, -_R_MAX, _R_MAX))
    half = stats.t.ppf((1 + level) / 2, len(z) - 1) * z.std(ddof=1) / math.sqrt(len(z))
    return float(np.tanh(z.mean() - half)), float(np.tanh(z.mean() + half))


def pool(runs: Sequence[dict], kind: str) -> list[dict]:
    """Pool ``kind`` (``relations``: Mantel and partial Mantel, ``spearman``) over the runs' summaries.

    Every run's rows carry ``p``, ``p_adjusted``, ``significant`` and ``status`` (one report, one family);
    a relation absent from some run (e.g. a cell too small there) does not replicate.
    """
    value = "r" if kind == "relations" else "rho"
    by_key: dict[tuple, list[dict | None]] = {}
    for i, run in enumerate(runs):
        for row in run[kind]:
            by_key.setdefault(_key(row, kind), [None] * len(runs))[i] = row
    out = []
    for key, rows in by_key.items():
        present = [r for r in rows if r is not None]
        vals = [float(r[value]) for r in present]
        low, high = _interval(vals)
        raw = [float(r["p"]) for r in present if not math.isnan(float(r["p"]))]
        combined = float(stats.combine_pvalues(raw, method="fisher")[1]) if raw else float("nan")
        signs = {np.sign(v) for v in vals if not math.isnan(v)}
        tested = all(r is not None and r["tested"] for r in rows)
        replicated = tested and len(signs) == 1 and all(r is not None and r["significant"] for r in rows)
        name = dict(zip(MANTEL_KEY, key, strict=True)) if kind == "relations" else {"relation": key[0]}
        out.append(
            {
                **name,
                "runs": len(present),
                f"{value}_mean": float(np.nanmean(vals)) if vals else float("nan"),
                f"{value}_ci_low": low,
                f"{value}_ci_high": high,
                f"{value}_per_run": " ".join(f"{v:.3f}" for v in vals),
                "p_adjusted_per_run": " ".join(f"{float(r['p_adjusted']):.3g}" for r in present),
                "p_combined": combined,
                "replicated": replicated,
                "status": _status(rows, replicated, tested, signs),
            }
        )
    return out


def _status(rows: list[dict | None], replicated: bool, tested: bool, signs: set) -> str:
    if replicated:
        return f"replicated in all {len(rows)} runs"
    if any(r is None for r in rows):
        return "not replicated: missing from some runs"
    if not tested:
        return "too few cells to test"
    if len(signs) > 1:
        return "not replicated: the sign differs between runs"
    sig = sum(bool(r["significant"]) for r in rows)
    return f"not replicated: significant in {sig} of {len(rows)} runs"


def replication_report(
    run_dirs: Sequence[str], relations: list[dict], spearman: list[dict], adjustment: dict, runs: Sequence[dict] = ()
) -> str:
    """diagnostics.md over several runs: findings (replicated) first, then everything else with its numbers,
    then each run's descriptive pathways (which tags get compute: described, not tested)."""
    lines = [
        f"# Diagnostics over {len(run_dirs)} runs",
        "",
        *(f"- run {i}: {d}" for i, d in enumerate(run_dirs)),
        "",
        f"A finding must be significant ({adjustment['method']}-adjusted p < {adjustment['alpha']} within its "
        "run's report) with the same sign in every run; means carry a 95% t interval across runs (on Fisher's z, "
        "so inside [-1, 1]) and p_combined is Fisher's combination of the runs' raw p.",
        "",
        "## Findings (replicated in every run)",
        "",
    ]
    rows = [("mantel", r) for r in relations] + [("spearman", r) for r in spearman]
    found = [(k, r) for k, r in rows if r["replicated"]]
    lines += [_line(k, r) for k, r in found] or ["- none: no relation replicates in every run."]
    lines += ["", "## Not replicated", ""]
    lines += [_line(k, r) for k, r in rows if not r["replicated"]]
    described = [(i, r["compute_by_tag"]) for i, r in enumerate(runs) if r.get("compute_by_tag")]
    if described:
        lines += ["", "## Which words get compute, per run (described, not tested; see run<i>/compute_by_tag.csv)", ""]
        for i, tags in described:
            most = ", ".join(f"{t['tag']} {t['relative']:.3f}" for t in tags[:3])
            least = ", ".join(f"{t['tag']} {t['relative']:.3f}" for t in tags[-3:])
            lines.append(f"- run {i}: most {most}; least {least}")
    return "\n".join(lines) + "\n"


def _line(kind: str, r: dict) -> str:
    if kind == "mantel":
        what = f"{r['test']} {r['shift']} vs {r['pathway']}" + (f" ({r['controls']} fixed)" if r["controls"] else "")
        v = "r"
    else:
        what, v = r["relation"], "rho"
    return (
        f"- {what}: mean {v} = {r[f'{v}_mean']:.3f} [{r[f'{v}_ci_low']:.3f}, {r[f'{v}_ci_high']:.3f}] "
        f"(per run {r[f'{v}_per_run']}; adjusted p per run {r['p_adjusted_per_run']}; "
        f"p_combined = {r['p_combined']:.3g}): {r['status']}."
    )
