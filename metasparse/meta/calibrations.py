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

from pathlib import Path

import torch

from metasparse.checkpoint import load_checkpoint, save_checkpoint
from metasparse.errors import PathError
from metasparse.meta.adapted import run_subfolder, stored_subfolder
from metasparse.meta.system import GatedSystem


def calibration_dir(run_dir: str | Path, name: str) -> Path:
    return run_subfolder(run_dir, "calibrations", name)


def decision_biases(system: GatedSystem) -> dict[str, torch.Tensor]:
    """The controller's decision biases (what a calibration shifts), keyed as stored."""
    return {f"controller.{k}": v for k, v in system.controller.decision_biases().items()}


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
    return stored_subfolder(run_dir, "calibrations", name, "calibration")


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
