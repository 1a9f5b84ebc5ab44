"""Faults: a real SIGKILL mid-run and a resume that ends where an uninterrupted run ends; atomic
checkpoint writes; non-finite losses; pickled checkpoints refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metasparse.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metasparse.meta.adapted import adapted_dir


def _run_until(cmd: list[str], marker: Path) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``marker`` exists (a real kill: no handler, no cleanup)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed at {marker}"


@pytest.mark.slow
def test_sigkill_then_resume_equals_the_uninterrupted_run(smoke_run, tmp_path):
    part = tmp_path / "part"
    cmd = [sys.executable, "-m", "metasparse.meta_train", "experiment=smoke", "+domain=legal", f"hydra.run.dir={part}"]
    marker = part / "ckpt" / "last" / "state.json"
    _run_until(cmd, marker)
    assert not (part / "metrics.json").exists()
    step = json.loads(marker.read_text())["meta_state"]["step"]
    assert 0 < step < 6  # killed mid-run, after a checkpoint

    # Started again in the same folder (what a SLURM requeue does), the run resumes by itself; killed again
    # during the final adaptation (after the first target was adapted and saved), and resumed once more.
    first = sorted(json.loads((smoke_run / "metrics.json").read_text())["targets"])[0]
    _run_until(cmd, adapted_dir(part, first) / "state.json")
    assert not (part / "metrics.json").exists()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "unfinished run: resuming it" in res.stdout + res.stderr
    a = json.loads((part / "metrics.json").read_text())
    b = json.loads((smoke_run / "metrics.json").read_text())
    for key in ("targets", "targets_macro", "source_test", "validation"):
        assert a[key] == b[key], key  # adapted FLOPs included: each target's adaptation is seeded by its name


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_usable(tmp_path, monkeypatch):
    import metasparse.checkpoint as ck

    folder = save_checkpoint(tmp_path / "last", {"w": torch.ones(3)}, {"step": 1})
    real = ck.save_file

    def die_halfway(tensors, path):
        real(tensors, path)
        Path(path).write_bytes(Path(path).read_bytes()[:10])  # half-written file
        raise KeyboardInterrupt  # the process is stopped here

    monkeypatch.setattr(ck, "save_file", die_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, {"w": torch.zeros(3)}, {"step": 2})
    tensors, state = load_checkpoint(folder)
    assert state["step"] == 1 and torch.equal(tensors["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no temporary folder left behind


def test_a_truncated_checkpoint_is_detected(tmp_path):
    folder = save_checkpoint(tmp_path / "c", {"w": torch.ones(100)}, {})
    f = folder / "tensors.safetensors"
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="truncated or altered"):
        load_checkpoint(folder)


class _Payload:
    """Unpickling this would create a file: the proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_carrying_a_pickle_is_refused_and_never_unpickled(tmp_path):
    import hashlib

    folder = save_checkpoint(tmp_path / "c", {"w": torch.ones(1)}, {})
    marker = tmp_path / "pickle-ran"
    f = folder / "tensors.safetensors"
    torch.save({"w": _Payload(marker)}, f)  # a pickle in the tensor file's place ...
    state = json.loads((folder / "state.json").read_text())
    state["tensors_sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()  # ... with a matching hash
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="pickled checkpoints are refused"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_no_torch_load_without_weights_only_in_the_package():
    root = Path(__file__).resolve().parent.parent / "metasparse"
    offenders = [
        f"{p.relative_to(root)}:{i}"
        for p in root.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "torch.load(" in line and "weights_only=True" not in line
    ]
    assert offenders == []


@pytest.mark.slow  # trains a backbone and meta-trains
def test_a_nan_loss_skips_the_step_keeps_the_last_good_state_and_says_where(tmp_path, monkeypatch, ud_root):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import metasparse.meta.outer as outer
    from metasparse.config import CONF_DIR
    from metasparse.meta.run import run

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("meta_train", overrides=["experiment=smoke", "+domain=legal"]))
    from metasparse.data.prepare import prepare
    from metasparse.train.pretraining import pretrain

    pretrain(cfg, prepare(cfg))  # the backbone is cached first, so the optimiser steps counted below are meta steps
    real_loss, calls = outer.episode_loss, {"n": 0}

    def poisoned(*a, **k):
        loss, st = real_loss(*a, **k)
        calls["n"] += 1
        return (loss * float("nan"), st) if calls["n"] == 7 else (loss, st)

    steps = {"n": 0}
    real_step = torch.optim.Adam.step

    def counting_step(self, *a, **k):
        steps["n"] += 1
        return real_step(self, *a, **k)

    monkeypatch.setattr(outer, "episode_loss", poisoned)
    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    m = run(cfg, tmp_path / "run")
    assert len(m["nonfinite_steps"]) == 1
    where = m["nonfinite_steps"][0]
    assert "query loss nan" in where["where"] and "cell " in where["where"] and where["step"] >= 1
    assert steps["n"] == cfg.meta.steps - 1  # the poisoned step applied nothing
    tensors, _ = load_checkpoint(tmp_path / "run" / "ckpt" / "final")
    assert all(torch.isfinite(t).all() for t in tensors.values())


def test_atomic_writes_are_as_readable_as_ordinary_files(tmp_path):
    import os

    from metasparse.io import atomic_folder, atomic_write

    old = os.umask(0o022)
    try:
        f = atomic_write(tmp_path / "metrics.json", "{}")
        with atomic_folder(tmp_path / "ckpt") as d:
            (d / "x").write_text("y")
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
    assert (tmp_path / "ckpt").stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700
