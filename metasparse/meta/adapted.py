"""Adapted targets on disk: what few-step adaptation changed, beside the run, one folder per target.

    <run_dir>/adapted/<target>/model.safetensors + state.json      (written atomically)

Only what the inner loop changed is stored: the adapted parameters of the run's adapt set, and of the
embedding tables only the rows that moved (the support set's; a table is millions of values, a target
touches a few hundred rows). Loading one for inference:

    from metasparse.meta.adapted import load_adapted
    system = load_adapted("outputs/2026-12-02/10-00-00", "fi_tdt-legal")   # a GatedSystem, eval mode
    out = system(batch, hard=True)                                          # or gated_scores(system, corpus)
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from metasparse.checkpoint import load_checkpoint, save_checkpoint
from metasparse.errors import PathError
from metasparse.meta.system import INNER_ONLY_PARTS, GatedSystem, part_of

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_subfolder(run_dir: str | Path, kind: str, name: str) -> Path:
    """``<run_dir>/<kind>/<name>``, the name made safe for a folder (what a run keeps beside it: adapted
    targets, recalibrations)."""
    return Path(run_dir) / kind / _SAFE.sub("_", name)


def stored_subfolder(run_dir: str | Path, kind: str, name: str, key: str) -> Path:
    """The finished folder ``name`` of ``kind`` beside the run.

    Raises:
        PathError: there is none (the message names ``key`` and lists the stored ones).
    """
    folder = run_subfolder(run_dir, kind, name)
    if not (folder / "state.json").exists():
        saved = sorted(p.name for p in (Path(run_dir) / kind).glob("*") if (p / "state.json").exists())
        raise PathError(f"{key}={name}: none under {run_dir}/{kind}; saved: {', '.join(saved) or 'none'}")
    return folder


def adapted_dir(run_dir: str | Path, target: str) -> Path:
    """Where a target's adaptation is stored."""
    return run_subfolder(run_dir, "adapted", target)


def save_adapted(folder: Path, adapted: GatedSystem, base: GatedSystem, names: list[str], info: dict) -> dict[str, int]:
    """Write the parameters ``names`` of ``adapted`` that differ from ``base`` (the run's system before
    adapting); embedding tables as (rows, values). Returns how many values were stored per parameter."""
    new, old = dict(adapted.named_parameters()), dict(base.named_parameters())
    tensors, sizes = {}, {}
    for n in names:
        v = new[n].detach()
        if part_of(n) in INNER_ONLY_PARTS:
            rows = (v != old[n].detach()).any(dim=1).nonzero().squeeze(1)
            tensors[f"rows.{n}"], tensors[f"values.{n}"] = rows, v.index_select(0, rows).contiguous()
            sizes[n] = int(rows.numel()) * v.shape[1]
        else:
            tensors[f"param.{n}"] = v.contiguous()
            sizes[n] = v.numel()
    save_checkpoint(folder, tensors, {"target": info, "stored_values": sizes})
    return sizes


def apply_adapted(system: GatedSystem, folder: Path) -> dict:
    """Write a saved adaptation into ``system`` (in place); returns its ``state.json`` content."""
    tensors, state = load_checkpoint(folder)
    params = dict(system.named_parameters())
    with torch.no_grad():
        for key, v in tensors.items():
            kind, _, name = key.partition(".")
            if name not in params:
                raise KeyError(f"{folder}: tensor {key!r} matches no parameter of the run's system")
            if kind == "param":
                params[name].copy_(v)
            elif kind == "rows":
                params[name].index_copy_(0, v, tensors[f"values.{name}"])
    return state


def check_adapted(run_dir: str | Path, target: str) -> Path:
    """The folder of a saved adapted target.

    Raises:
        PathError: the target was never adapted and saved (the message lists those that were).
    """
    return stored_subfolder(run_dir, "adapted", target, "target")


def load_adapted(run_dir: str | Path, target: str, loaded=None) -> GatedSystem:
    """The run's system with one target's saved adaptation written in, ready for inference.

    Args:
        loaded: the run already loaded (:func:`metasparse.meta.load.load_run`), to load it only once.

    Raises:
        PathError: the target was never adapted and saved (the message lists those that were).
    """
    import copy

    from metasparse.meta.load import load_run

    folder = check_adapted(run_dir, target)
    loaded = loaded or load_run(run_dir)
    system = copy.deepcopy(loaded.system)
    apply_adapted(system, folder)
    return system.eval()
