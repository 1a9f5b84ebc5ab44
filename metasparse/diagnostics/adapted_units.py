"""Which units a target's adaptation changed most: the norm of each head's and FFN group's adapted delta.

Pathway adapters live on units (:mod:`metasparse.model.adapters`), so an adaptation saved beside a run
(``<run_dir>/adapted/<target>``) says which heads and groups a domain or language needed to change. A
``lora`` unit's change is the Frobenius norm of the change of its low-rank matrix ``A_u @ B_u`` (what it
adds to the residual stream per unit of input), a ``scale`` unit's the norm of the change of its scales
and shifts. Rows are per target, layer, unit kind and unit, with the unit's share of the target's total.
"""

from __future__ import annotations

from pathlib import Path

import torch

from metasparse.checkpoint import load_checkpoint

PREFIX = "backbone.blocks"


def _lora_unit_norms(down0, up0, down1, up1) -> torch.Tensor:
    """``[units]`` norms of ``down1_u @ up1_u - down0_u @ up0_u``."""
    units, _, r = down0.shape

    def per_unit(down, up):
        return torch.einsum("uwr,urd->uwd", down, up.view(units, r, -1))

    return (per_unit(down1, up1) - per_unit(down0, up0)).flatten(1).norm(dim=1)


def _scale_unit_norms(units: int, *deltas: torch.Tensor) -> torch.Tensor:
    """``[units]`` norms of the per-channel deltas, each ``[units * width]``."""
    return torch.stack([d.view(units, -1).pow(2).sum(1) for d in deltas]).sum(0).sqrt()


def unit_delta_norms(
    base: dict[str, torch.Tensor], adapted: dict[str, torch.Tensor], layer: int, heads: int, groups: int
) -> dict[str, torch.Tensor]:
    """``{"head": [heads], "ffn": [groups]}`` norms of one block's adapted deltas; a parameter the
    adaptation did not store is unchanged (delta 0).

    Raises:
        ValueError: the block has no pathway adapters.
    """

    def pair(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        key = f"{PREFIX}.{layer}.adapter.{name}"
        old = base[key].detach().double()
        return old, adapted[key].double() if key in adapted else old

    names = {k.rsplit(".", 1)[1] for k in base if k.startswith(f"{PREFIX}.{layer}.adapter.")}
    if {"head_down", "head_up", "ffn_down", "ffn_up"} <= names:
        out = {}
        for kind in ("head", "ffn"):
            (d0, d1), (u0, u1) = pair(f"{kind}_down"), pair(f"{kind}_up")
            out[kind] = _lora_unit_norms(d0, u0, d1, u1)
        return out
    if {"head_scale", "ffn_scale", "ffn_shift"} <= names:
        return {
            "head": _scale_unit_norms(heads, pair("head_scale")[1] - pair("head_scale")[0]),
            "ffn": _scale_unit_norms(groups, *(pair(n)[1] - pair(n)[0] for n in ("ffn_scale", "ffn_shift"))),
        }
    raise ValueError(f"block {layer} has no pathway adapters: nothing to measure")


def adapted_unit_rows(run_dir: str | Path, system, layers: int, heads: int, groups: int) -> list[dict]:
    """One row per saved target, layer and unit: ``target, layer, kind, unit, delta_norm, share`` (the
    unit's share of the target's summed unit deltas); [] when the run saved no adaptation or has no
    pathway adapters."""
    base = dict(system.named_parameters())
    if not any(".adapter." in k for k in base):
        return []
    rows = []
    for folder in sorted((Path(run_dir) / "adapted").glob("*/state.json")):
        tensors, state = load_checkpoint(folder.parent)
        adapted = {k.partition(".")[2]: v for k, v in tensors.items() if k.startswith("param.")}
        target = state.get("target", {}).get("cell", folder.parent.name)
        norms = [unit_delta_norms(base, adapted, li, heads, groups) for li in range(layers)]
        total = float(sum(v.sum() for n in norms for v in n.values())) or 1.0
        rows += [
            {"target": target, "layer": li, "kind": kind, "unit": u, "delta_norm": float(x), "share": float(x) / total}
            for li, n in enumerate(norms)
            for kind in ("head", "ffn")
            for u, x in enumerate(n[kind].tolist())
        ]
    return rows


def top_units(rows: list[dict], k: int = 3) -> dict[str, list[dict]]:
    """Target -> its ``k`` most changed units (largest delta first)."""
    by_target: dict[str, list[dict]] = {}
    for r in rows:
        by_target.setdefault(r["target"], []).append(r)
    return {t: sorted(rs, key=lambda r: -r["delta_norm"])[:k] for t, rs in sorted(by_target.items())}
