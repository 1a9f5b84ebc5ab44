"""recalibrate: the budget re-met on unlabelled text (fitted and held-out sentences), stored beside the run
without touching the run's own calibration, refused under an existing name, and used by predict."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import conllu
import pytest
import torch
from cli_utils import run_module

from metasparse.errors import PathError


@pytest.mark.slow
def test_recalibrate_meets_a_new_budget_without_labels_and_predict_uses_it(smoke_run, ud_root, tmp_path):
    from metasparse.meta.calibrations import apply_calibration, decision_biases
    from metasparse.meta.load import load_run

    src = next((ud_root / "UD_English-GUM").glob("*-dev.conllu"))
    with src.open(encoding="utf-8") as f:
        lines = [
            " ".join(t["form"] for t in s if isinstance(t["id"], int))
            for s in itertools.islice(conllu.parse_incr(f), 100)
        ]
    text = tmp_path / "web.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = dict(os.environ)
    before_ckpt = {p.name: p.read_bytes() for p in (smoke_run / "ckpt" / "final").iterdir()}

    res = run_module(
        "metasparse.recalibrate",
        f"run_dir={smoke_run}",
        f"input={text}",
        "budget=0.3",
        "name=web",
        f"hydra.run.dir={tmp_path / 'h'}",
        env=env,
    )
    out = json.loads((tmp_path / "h" / "recalibrate.json").read_text())
    assert out["sentences"] == {"fit": 80, "held_out": 20} and "| held out |" in res.stdout
    assert out["after"]["fit"] <= 0.3 + 1e-6 and abs(out["after"]["fit"] - 0.3) < 0.05  # met on what it saw
    assert abs(out["after"]["held_out"] - 0.3) < 0.1  # and near it on what it did not see
    assert {p.name: p.read_bytes() for p in (smoke_run / "ckpt" / "final").iterdir()} == before_ckpt

    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "metasparse.recalibrate",
            f"run_dir={smoke_run}",
            f"input={text}",
            "name=web",
            f"hydra.run.dir={tmp_path / 'h2'}",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert again.returncode == 2 and again.stderr.startswith("error: name=web: a calibration already exists")

    loaded = load_run(smoke_run)
    system = loaded.system
    old = {k: v.clone() for k, v in decision_biases(system).items()}
    state = apply_calibration(system, smoke_run, "web")
    assert state["budget"] == 0.3 and any(not torch.equal(old[k], v) for k, v in decision_biases(system).items())
    with pytest.raises(PathError, match=r"calibration=nope: none under .*saved: web"):
        apply_calibration(system, smoke_run, "nope")

    pred = run_module(
        "metasparse.predict",
        f"run_dir={smoke_run}",
        "calibration=web",
        f"input={text}",
        f"out={tmp_path / 'o.conllu'}",
        f"hydra.run.dir={tmp_path / 'h3'}",
        env=env,
    )
    summary = json.loads((tmp_path / "h3" / "predict.json").read_text())
    assert summary["calibration"] == "web" and "FLOPs" in pred.stdout
    assert abs(summary["flops_fraction"] - 0.3) < 0.05
