"""The evaluation protocol: metrics on a hand-checked example, batch-size consistency (and that the check
can fail), the stress transforms, and the evaluate CLI on the smoke run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from model_utils import tiny_model

from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import EncoderOutput
from metasparse.model.features import EncodedSentence
from metasparse.protocol.consistency import batch_consistency
from metasparse.protocol.stress import add_noise, concatenate
from metasparse.scoring import score
from metasparse.scoring.methods import Dense, Method


def _corpus(labels: list[list[int]], cells: list[str]) -> EncodedCorpus:
    items = [EncodedSentence([5] * len(x), list(range(len(x))), [7] * len(x), [[1, 2, 3]] * len(x)) for x in labels]
    return EncodedCorpus(np.arange(len(items)), items, {"upos": labels}, [c[:2] for c in cells], cells)


class Scripted(Method):
    """Predicts a fixed label sequence per sentence (looked up by its length here) and spends half the FLOPs."""

    name = "scripted"

    def __init__(self, model, preds_by_len):
        self.model, self.preds = model, preds_by_len

    def forward(self, batch):
        B, T = batch.word_mask.shape
        logits = torch.full((B, T, 17), -10.0)
        for b, n in enumerate(batch.lengths.tolist()):
            for i, lab in enumerate(self.preds[n]):
                logits[b, i, lab] = 10.0
        return EncoderOutput({"upos": logits}, torch.zeros(B, T, 1), [None])

    def flops(self, batch, out):
        return [0.5 * f for f in Dense.flops(self, batch, out)]


def test_scores_by_hand():
    # sentence A (cell x): gold [0, 1, 1], predicted [0, 1, 2]; sentence B (cell y): gold [2, 2], predicted [2, 0]
    corpus = _corpus([[0, 1, 1], [2, 2]], ["aa/x/T", "bb/y/T"])
    s = score(Scripted(tiny_model(), {3: [0, 1, 2], 2: [2, 0]}), corpus)
    assert s.accuracy["upos"] == pytest.approx(3 / 5)
    assert s.macro_cells["upos"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # per label: 0: tp 1, fp 1, fn 0 -> F1 2/3; 1: tp 1, fp 0, fn 1 -> 2/3; 2: tp 1, fp 1, fn 1 -> 1/2
    assert s.macro_f1["upos"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s.flops_fraction == pytest.approx(0.5)
    assert s.predictions["upos"] == [[0, 1, 2], [2, 0]] and s.words == 5


class BatchDependent(Dense):
    """A broken method whose labels depend on the batch size (what the consistency check must catch)."""

    def forward(self, batch):
        out = self.model(batch)
        if batch.size > 1:
            out.logits["upos"] = out.logits["upos"].flip(-1)
        return out


def test_batch_consistency_passes_for_dense_and_catches_a_batch_dependent_method():
    corpus = _corpus([[1] * n for n in (3, 5, 2, 7, 4, 6)], ["aa/x/T"] * 6)
    model = tiny_model()
    ok = batch_consistency(Dense(model), corpus, big=4, limit=6)
    assert ok.same_predictions == 1.0 and ok.same_decisions is None and ok.mismatched == []
    bad = batch_consistency(BatchDependent(model), corpus, big=4, limit=6)
    assert bad.same_predictions < 1.0 and bad.mismatched


def test_noise_keeps_words_and_script_and_is_seeded():
    words = ["Kissa", "istuu", "puussa", "."]
    assert add_noise(words, 0.0, np.random.default_rng(0)) == words
    noisy = add_noise(words, 0.3, np.random.default_rng(0))
    assert len(noisy) == len(words) and all(noisy) and noisy != words
    assert set("".join(noisy)) <= set("".join(words))
    assert noisy == add_noise(words, 0.3, np.random.default_rng(0))
    rate = np.mean([add_noise(["abcdefghij"], 0.1, np.random.default_rng(s))[0] != "abcdefghij" for s in range(200)])
    assert 0.4 < rate < 0.9  # 10% per character over 10 characters: most words change, not all


def test_concatenate_respects_the_limit_and_the_groups():
    runs = concatenate([["a"]] * 6, ["x", "x", "x", "y", "y", "x"], [200, 200, 200, 100, 600, 50], 512)
    assert runs == [[0, 1], [2], [3], [4], [5]]


@pytest.mark.slow
def test_evaluate_cli_on_the_smoke_run(smoke_run, tmp_path):
    out = tmp_path / "eval"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "metasparse.evaluate",
            f"run_dir={smoke_run}",
            "methods=[meta,importance,latency,random,udpipe]",
            "experiment=quick",
            "latency.threads=1",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    r = json.loads((out / "evaluate.json").read_text())
    assert list(r["methods"]) == ["dense", "meta", "importance", "latency", "random"]
    for name, m in r["methods"].items():
        s = m["source_test"]
        assert set(s["accuracy"]) == {"upos", "deprel"} and set(s["macro_f1"]) == {"upos", "deprel"}
        assert m["consistency"]["same_predictions"] == 1.0, name
        assert set(m["stress_drift"]) == {"noise_0.05", "noise_0.1", "long"}
        assert m["targets_zero_shot"]["sentences"] > 0
    assert {(s["batch"], s["method"]) for s in r["speed"]} == {(b, n) for b in (1, 32) for n in r["methods"]}
    assert all(s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] for s in r["speed"])
    predicted = {(s["batch"], s["method"]): s["predicted_ratio"] for s in r["speed"]}
    assert predicted[1, "dense"] == predicted[32, "dense"] == 1.0
    assert all(predicted[b, m] > 0 for b in (1, 32) for m in ("meta", "latency", "random"))
    assert "| batch | method | p50 ms" in (out / "evaluate.md").read_text()
    assert (out / "front.png").stat().st_size > 1000
    # accuracy only (a busy machine): no speed table, no front, said so
    quiet = tmp_path / "no_speed"
    res = subprocess.run(
        [sys.executable, "-m", "metasparse.evaluate", f"run_dir={smoke_run}", "methods=[random]", "experiment=quick"]
        + ["latency.batch_sizes=[]", "latency.predict=false", f"hydra.run.dir={quiet}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert json.loads((quiet / "evaluate.json").read_text())["speed"] == [] and not (quiet / "front.png").exists()
    md = (quiet / "evaluate.md").read_text()
    assert "Speed: not measured (latency.batch_sizes=[])." in md and "| batch | method | p50 ms" not in md
    # The UDPipe peer on the same source test sentences: every source language covered, numbers as a direct call.
    from metasparse.baselines.udpipe import load_taggers, train_taggers, udpipe_scores
    from metasparse.protocol.peers import source_train_rows

    u = r["peers"]["udpipe"]
    assert u["options"] == {"iterations": 1, "max_train_sentences": 100}  # experiment=quick
    assert u["source_test"]["words"] == r["methods"]["dense"]["source_test"]["words"]
    assert set(u["source_test"]["by_lang"]) == set(r["methods"]["dense"]["source_test"]["by_lang"])
    assert u["speed"]["wall_ratio"] > 0 and u["speed"]["words_per_s"] > 0
    assert "| peer | UPOS acc |" in (out / "evaluate.md").read_text()

    # The CLI's numbers are the library's: dense and meta rescored directly on the same source test sentences.
    from metasparse.baselines.build import build_method, source_splits
    from metasparse.meta.load import load_run

    loaded = load_run(smoke_run)
    splits = source_splits(loaded, test_sentences=200, calib_sentences=300, seed=0)  # evaluate's quick protocol
    direct = score(Dense(loaded.system.backbone), splits.test)
    assert r["methods"]["dense"]["source_test"]["accuracy"] == pytest.approx(direct.accuracy, abs=1e-12)
    assert r["methods"]["dense"]["source_test"]["sentences"] == len(splits.test) == 200
    meta = build_method("meta", loaded, splits, loaded.cfg.budget.target, steps=30, seed=0)
    again = score(meta, splits.test)
    assert r["methods"]["meta"]["source_test"]["accuracy"] == pytest.approx(again.accuracy, abs=1e-12)
    assert r["methods"]["meta"]["source_test"]["flops_fraction"] == pytest.approx(again.flops_fraction, abs=1e-12)
    assert 0.0 < again.flops_fraction < 1.0  # gated: less than dense
    models = train_taggers(loaded.bundle.dataset, source_train_rows(loaded, 100), iterations=1)  # cached by the CLI
    rows = [int(x) for x in splits.test.rows]
    direct_u = udpipe_scores(loaded.bundle.dataset, rows, list(splits.test.cells), load_taggers(models)).summary()
    assert u["source_test"]["accuracy"]["upos"] == pytest.approx(direct_u["accuracy"]["upos"], abs=1e-12)


def test_codebook_levels_of_static_structures():
    from metasparse.model.patterns import Pattern
    from metasparse.protocol.speed import codebook_levels
    from metasparse.scoring.methods import StaticMethod

    model = tiny_model()
    batch = __import__("model_utils").random_batch([4, 2])
    full = model.codebook.index(model.full)
    assert codebook_levels(Dense(model), batch).tolist() == [[full] * 3] * 2
    half = next(i for i, p in enumerate(model.codebook) if (p.n_heads, p.n_groups) == (2, 2))
    inside = StaticMethod(model, [Pattern(2, 2), model.full, Pattern(0, 0)], "s")
    assert codebook_levels(inside, batch).tolist() == [[half, full, 0]] * 2
    outside = StaticMethod(model, [Pattern(3, 1), model.full, model.full], "s")  # not a codebook pattern
    assert codebook_levels(outside, batch) is None


def test_the_accuracy_wall_front_is_a_small_png(tmp_path):
    from metasparse.protocol.figures import accuracy_wall_front

    methods = {
        name: {"family": fam, "source_test": {"macro_cells": {"upos": acc, "deprel": acc - 0.1}}}
        for name, fam, acc in (("dense", "dense", 0.9), ("meta", "per-input", 0.89), ("l0", "static", 0.88))
    }
    speed = [
        {"batch": b, "method": n, "wall_ratio": w}
        for b in (1, 32)
        for n, w in (("dense", 1.0), ("meta", 0.5), ("l0", 0.6))
    ]
    png = accuracy_wall_front({"methods": methods, "speed": speed, "budget": 0.5}, tmp_path / "front.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 200_000
    assert accuracy_wall_front({"methods": methods, "speed": []}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_the_joint_method_is_the_joint_phase_controller_calibrated_like_meta(smoke_run):
    """``joint`` runs the controller meta-training started from, calibrated the same way as ``meta``: given
    the run's own controller it reproduces ``meta`` exactly, given another it decides otherwise; a run
    without a joint phase refuses it by name and ``all`` leaves it out."""
    import copy
    import dataclasses

    from metasparse.baselines.build import build_method, runnable_methods, source_splits
    from metasparse.meta.load import load_run

    loaded = load_run(smoke_run)  # experiment=smoke: joint.steps=0
    assert loaded.joint_controller is None
    splits = source_splits(loaded, test_sentences=120, calib_sentences=200, seed=0)
    budget = loaded.cfg.budget.target
    with pytest.raises(ValueError, match=r"joint\.steps=0"):
        build_method("joint", loaded, splits, budget)
    every = ["dense", "meta", "joint", "random"]
    assert runnable_methods(every, loaded, named=["all"]) == ["dense", "meta", "random"]
    assert runnable_methods(every, loaded, named=["joint"]) == every  # named: build_method says why not

    same = dataclasses.replace(loaded, joint_controller=copy.deepcopy(loaded.system.controller))
    meta, joint = (score(build_method(n, same, splits, budget), splits.test) for n in ("meta", "joint"))
    assert joint.accuracy == meta.accuracy and joint.flops_fraction == meta.flops_fraction
    other = copy.deepcopy(loaded.system.controller)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    differs = score(
        build_method("joint", dataclasses.replace(loaded, joint_controller=other), splits, budget), splits.test
    )
    assert differs.levels != meta.levels  # its own decisions, not the run's controller
    assert 0.0 < differs.flops_fraction < 1.0
