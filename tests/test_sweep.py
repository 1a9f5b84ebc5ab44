"""hparams_search=optuna: a real 2-trial Optuna sweep of the smoke experiment, maximising the validation
objective meta_train returns; the reported best is the best trial's own metrics.json."""

from __future__ import annotations

import json
import math
import os

import pytest
import yaml
from cli_utils import run_module


@pytest.mark.slow
def test_a_two_trial_optuna_sweep_of_the_smoke_experiment(smoke_run, tmp_path):  # smoke_run: a cached backbone
    sweep = tmp_path / "sweep"
    run_module(
        "metasparse.meta_train",
        "hparams_search=optuna",
        "experiment=smoke",
        "+domain=legal",
        "hydra.sweeper.n_trials=2",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        env=dict(os.environ),
    )
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    objectives, params = [], []
    for trial in ("0", "1"):
        metrics = json.loads((sweep / trial / "metrics.json").read_text())
        assert metrics["objective"] == metrics["validation"][-1]["val_acc"]  # validation, not a target's test
        objectives.append(metrics["objective"])
        overrides = yaml.safe_load((sweep / trial / ".hydra" / "overrides.yaml").read_text())
        params.append(dict(o.split("=", 1) for o in overrides if o.startswith(("meta.", "budget."))))
    assert best["best_value"] == pytest.approx(max(objectives))
    assert params[0] != params[1]  # the sampler proposed two settings
    for p in params:
        assert 0.05 <= float(p["meta.inner_lr"]) <= 2.0 and 0.0003 <= float(p["meta.outer_lr"]) <= 0.03
        assert 2.0 <= float(p["budget.weight"]) <= 100.0 and int(p["meta.inner_steps"]) in range(1, 6)
    assert all(math.isfinite(o) for o in objectives)
