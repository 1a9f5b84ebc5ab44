"""The main job end to end on the smoke experiment: CLI outputs, target exclusion, exact resume, adapt CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import metasparse.meta.outer as outer
from metasparse.config import CONF_DIR
from metasparse.data.episodes import EpisodeSampler
from metasparse.meta.run import run

FIELDS = {"dense_acc", "zero_shot_acc", "zero_shot_flops", "adapted_acc", "adapted_flops"}
LEGAL = [
    "be/legal/Belarusian-HSE",
    "en/legal/English-GUM",
    "fi/legal/Finnish-TDT",
    "hy/legal/Armenian-ArmTDP",
    "lt/legal/Lithuanian-ALKSNIS",
    "lv/legal/Latvian-LVTB",
    "ro/legal/Romanian-RRT",
]


def _cfg(*extra):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("meta_train", overrides=["experiment=smoke", "+domain=legal", *extra]))


@pytest.mark.slow
def test_smoke_cli_then_adapt_on_a_folder_outside_the_registry(tmp_path, ud_root, smoke_run):
    run_dir = smoke_run
    m = json.loads((run_dir / "metrics.json").read_text())
    assert sorted(m["targets"]) == LEGAL  # every legal cell adapted and evaluated, also in the smoke run
    for entry in m["targets"].values():
        assert FIELDS | {"steps", "shots"} <= set(entry)
        assert 0 <= entry["adapted_acc"] <= 1 and 0 < entry["adapted_flops"] <= 1
    assert set(m["source_test"]) >= FIELDS
    assert "| **macro** |" in (run_dir / "report.md").read_text()
    # Agreement with a direct call: each target cell's dense accuracy, rescored from the saved run.
    from metasparse.meta.load import load_run
    from metasparse.model.corpus import EncodedCorpus
    from metasparse.scoring import Dense, score

    loaded = load_run(run_dir)
    b = loaded.bundle
    for cell in b.targets[:2]:
        rows = [int(r) for r in b.index.rows(cell, "test")][: loaded.cfg.adapt.max_test_sentences or None]
        corpus = EncodedCorpus.build(b.dataset, rows, b.tokenizer, b.tasks, loaded.system.backbone.spec.suffix_buckets)
        want = score(Dense(loaded.system.backbone), corpus).accuracy[m["task"]]
        assert m["targets"][cell.name]["dense_acc"] == pytest.approx(want, abs=1e-12), cell.name
        assert m["targets"][cell.name]["test_sentences"] == len(rows)
    assert (run_dir / "ckpt" / "final" / "state.json").exists() and (run_dir / ".hydra" / "config.yaml").exists()

    folder = tmp_path / "UD_Unseen-Legal"  # data the run never saw, named nowhere in the registry
    folder.mkdir()
    shutil.copy(ud_root / "UD_Armenian-ArmTDP" / "hy_armtdp-ud-test.conllu", folder / "xx_unseen-ud-test.conllu")
    out = tmp_path / "adapt"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "metasparse.adapt",
            f"run_dir={run_dir}",
            f"target.path={folder}",
            "target.lang=hy",
            "target.domain=legal",
            "steps=3",
            "shots=8",
            "max_test_sentences=40",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    a = json.loads((out / "adapt_metrics.json").read_text())
    assert [p["step"] for p in a["curve"]] == [0, 1, 2, 3]
    assert a["final_acc"] == a["curve"][-1]["acc"] and a["final_flops"] == a["curve"][-1]["flops"]
    assert a["shots"] == 8 and a["test_sentences"] == 40
    assert "step | acc | flops" in res.stdout


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_no_legal_in_meta_training_and_resume_equals_uninterrupted(tmp_path, monkeypatch, ud_root):
    """The main job's upfront placement end to end (the smoke experiment itself keeps per-layer)."""
    upfront = "controller.placement=upfront"
    seen = []
    real_take = EpisodeSampler.take

    def spy(self, n, start=0):
        eps = real_take(self, n, start)
        seen.extend(eps)
        return eps

    monkeypatch.setattr(EpisodeSampler, "take", spy)
    full = run(_cfg(upfront), tmp_path / "full")
    assert all(0 < v["val_cost"] <= 1.5 for v in full["validation"])  # in the budget's unit, beside val_flops
    state = json.loads((tmp_path / "full" / "ckpt" / "final" / "state.json").read_text())
    assert state["config"]["controller"]["placement"] == "upfront"
    assert seen and not [e for e in seen if e.cell.domain == "legal"]
    assert not [c for c in full["cells"]["train"] + full["cells"]["validation"] if "/legal/" in c]

    real_save, saved = outer._save, []

    def save_then_die(folder, *a):
        real_save(folder, *a)
        saved.append((folder.name, a[-1].step))
        if folder.name == "last" and a[-1].step == 3:
            raise _Killed

    monkeypatch.setattr(outer, "_save", save_then_die)
    with pytest.raises(_Killed):
        run(_cfg(upfront), tmp_path / "part")
    monkeypatch.setattr(outer, "_save", real_save)
    resumed = run(_cfg(f"resume={tmp_path / 'part'}", upfront), tmp_path / "resumed")
    for key in ("targets", "source_test", "targets_macro", "validation"):
        assert resumed[key] == full[key], key
    assert os.path.exists(tmp_path / "resumed" / "ckpt" / "final" / "tensors.safetensors")


def test_report_shows_every_task():
    from metasparse.meta.run import format_report

    e = {
        "dense_acc": 0.9,
        "zero_shot_acc": 0.8,
        "zero_shot_flops": 0.5,
        "adapted_acc": 0.85,
        "adapted_flops": 0.49,
        "steps": 20,
        "shots": 16,
        "by_task": {
            "upos": {"dense_acc": 0.9, "zero_shot_acc": 0.8, "adapted_acc": 0.85},
            "deprel": {"dense_acc": 0.7, "zero_shot_acc": 0.6, "adapted_acc": 0.65},
        },
    }
    m = {
        "task": "upos",
        "budget": 0.5,
        "targets": {"fi/legal/Finnish-TDT": e},
        "targets_macro": {k: e[k] for k in FIELDS},
        "restorations": 0,
        "minutes": {"total": 1.0},
        "source_test": {"sentences": 10, "dense_acc": 0.9, "zero_shot_acc": 0.9, "zero_shot_flops": 0.5},
        "cells": {"train": ["a"], "validation": ["b"]},
    }
    text = format_report(m)
    assert "| fi/legal/Finnish-TDT | 90.0 | 80.0 | 0.500 | 85.0 | 0.490 | 20 | 16 |" in text
    assert "deprel:" in text and "| fi/legal/Finnish-TDT | 70.0 | 60.0 | 65.0 |" in text


@pytest.mark.slow
def test_validation_dip_restores_the_best_state_and_lowers_the_lr(tmp_path, monkeypatch, ud_root):
    from metasparse.checkpoint import load_checkpoint

    scores = iter([0.90, 0.50])  # validation at step 3, then a dip at step 6

    def fake_validate(*args, **kwargs):
        return {"val_acc": next(scores), "val_flops": 0.5, "val_cost": 0.5}

    monkeypatch.setattr(outer, "validate", fake_validate)
    cfg = _cfg("meta.restore_margin=0.1", "meta.restore_lr_factor=0.5")
    m = run(cfg, tmp_path / "r")
    assert m["restorations"] == 1
    assert [v["val_acc"] for v in m["validation"]] == [0.90, 0.50]
    assert m["validation"][1]["restored_from"] == 3
    best, _ = load_checkpoint(tmp_path / "r" / "ckpt" / "best")
    last, state = load_checkpoint(tmp_path / "r" / "ckpt" / "last")
    params = {k: v for k, v in best.items() if k.startswith("param.")}
    assert all(torch.equal(v, last[k]) for k, v in params.items())  # parameters went back to step 3's
    assert state["meta_state"]["outer_lr"] == pytest.approx(cfg.meta.outer_lr * 0.5)
    assert state["meta_state"]["step"] == 6


@pytest.mark.slow
def test_light_adaptation_saves_each_target_and_reloads_to_identical_predictions(tmp_path, ud_root):
    """meta.adapt=light on the smoke run: adapters, heads and norms meta-learned, embedding rows adapted per
    target; each adapted target saved beside the run reloads to the same predictions."""
    from metasparse.meta.adapted import adapted_dir, load_adapted
    from metasparse.meta.evaluation import adapt_and_score, support_rows, target_seed
    from metasparse.meta.load import load_run
    from metasparse.meta.system import gated_scores

    cfg = _cfg("meta.adapt=light", "adapters.kind=lora")
    out = run(cfg, tmp_path / "light")
    (tmp_path / "light" / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.structured(cfg), tmp_path / "light" / ".hydra" / "config.yaml")  # as the CLI does
    assert sorted(out["targets"]) == LEGAL
    cell = LEGAL[2]
    folder = adapted_dir(tmp_path / "light", cell)
    assert (folder / "state.json").exists() and len(list((tmp_path / "light" / "adapted").iterdir())) == len(LEGAL)
    state = json.loads((folder / "state.json").read_text())
    emb = {n: v for n, v in state["stored_values"].items() if n.endswith("_emb.weight")}
    assert emb and all(0 < v < 2000 * 256 for v in emb.values())  # only the support set's rows are stored

    loaded = load_run(tmp_path / "light")
    assert any(".adapter." in n for n in loaded.algo.adapt_names)
    assert "backbone.word_emb.weight" in loaded.algo.inner_only
    b, cfg = loaded.bundle, loaded.cfg
    rows = [int(r) for r in b.index.rows(b.targets[2], "test")][: cfg.adapt.max_test_sentences or None]
    from metasparse.model.corpus import EncodedRows

    data = EncodedRows.build(
        b.dataset,
        sorted(set(rows) | set(support_rows(b.index, b.targets[2], cfg.adapt.shots, cfg.seed))),
        b.tokenizer,
        b.tasks,
        loaded.system.backbone.spec.suffix_buckets,
    )
    test = data.subset(rows)
    reloaded = gated_scores(load_adapted(tmp_path / "light", cell), test)
    assert reloaded.accuracy[out["task"]] == pytest.approx(out["targets"][cell]["adapted_acc"], abs=1e-12)
    assert reloaded.flops_fraction == pytest.approx(out["targets"][cell]["adapted_flops"], abs=1e-12)

    # Dense fine-tuning goes through the same loop: the same parameters move (from the pretrained backbone,
    # adapters at zero), no controller, full FLOPs.
    from metasparse.baselines.finetune import baseline_algorithm, fresh_backbone
    from metasparse.meta.system import FixedSystem

    sup = support_rows(b.index, b.targets[2], cfg.adapt.shots, cfg.seed)
    dense = FixedSystem(fresh_backbone(loaded, 0))
    algo = baseline_algorithm(dense, cfg)
    assert not any(n.startswith("controller.") for n in algo.adapt_names)
    res = adapt_and_score(algo, dense, data, sup, rows, ["upos"], cfg, steps=2, seed=target_seed(0, cell))
    assert res["final"]["flops"] == 1.0
    moved = dict(res["system"].named_parameters())
    before = dict(dense.named_parameters())
    for n in ("backbone.heads.upos.weight", "backbone.final_ln.weight", "backbone.blocks.1.adapter.head_up"):
        assert not torch.equal(moved[n], before[n]), n
    assert torch.equal(moved["backbone.blocks.0.q.weight"], before["backbone.blocks.0.q.weight"])  # never adapted
    assert torch.equal(dense.backbone.heads.upos.weight, loaded.pretrained.heads.upos.weight)  # the start is intact


@pytest.mark.slow
def test_meta_seed_redraws_the_training_episodes_and_keeps_splits_and_validation(tmp_path, monkeypatch, ud_root):
    """``meta.seed`` repeats meta-training on the same backbone: other training episodes, the same
    validation cells, validation episodes and scored sentences; unset, the run's seed decides as before."""
    draws: list = []
    real_take = EpisodeSampler.take

    def spy(self, n, start=0):
        eps = real_take(self, n, start)
        draws.append([(e.cell.name, tuple(e.support), tuple(e.query)) for e in eps])
        return eps

    monkeypatch.setattr(EpisodeSampler, "take", spy)
    import metasparse.meta.run as meta_run

    scored, real_rows = [], meta_run.evaluation_rows
    monkeypatch.setattr(meta_run, "evaluation_rows", lambda *a: scored.append(real_rows(*a)) or scored[-1])
    runs = {}
    for name, extra in (("run_seed", []), ("explicit_0", ["meta.seed=0"]), ("meta_seed_1", ["meta.seed=1"])):
        draws.clear()
        m = run(_cfg("meta.steps=2", "meta.val_every=1", "meta.checkpoint_every=1", *extra), tmp_path / name)
        runs[name] = (list(draws), m)
    (a, ma), (b, mb), (c, mc) = runs["run_seed"], runs["explicit_0"], runs["meta_seed_1"]
    assert a == b and ma["targets"] == mb["targets"]  # meta.seed=0 is the run's seed 0
    assert a[0] == c[0]  # the validation episodes, drawn first, are the run's
    assert a[1:] != c[1:]  # the training episodes are not
    assert ma["cells"] == mc["cells"]
    assert scored[0] == scored[1] == scored[2]  # the same source test and calibration sentences
    assert ma["source_test"]["zero_shot_acc"] != mc["source_test"]["zero_shot_acc"]
