"""Tracking: scalars and figures reach TensorBoard event files or an MLflow store and read back equal to
what the run wrote to metrics.json; logger=none and code outside a tracked job log nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_utils import run_module
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metasparse.errors import ConfigValueError
from metasparse.tracking import LoggerConfig, flatten, log_figure, log_scalars, tracking


def tb_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def mlflow_metrics(uri: str) -> dict[str, list[tuple[int, float]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "metasparse"]
    (run,) = client.search_runs([exp.experiment_id])
    return {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)] for k in run.data.metrics}


def test_outside_a_tracked_job_and_with_none_nothing_is_written(tmp_path):
    log_scalars("x", {"a": 1.0}, 0)  # no active tracker: a no-op, not an error
    with tracking(LoggerConfig(kind="none"), tmp_path, "t"):
        log_scalars("x", {"a": 1.0}, 0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigValueError, match=r"logger\.kind='wandb'.*tensorboard \| mlflow \| none"):
        LoggerConfig(kind="wandb")


def test_tensorboard_scalars_and_figures_read_back(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "curve.png")
    plt.close(fig)
    with tracking(LoggerConfig(), tmp_path / "run", "t", {"a.b": 1}):
        for step in range(3):
            log_scalars("train", {"loss": 1.0 / (step + 1)}, step)
        log_figure("curve", tmp_path / "curve.png")
    log_scalars("train", {"loss": 9.0}, 3)  # after the job: not logged
    loss = tb_scalars(tmp_path / "run" / "tb")["train/loss"]
    assert [s for s, _ in loss] == [0, 1, 2] and [v for _, v in loss] == pytest.approx([1.0, 0.5, 1 / 3])
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    assert acc.Tags()["images"] == ["curve"]


def test_mlflow_scalars_read_back(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracking(LoggerConfig(kind="mlflow", tracking_uri=uri), tmp_path, "t", {"lr": 0.1}):
        log_scalars("meta", {"val_acc": 0.5}, 1)
        log_scalars("meta", {"val_acc": 0.75}, 2)
    assert mlflow_metrics(uri) == {"meta.val_acc": [(1, 0.5), (2, 0.75)]}


def test_flatten_configs():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}


@pytest.mark.slow
def test_pretrain_logs_to_tensorboard_and_mlflow_what_metrics_json_holds(tmp_path, ud_root):
    tiny = [
        "model=tiny",
        "data.treebanks=[UD_Korean-PUD]",
        "tokenizer.vocab_size=2000",
        "pretrain.max_words=512",
        "pretrain.epochs=0.5",
        "joint.steps=4",
        "joint.max_words=512",
    ]
    env = {**os.environ, "METASPARSE_CACHE_DIR": str(tmp_path / "cache")}
    run_module("metasparse.pretrain", *tiny, f"hydra.run.dir={tmp_path / 'tb_run'}", env=env)
    metrics = json.loads((tmp_path / "tb_run" / "metrics.json").read_text())
    tb = tb_scalars(tmp_path / "tb_run" / "tb")
    assert tb["backbone/upos_dense"][0][1] == pytest.approx(metrics["macro"]["upos"]["dense"], abs=1e-6)
    assert [s for s, _ in tb["joint/flops"]] == [1, 2, 3, 4]
    assert tb["joint/kd"][-1][1] == pytest.approx(metrics["joint"]["last_step"]["kd"], abs=1e-6)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_module(
        "metasparse.pretrain",
        *tiny,
        "logger=mlflow",
        f"logger.tracking_uri={uri}",
        f"hydra.run.dir={tmp_path / 'ml_run'}",
        env=env,
    )  # a cache hit: the backbone's numbers only
    ml = mlflow_metrics(uri)
    assert ml["backbone.upos_dense"][0][1] == pytest.approx(metrics["macro"]["upos"]["dense"], abs=1e-6)
    assert not (tmp_path / "ml_run" / "tb").exists()


@pytest.mark.slow
def test_meta_train_logs_its_validation_curve(smoke_run):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    tb = tb_scalars(smoke_run / "tb")
    assert [r["step"] for r in metrics["validation"]] == [s for s, _ in tb["meta/val_acc"]]
    assert [r["val_acc"] for r in metrics["validation"]] == pytest.approx([v for _, v in tb["meta/val_acc"]])
    assert tb["result/objective"][0][1] == pytest.approx(metrics["objective"], abs=1e-6)
    assert len(tb["meta/ce"]) == metrics["validation"][-1]["step"]  # every outer step
