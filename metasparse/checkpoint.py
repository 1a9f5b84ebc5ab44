"""Checkpoints without pickles: tensors in safetensors, state in JSON, written atomically, verified on load.

A checkpoint is a folder with ``tensors.safetensors`` and ``state.json``; ``state.json`` stores the
sha256 of the tensor file, so a truncated or altered file is detected before it is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from metasparse.errors import MetasparseError
from metasparse.io import atomic_folder, sha256_file


class CheckpointError(MetasparseError, ValueError):
    """A checkpoint is missing, truncated or altered."""


def save_checkpoint(folder: str | Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write ``folder`` atomically (a new temporary folder renamed into place); replaces an older one."""
    with atomic_folder(folder) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / "tensors.safetensors"))
        full = {**state, "tensors_sha256": sha256_file(tmp / "tensors.safetensors")}
        (tmp / "state.json").write_text(json.dumps(full, indent=2, sort_keys=True))
    return folder


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint folder.

    Raises:
        CheckpointError: files missing, unreadable, or the tensor file's hash differs from the stored one.
    """
    folder = Path(folder)
    tensors_path, state_path = folder / "tensors.safetensors", folder / "state.json"
    if not tensors_path.exists() or not state_path.exists():
        raise CheckpointError(f"{folder}: not a checkpoint (needs tensors.safetensors and state.json)")
    try:
        state = json.loads(state_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{state_path}: not valid JSON ({exc})") from None
    want, got = state.get("tensors_sha256"), sha256_file(tensors_path)
    if want != got:
        raise CheckpointError(f"{tensors_path}: sha256 {got} differs from the stored {want}: truncated or altered")
    try:  # safetensors only parses its own header and raw buffers: a pickle can never execute here
        tensors = load_file(str(tensors_path))
    except Exception as exc:  # noqa: BLE001  (any parse failure means the same thing to the user)
        raise CheckpointError(
            f"{tensors_path}: not a safetensors file ({type(exc).__name__}: {exc}); pickled checkpoints are refused"
        ) from None
    return tensors, state


def optimizer_state(
    opt: torch.optim.Optimizer, named_params: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, float]]]:
    """Split an optimiser's per-parameter state into tensors (``opt.<param>.<field>``) and JSON scalars.

    Args:
        opt: the optimiser.
        named_params: name -> parameter, for the parameters the optimiser holds.
    """
    names = {id(p): n for n, p in named_params.items()}
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, float]] = {}
    for p, st in opt.state.items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"opt.{names[id(p)]}.{k}"] = v
            else:
                scalars.setdefault(names[id(p)], {})[k] = float(v)
    return tensors, scalars


def restore_optimizer_state(
    opt: torch.optim.Optimizer,
    named_params: dict[str, torch.Tensor],
    tensors: dict[str, torch.Tensor],
    scalars: dict[str, dict[str, float]],
) -> None:
    """Inverse of :func:`optimizer_state`: replace ``opt``'s state with the saved one."""
    opt.state.clear()
    for n, p in named_params.items():
        prefix = f"opt.{n}."
        st: dict[str, torch.Tensor] = {
            k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix) and "." not in k[len(prefix) :]
        }
        st.update({k: torch.tensor(v) for k, v in scalars.get(n, {}).items()})
        if st:
            opt.state[p] = st
