"""bench.transfer: the interval arithmetic by hand, the goal read-out, and the quick grid end to end."""

from __future__ import annotations

import csv
import json

import pytest

from metasparse.bench.transfer import aggregate, goals, mean_ci


def test_mean_ci_by_hand():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.3027; sd = 1; half = 4.3027 / sqrt(3)
    assert mean == pytest.approx(2.0) and half == pytest.approx(4.3027 / 3**0.5, rel=1e-4)
    assert mean_ci([0.7]) == (0.7, 0.0)


def test_aggregate_and_goals_by_hand():
    rows = []
    for seed, (z, a10, m10) in enumerate([(0.80, 0.86, 0.82), (0.80, 0.88, 0.84)]):
        for cell in ("c1", "c2"):
            rows += [
                {"cell": cell, "method": "meta", "shots": 16, "seed": seed, "step": 0, "acc": z, "flops": 0.5},
                {"cell": cell, "method": "meta", "shots": 16, "seed": seed, "step": 10, "acc": a10, "flops": 0.5},
                {"cell": cell, "method": "multitask", "shots": 16, "seed": seed, "step": 10, "acc": m10, "flops": 0.5},
            ]
    agg = aggregate(rows)
    meta10 = next(a for a in agg if a["method"] == "meta" and a["step"] == 10)
    assert meta10["acc"] == pytest.approx(0.87) and meta10["seeds"] == 2
    g = goals(agg, {"c1": {"acc": 0.90}, "c2": {"acc": 0.90}})
    assert g["gap_points"] == pytest.approx(0.10)
    assert g["gap_closed"] == pytest.approx(0.7)  # (0.87 - 0.80) / (0.90 - 0.80)
    assert g["meta_minus_multitask_at_10"] == pytest.approx(0.04)


@pytest.mark.slow
def test_quick_transfer_bench_on_the_smoke_run(smoke_analysis):
    out = smoke_analysis / "transfer"
    r = json.loads((out / "transfer.json").read_text())
    run = r["runs"]["legal"]
    assert len(run["cells"]) == 2 and set(run["ceiling"]) == set(run["cells"])
    assert {(a["method"], a["step"]) for a in run["aggregate"]} == {
        (m, s) for m in ("meta", "multitask", "scratch") for s in (0, 1, 2)
    }
    with (out / "curves.csv").open() as f:
        curves = list(csv.DictReader(f))
    assert len(curves) == 2 * 3 * 3 * 2  # cells x methods x steps x seeds (K=8 only)
    pareto = {(p["method"], p["budget"]) for p in run["pareto"]}
    assert pareto == {("dense", 1.0), ("meta", 0.5), ("importance", 0.5), ("random", 0.5)}
    for p in run["pareto"]:
        if p["budget"] < 1:
            assert p["flops"] <= p["budget"] + 0.06  # quick mode calibrates on only 300 sentences
    assert {"curves_legal.png", "pareto_legal.png"} <= {p.name for p in out.iterdir()}
    assert "| meta | 8 |" in (out / "transfer.md").read_text()
