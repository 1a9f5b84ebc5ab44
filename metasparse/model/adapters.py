"""Pathway adapters: light adaptable parameters that live on one gateable unit and run only when it runs.

Every attention head and every FFN channel group of a block gets its own small set of parameters, laid out
unit-major so that the active units' parameters are a prefix (``[:n]``), exactly like the block's weights.
A unit the controller switches off contributes nothing, costs nothing and receives no gradient; a gated
model therefore adapts only the pathway it uses. Two forms:

* ``lora``: a low-rank delta on each unit's output projection (head ``h``: ``ctx_h @ A_h @ B_h``; group
  ``g``: ``act_g @ A_g @ B_g``), ``A`` random, ``B`` zero, so an adapter at its initial value changes
  nothing (Hu et al. 2022, per unit).
* ``scale``: per-channel scale and shift of each unit's activations (head context, FFN activations), zero
  initialised as ``x * (1 + s) + b`` (IA3 / BitFit-like, per unit).

Both are zero at initialisation: the backbone's function is unchanged until something adapts them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from metasparse.errors import require

KINDS = ("lora", "scale")


@dataclass
class AdapterConfig:
    """Pathway adapters on every head and FFN group.

    Attributes:
        kind: ``lora`` (low-rank delta per unit), ``scale`` (per-channel scale and shift per unit) or
            ``none`` (no adapters).
        rank: rank of each unit's delta (``lora`` only).
        init_std: standard deviation of the random down-projection ``A`` (``lora``).
    """

    kind: str = "lora"
    rank: int = 4
    init_std: float = 0.02

    def __post_init__(self) -> None:
        require(self.kind in (*KINDS, "none"), "adapters.kind", "lora, scale or none", self.kind)
        require(self.rank >= 1, "adapters.rank", ">= 1", self.rank)


class PathwayAdapter(nn.Module):
    """The adapters of one block.

    Args:
        n_heads, d_head: the block's heads and their width.
        n_groups, group_size: the block's FFN channel groups and their width.
        d_model: the residual width the deltas are added to.
        cfg: kind and rank.
    """

    def __init__(
        self, n_heads: int, d_head: int, n_groups: int, group_size: int, d_model: int, cfg: AdapterConfig
    ) -> None:
        super().__init__()
        require(cfg.kind in KINDS, "adapters.kind", "lora or scale", cfg.kind)
        self.kind, self.rank, self.d_head, self.group_size = cfg.kind, cfg.rank, d_head, group_size
        if cfg.kind == "lora":
            r = cfg.rank
            self.head_down = nn.Parameter(torch.randn(n_heads, d_head, r) * cfg.init_std)
            self.head_up = nn.Parameter(torch.zeros(n_heads * r, d_model))
            self.ffn_down = nn.Parameter(torch.randn(n_groups, group_size, r) * cfg.init_std)
            self.ffn_up = nn.Parameter(torch.zeros(n_groups * r, d_model))
        else:
            self.head_scale = nn.Parameter(torch.zeros(n_heads * d_head))
            self.ffn_scale = nn.Parameter(torch.zeros(n_groups * group_size))
            self.ffn_shift = nn.Parameter(torch.zeros(n_groups * group_size))

    # Each hook takes the activations of the first ``n`` units (a prefix, any leading shape) and either
    # rescales them (``scale``) or returns the delta they add to the residual stream (``lora``).
    def head_context(self, ctx: torch.Tensor, n_heads: int) -> torch.Tensor:
        """The heads' context ``[..., n_heads * d_head]`` as the output projection should see it."""
        if self.kind != "scale":
            return ctx
        return ctx * (1 + self.head_scale[: n_heads * self.d_head])

    def head_delta(self, ctx: torch.Tensor, n_heads: int) -> torch.Tensor | None:
        """What the first ``n_heads`` heads' adapters add to the block's output (None for ``scale``)."""
        if self.kind != "lora":
            return None
        return _low_rank(ctx, self.head_down[:n_heads], self.head_up[: n_heads * self.rank])

    def ffn_activation(self, act: torch.Tensor, n_groups: int) -> torch.Tensor:
        """The FFN activations ``[..., n_groups * group_size]`` as the second projection should see them."""
        if self.kind != "scale":
            return act
        f = n_groups * self.group_size
        return act * (1 + self.ffn_scale[:f]) + self.ffn_shift[:f]

    def ffn_delta(self, act: torch.Tensor, n_groups: int) -> torch.Tensor | None:
        """What the first ``n_groups`` groups' adapters add to the block's output (None for ``scale``)."""
        if self.kind != "lora":
            return None
        return _low_rank(act, self.ffn_down[:n_groups], self.ffn_up[: n_groups * self.rank])


@torch.no_grad()
def permute_units(adapter: PathwayAdapter, heads: list[int], groups: list[int]) -> None:
    """Reorder the adapters' units in place, as a block's heads and FFN groups are reordered (static pruning
    puts the kept units first), so every unit keeps its own adapter."""
    if adapter.kind == "lora":
        r = adapter.rank
        for down, up, order in (
            (adapter.head_down, adapter.head_up, heads),
            (adapter.ffn_down, adapter.ffn_up, groups),
        ):
            down.copy_(down[order])
            up.copy_(up.view(len(order), r, -1)[order].reshape(up.shape))
        return
    dh, gs = adapter.d_head, adapter.group_size
    hi = torch.cat([torch.arange(h * dh, (h + 1) * dh) for h in heads])
    gi = torch.cat([torch.arange(g * gs, (g + 1) * gs) for g in groups])
    adapter.head_scale.copy_(adapter.head_scale[hi])
    adapter.ffn_scale.copy_(adapter.ffn_scale[gi])
    adapter.ffn_shift.copy_(adapter.ffn_shift[gi])


def _low_rank(x: torch.Tensor, down: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``sum_u x_u @ down_u @ up_u`` over units ``u``: ``x`` ``[..., units * width]``, ``down``
    ``[units, width, r]``, ``up`` ``[units * r, d]``."""
    units, width, r = down.shape
    lead = x.shape[:-1]
    z = torch.einsum("nuw,uwr->nur", x.reshape(-1, units, width), down)
    return (z.reshape(-1, units * r) @ up).view(*lead, up.shape[1])


def attach_adapters(model: nn.Module, cfg: AdapterConfig) -> None:
    """Give every block of ``model`` (a GatedEncoder) pathway adapters (none for ``kind=none``), seeded by
    the caller's torch seed."""
    for block in model.blocks:
        block.adapter = (
            None
            if cfg.kind == "none"
            else PathwayAdapter(block.n_heads, block.d_head, block.n_groups, block.group_size, block.d_model, cfg)
        )
    # a copy of the spec: the backbone's own spec (and any model sharing it) stays adapter-free
    model.spec = dataclasses.replace(model.spec, adapter=None if cfg.kind == "none" else cfg)
