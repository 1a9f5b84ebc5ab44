"""Label-free recalibrations of a run's controllers, stored beside the run, one folder each:

    <run_dir>/calibrations/<name>/model.safetensors + state.json      (written atomically, never replaced)

A recalibration re-meets the run's budget on unlabelled text of a new domain (the monitor's advice when
only the controllers' behaviour drifted): it shifts each layer's decision logits toward cheaper or
broader patterns (:func:`metasparse.control.train.calibrate_bias`) and stores only the controller's
decision biases it changed. Loading one for inference:

    system = load_run(run_dir).system
    apply_calibration(system, run_dir, "contracts-1a2b3c4d")
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from metasparse.checkpoint import load_checkpoint, save_checkpoint
from metasparse.errors import PathError
from metasparse.meta.system import GatedSystem

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def calibration_dir(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / "calibrations" / _SAFE.sub("_", name)


def decision_biases(system: GatedSystem) -> dict[str, torch.Tensor]:
    """The controller's decision-layer biases (what a calibration shifts), by parameter name."""
    return {f"controller.nets.{i}.2.bias": net[2].bias for i, net in enumerate(system.controller.nets)}


def refuse_existing(folder: Path) -> None:
    """Raise when a calibration is stored at ``folder`` already: one is never replaced.

    Raises:
        PathError: naming the folder.
    """
    if folder.exists():
        raise PathError(f"name={folder.name}: a calibration already exists at {folder}; allowed: a new name")


def save_calibration(folder: Path, system: GatedSystem, info: dict) -> None:
    """Store ``system``'s decision biases with ``info`` as its state; an existing calibration is refused."""
    refuse_existing(folder)
    save_checkpoint(folder, {k: v.detach().contiguous() for k, v in decision_biases(system).items()}, info)


def check_calibration(run_dir: str | Path, name: str) -> Path:
    """The folder of a stored calibration.

    Raises:
        PathError: no such calibration (the message lists the stored ones).
    """
    folder = calibration_dir(run_dir, name)
    if not (folder / "state.json").exists():
        saved = sorted(p.name for p in (Path(run_dir) / "calibrations").glob("*") if (p / "state.json").exists())
        raise PathError(f"calibration={name}: none under {run_dir}/calibrations; saved: {', '.join(saved) or 'none'}")
    return folder


def apply_calibration(system: GatedSystem, run_dir: str | Path, name: str) -> dict:
    """Write a stored calibration into ``system`` (in place); returns its ``state.json`` content.

    Raises:
        PathError: no such calibration (the message lists the stored ones).
    """
    folder = check_calibration(run_dir, name)
    tensors, state = load_checkpoint(folder)
    targets = decision_biases(system)
    if set(tensors) != set(targets):
        raise PathError(f"{folder}: its tensors do not match this run's controller ({sorted(tensors)[:3]} ...)")
    with torch.no_grad():
        for k, v in tensors.items():
            targets[k].copy_(v)
    return state
