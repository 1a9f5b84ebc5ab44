"""The compute budget: the expected cost of the controller's choices as a fraction of dense, differentiable
in the pattern probabilities, in one of two units.

* ``flops``: analytic FLOPs (:mod:`metasparse.model.flops`), exact and machine-independent.
* ``latency``: milliseconds predicted by a cost table measured on this machine
  (:mod:`metasparse.runtime.costs`; HALP, LASNet). At batch 1 a narrow matmul costs nearly what a wide
  one does and a skipped layer saves more than its FLOPs say: a FLOPs budget misprices both.

Both give, per sentence, a cost per (layer, pattern), a fixed cost no pattern changes, the controller's
cost per layer and the dense cost; the expected fraction is the same formula over either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from metasparse.model.encoder import GatedEncoder
from metasparse.model.flops import block_flops, dense_flops, fixed_flops
from metasparse.runtime.cost_store import load_or_measure
from metasparse.runtime.costs import CostTable
from metasparse.runtime.in_context import footprint_position

if TYPE_CHECKING:
    from metasparse.control.controller import Controller

UNITS = ("flops", "latency")
log = logging.getLogger(__name__)


@dataclass
class CostParts:
    """Per-sentence costs in one unit.

    Attributes:
        layers: ``[L, N, P]`` cost of each pattern at each layer.
        fixed: ``[N]`` what no pattern changes (embeddings, task heads).
        dense: ``[N]`` every layer on its widest pattern, plus ``fixed``.
        controller: ``[N]`` one controller decision at one layer (0 without a controller).
        single: ``[L, N, P]`` each pattern's cost when it runs on a single layer, the others skipped
            (latency only, where the table has it: a plan reading fewer weights keeps more of them in the
            caches); None: a pattern costs the same in any plan.
        weights: ``[P]`` share of a layer's weights each pattern reads (with ``single``).
    """

    layers: torch.Tensor
    fixed: torch.Tensor
    dense: torch.Tensor
    controller: torch.Tensor
    single: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    def footprint(self, probs_or_levels) -> torch.Tensor | None:
        """``[N]`` layers' worth of weights each example's plan reads in a stream, together with the plan of
        the input before it, drawn from the examples' mix (per layer the wider of the two patterns: a
        stream reads both plans' weights, :mod:`metasparse.runtime.in_context`); from the pattern
        probabilities per layer (expected, detached: the price follows the plans, the gradient flows
        through the probabilities) or hard levels ``[N, L]``. A plan every example shares costs its own
        footprint; plans that vary cost more. None where the cost does not depend on it."""
        if self.single is None:
            return None
        if isinstance(probs_or_levels, torch.Tensor):
            n_patterns = len(self.weights)
            probs_or_levels = [torch.nn.functional.one_hot(lv.long(), n_patterns).float() for lv in probs_or_levels.T]
        union = torch.maximum(self.weights[:, None], self.weights[None, :])  # [P, P] two patterns together
        detached = (p.detach() for p in probs_or_levels)
        return sum(((p @ union) * p.mean(0, keepdim=True)).sum(-1) for p in detached)

    def layers_at(self, footprint: torch.Tensor | None) -> torch.Tensor:
        """``[L, N, P]`` the layers' costs for plans of ``footprint`` ``[N]`` (None: as on every layer),
        between ``single`` and ``layers`` (:func:`metasparse.runtime.in_context.footprint_position`)."""
        if footprint is None or self.single is None:
            return self.layers
        x = footprint_position(footprint.numpy(), self.weights.numpy(), len(self.layers))
        x = torch.as_tensor(x, dtype=self.layers.dtype)[None]  # [1, N, P]
        return self.single + x * (self.layers - self.single)


class CostModel(Protocol):
    unit: str

    def parts(self, lengths: torch.Tensor, controller: Controller | None = None) -> CostParts: ...


class FlopsCost:
    """Analytic FLOPs of ``model``, the controller's counted by :meth:`Controller.flops_per_layer`."""

    unit = "flops"

    def __init__(self, model: GatedEncoder) -> None:
        self.model = model

    def parts(self, lengths: torch.Tensor, controller: Controller | None = None) -> CostParts:
        m, ns = self.model, [int(n) for n in lengths.tolist()]
        table = pattern_flops_table(m, lengths)
        f = lambda fn: torch.tensor([float(fn(n)) for n in ns], dtype=torch.float32)  # noqa: E731
        ctrl = f(lambda n: controller.flops_per_layer(m, n)) if controller is not None else torch.zeros(len(ns))
        return CostParts(
            table.expand(len(m.blocks), *table.shape),
            f(lambda n: fixed_flops(m.spec, n)),
            f(lambda n: dense_flops(m.spec, n)),
            ctrl,
        )


class LatencyCost:
    """Milliseconds predicted by a measured :class:`CostTable` for sentences run ``batch`` at a time."""

    unit = "latency"

    def __init__(self, table: CostTable, batch: int = 1, source: str = "") -> None:
        self.table, self.batch = table, batch
        self.source = source  # the table's file, so a report can say which prices it used

    def parts(self, lengths: torch.Tensor, controller: Controller | None = None) -> CostParts:
        c = self.table.per_example(lengths.tolist(), self.batch)
        ctrl = c["controller"] if controller is not None else torch.zeros_like(c["fixed"])
        if controller is not None and controller.upfront:  # one decision for every layer, counted per layer
            ctrl = ctrl / len(c["layers"])
        return CostParts(c["layers"], c["fixed"], c["dense"], ctrl, c.get("single"), c.get("weights"))


def budget_cost(
    unit: str,
    model: GatedEncoder,
    backbone_dir: Path | None,
    *,
    batch: int = 1,
    threads: int | None = None,
    rounds: int = 7,
    controller=None,
) -> CostModel:
    """The cost model a budget in ``unit`` prices decisions with: analytic FLOPs, or the latency table of
    the backbone in ``backbone_dir`` for this machine and thread count (measured and stored if missing
    or stale; ``controller``: the :class:`ControllerSpec` whose decision is timed, default settings if None)."""
    if unit == "flops":
        return FlopsCost(model)
    if unit != "latency":
        raise ValueError(f"budget.unit={unit!r}; allowed: {', '.join(UNITS)}")
    if backbone_dir is None:
        raise ValueError("budget.unit=latency needs the backbone's folder (its cost table is stored beside it)")
    threads = threads or torch.get_num_threads()
    from metasparse.control.controller import Controller

    ctrl = Controller(model, controller) if controller is not None else Controller(model)
    table, path, fresh = load_or_measure(model, Path(backbone_dir), threads=threads, rounds=rounds, controller=ctrl)
    log.info("latency budget at batch %d from %s%s", batch, path, " (measured now)" if fresh else "")
    return LatencyCost(table, batch, source=str(path))


def pattern_flops_table(model: GatedEncoder, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, P]`` FLOPs of one block per example (its length) and pattern."""
    rows = [[block_flops(model.spec, p, int(n)) for p in model.codebook] for n in lengths.tolist()]
    return torch.tensor(rows, dtype=torch.float32)


def expected_fraction(
    cost: CostModel, probs_per_layer: list[torch.Tensor], lengths: torch.Tensor, controller: Controller | None = None
) -> torch.Tensor:
    """Per-example expected cost over dense cost ``[B]``, differentiable in the probabilities."""
    parts = cost.parts(lengths, controller)
    layers = parts.layers_at(parts.footprint(probs_per_layer))
    exp = sum((probs * layers[i]).sum(-1) for i, probs in enumerate(probs_per_layer))
    return (exp + parts.controller * len(probs_per_layer) + parts.fixed) / parts.dense


def decision_fraction(
    cost: CostModel, levels: torch.Tensor, lengths: torch.Tensor, controller: Controller | None = None
) -> torch.Tensor:
    """Cost over dense cost ``[B]`` of hard decisions ``levels`` ``[B, L]`` (codebook index per layer)."""
    parts = cost.parts(lengths, controller)
    L = levels.shape[1]
    idx = levels.T.to(torch.long)[..., None]  # [L, B, 1]
    chosen = parts.layers_at(parts.footprint(levels))[:L].gather(2, idx).squeeze(-1).sum(0)
    return (chosen + parts.controller * L + parts.fixed) / parts.dense


def expected_flops_fraction(
    model: GatedEncoder,
    probs_per_layer: list[torch.Tensor],
    lengths: torch.Tensor,
    controller_per_layer: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-example expected FLOPs over dense FLOPs ``[B]``, differentiable in the probabilities."""
    parts = FlopsCost(model).parts(lengths)
    exp = sum((probs * parts.layers[i]).sum(-1) for i, probs in enumerate(probs_per_layer))
    if controller_per_layer is not None:
        exp = exp + controller_per_layer * len(probs_per_layer)
    return (exp + parts.fixed) / parts.dense


def budget_penalty(fraction: torch.Tensor, target: float, kind: str = "hinge") -> torch.Tensor:
    """Penalty pushing the mean cost fraction to ``target``: ``hinge`` (only above) or ``square``."""
    gap = fraction.mean() - target
    if kind == "hinge":
        return torch.relu(gap) ** 2
    if kind == "square":
        return gap**2
    raise ValueError(f"budget kind {kind!r}; allowed: hinge, square")


def annealed_target(step: int, steps: int, target: float, warmup: float) -> float:
    """The budget at ``step`` of ``steps``: dense (1.0) annealed linearly to ``target`` over the first
    ``warmup`` share of the steps, then ``target``.

    Why anneal: a controller that must meet the budget from its first step never learns which inputs need
    width; starting dense lets it learn that first and give width up gradually.
    """
    warm = max(1, int(warmup * steps))  # whole steps; warmup 0 gives the target from the first step
    return 1.0 - (1.0 - target) * min(1.0, (step + 1) / warm)
