"""The per-input headroom bench: its oracle is the best choice under the budget, its split fills the
budget in order, and the CLI reports every row on a run within its target."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from metasparse.bench.headroom import macro_cells, oracle_choice, routed_pair
from metasparse.config import HeadroomConfig
from metasparse.errors import ConfigValueError


@pytest.mark.parametrize("seed", range(5))
def test_oracle_choice_meets_the_budget_and_is_near_the_brute_force_best(seed):
    rng = np.random.default_rng(seed)
    gain, cost = rng.integers(0, 10, (6, 3)).astype(float), rng.random((6, 3)) * 5
    budget = float(cost.min(1).sum() + rng.random() * 6)
    pick = oracle_choice(gain, cost, budget)
    rows = np.arange(6)
    assert cost[rows, pick].sum() <= budget + 1e-9
    best = max(
        gain[rows, list(c)].sum() for c in itertools.product(range(3), repeat=6) if cost[rows, list(c)].sum() <= budget
    )
    # the Lagrangian is exact up to one sentence's gain (a multiple-choice knapsack's relaxation gap)
    assert gain[rows, pick].sum() >= best - gain.max()
    # and never worse than the best single column that fits
    fits = [gain[:, k].sum() for k in range(3) if cost[:, k].sum() <= budget]
    assert not fits or gain[rows, pick].sum() >= max(fits) - gain.max()


def test_oracle_choice_refuses_a_budget_below_the_cheapest_choices():
    with pytest.raises(ValueError, match="below the cheapest"):
        oracle_choice(np.ones((2, 2)), np.full((2, 2), 3.0), 5.0)


def test_routed_pair_takes_sentences_in_order_while_they_fit():
    pick = routed_pair(np.array([2, 0, 1, 3]), np.array([1.0, 5.0, 2.0, 1.0]), room=3.5)
    # sentence 2 (2.0), then 0 (1.0): 3.0 spent; 1 (5.0) and 3 (1.0) would pass 3.5
    assert pick.tolist() == [True, False, True, False]
    assert macro_cells(np.array([1, 2]), np.array([2, 4]), np.array(["a", "b"])) == pytest.approx(50.0)


def test_the_pair_must_bracket_the_target():
    with pytest.raises(ConfigValueError, match="pair"):
        HeadroomConfig(run_dir="x", target=0.5, pair=[0.55, 0.7])


@pytest.mark.slow
def test_headroom_cli_on_the_smoke_run(smoke_run, tmp_path):
    out = tmp_path / "headroom.json"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "metasparse.bench.headroom",
            f"run_dir={smoke_run}",
            "test_sentences=120",
            "calib_sentences=100",
            "budgets=[0.4,0.8]",
            "target=0.6",
            "pair=[0.4,0.8]",
            f"out={out}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    h = json.loads(out.read_text())
    rows = {r["row"]: r for r in h["rows"]}
    assert {"static 0.4", "static 0.6", "static 0.8", "oracle over all structures"} <= set(rows)
    assert {"pair 0.4/0.8, oracle", "pair 0.4/0.8, lean entropy", "pair 0.4/0.8, random"} <= set(rows)
    assert "per-cell oracle (chosen on the test sentences)" in rows
    assert [n for n in rows if n.startswith("per-cell, chosen on")]
    assert set(h["per_cell_choice"].values()) <= {0.4, 0.6, 0.8}
    for name, r in rows.items():
        assert 0 <= r["upos"] <= 100 and 0 <= r["deprel"] <= 100, name
        if not name.startswith(("static", "per-cell, chosen")):
            assert r["latency"] <= 0.6 + 1e-9, name  # every row chosen on the test sentences meets the target
    # the oracle over structures scores at least the best single structure within the target
    best = max(r["upos"] + r["deprel"] for n, r in rows.items() if n.startswith("static") and r["latency"] <= 0.6)
    for name in ("oracle over all structures", "per-cell oracle (chosen on the test sentences)"):
        assert rows[name]["upos"] + rows[name]["deprel"] >= best - 1.0, name
    assert "| oracle over all structures |" in res.stdout


def test_per_cell_choice_gives_each_cell_the_structure_that_pays_there_within_the_budget():
    from metasparse.bench.headroom import per_cell_choice

    cells = np.array(["a", "a", "b", "b"])
    lengths = np.array([10, 10, 10, 10])
    # structure 0: cheap; structure 1: twice the cost, +5 hits per sentence in cell b only
    lean = {"hits": {"upos": np.array([9, 9, 4, 4]), "deprel": np.array([8, 8, 3, 3])}, "ms": np.ones(4)}
    broad = {"hits": {"upos": np.array([9, 9, 9, 9]), "deprel": np.array([8, 8, 3, 3])}, "ms": np.full(4, 2.0)}
    assert per_cell_choice([lean, broad], lengths, cells, room=6.0) == {"a": 0, "b": 1}
    assert per_cell_choice([lean, broad], lengths, cells, room=4.0) == {"a": 0, "b": 0}
