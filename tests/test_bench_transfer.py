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
    # per seed: (meta step 0, meta step 10, multitask-ft step 10, dense-ft step 10), UPOS; DEPREL = UPOS - 0.1
    for seed, (z, a10, m10, d10) in enumerate([(0.80, 0.86, 0.82, 0.85), (0.80, 0.88, 0.84, 0.85)]):
        for cell in ("c1", "c2"):
            for method, step, acc in (
                ("meta", 0, z),
                ("meta", 10, a10),
                ("multitask-ft", 10, m10),
                ("dense-ft", 10, d10),
            ):
                flops = 1.0 if method == "dense-ft" else 0.5
                rows.append(
                    {
                        "cell": cell,
                        "method": method,
                        "shots": 16,
                        "seed": seed,
                        "step": step,
                        "acc": acc,
                        "flops": flops,
                        "upos": acc,
                        "deprel": acc - 0.1,
                    }
                )
    agg = aggregate(rows)
    meta10 = next(a for a in agg if a["method"] == "meta" and a["step"] == 10)
    assert meta10["upos"] == pytest.approx(0.87) and meta10["deprel"] == pytest.approx(0.77) and meta10["seeds"] == 2
    assert meta10["upos_ci"] == pytest.approx(mean_ci([0.86, 0.88])[1])
    g = goals(agg, {"c1": {"acc": 0.90}, "c2": {"acc": 0.90}})
    assert g["meta_at"]["step"] == 10 and g["meta_at"]["flops"] == pytest.approx(0.5)
    assert g["meta_minus_dense_ft"] == pytest.approx({"upos": 0.02, "deprel": 0.02})
    assert g["meta_minus_multitask_ft_at_10"] == pytest.approx({"upos": 0.04, "deprel": 0.04})
    # two seeds: the t-interval (12.7 x sd / sqrt 2) is far wider than the 4-point difference
    assert g["intervals_apart_at_10"] == {"upos": False, "deprel": False}


@pytest.mark.slow
def test_quick_transfer_bench_on_the_smoke_run(smoke_analysis):
    out = smoke_analysis / "transfer"
    r = json.loads((out / "transfer.json").read_text())
    run = r["runs"]["legal"]
    methods = ("meta", "multitask-ft", "dense-ft", "static-ft", "scratch")
    assert len(run["cells"]) == 2 and set(run["ceiling"]) == set(run["cells"])
    assert {(a["method"], a["step"]) for a in run["aggregate"]} == {(m, s) for m in methods for s in (0, 1, 2)}
    assert set(run["inner_rates"]) == set(methods)
    assert all(v["scale"] in (0.5, 2.0) and len(v["validation_acc"]) == 2 for v in run["inner_rates"].values())
    with (out / "curves.csv").open() as f:
        curves = list(csv.DictReader(f))
    assert len(curves) == 2 * 5 * 3 * 2  # cells x methods x steps x seeds (K=8 only)
    assert all(0 <= float(c["upos"]) <= 1 and 0 <= float(c["deprel"]) <= 1 for c in curves)
    dense = [c for c in curves if c["method"] == "dense-ft"]
    assert all(float(c["flops"]) == 1.0 for c in dense)  # dense fine-tuning runs every unit
    static = [float(c["flops"]) for c in curves if c["method"] == "static-ft"]
    assert max(static) <= 0.5 + 0.06 and len(set(static)) >= 1  # pruned to the budget on source sentences
    # every starting point adapts: some method moves from its step-0 accuracy
    moved = {
        m
        for m in methods
        for cell in run["cells"]
        if len({c["upos"] for c in curves if c["method"] == m and c["cell"] == cell and c["seed"] == "0"}) > 1
    }
    assert moved >= {"meta", "dense-ft"}
    pareto = {(p["method"], p["budget"]) for p in run["pareto"]}
    assert pareto == {("dense", 1.0), ("meta", 0.5), ("importance", 0.5), ("random", 0.5)}
    for p in run["pareto"]:
        if p["budget"] < 1:
            assert p["flops"] <= p["budget"] + 0.06  # quick mode calibrates on only 300 sentences
    assert {"curves_legal.png", "pareto_legal.png"} <= {p.name for p in out.iterdir()}
    md = (out / "transfer.md").read_text()
    assert "| meta | 8 |" in md and "**DEPREL**" in md and "| dense-ft | 8 |" in md


@pytest.mark.slow
def test_the_inner_rate_choice_never_reads_a_target_cell(smoke_run, monkeypatch):
    """A spy on every episode the choice draws: only the run's source validation cells appear."""
    from metasparse.baselines.build import source_splits
    from metasparse.baselines.finetune import choose_lr_scale, starting_points, validation_cells
    from metasparse.data.episodes import EpisodeSampler
    from metasparse.meta.load import load_run

    seen = []
    real = EpisodeSampler.episode

    def spy(self, i):
        ep = real(self, i)
        seen.append(ep)
        return ep

    monkeypatch.setattr(EpisodeSampler, "episode", spy)
    loaded = load_run(smoke_run)
    splits = source_splits(loaded, test_sentences=1, calib_sentences=100)
    starts = starting_points(loaded, ["meta", "dense-ft"], calib=splits.calib, train=splits.train, budget=0.5)
    for start in starts.values():
        best, found = choose_lr_scale(start, loaded, shots=4, steps=1, grid=[0.5, 2.0], episodes=2, tasks=["upos"])
        assert best in found and set(found) == {0.5, 2.0}
    val = set(validation_cells(loaded))
    assert seen and {e.cell for e in seen} <= val
    assert not {e.cell for e in seen} & set(loaded.bundle.targets)
