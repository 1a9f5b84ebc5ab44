"""One interface for every way of running the backbone, so all methods share one evaluation harness.

A :class:`Method` labels a batch and reports, per sentence, the FLOPs it really spent (analytic, as the
engine counts them: controller included for per-input methods, measured non-zeros for activation
sparsity) and, for per-input methods, the codebook pattern it chose per layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from metasparse.control.controller import Controller
from metasparse.model.encoder import EncoderOutput, GatedEncoder
from metasparse.model.features import Batch
from metasparse.model.flops import dense_flops, gated_flops
from metasparse.model.patterns import Pattern


@dataclass
class MethodOutput:
    """What one batch cost and produced.

    Attributes:
        logits: task -> ``[B, T, labels]``.
        flops: FLOPs spent per sentence.
        dense_flops: FLOPs the dense model spends per sentence.
        levels: ``[B, layers]`` codebook index per sentence and layer (per-input methods), else None.
    """

    logits: dict[str, torch.Tensor]
    flops: list[float]
    dense_flops: list[float]
    levels: torch.Tensor | None = None


class Method(ABC):
    """A way of running the backbone under a compute budget.

    Attributes:
        name: short identifier (``dense``, ``meta``, ``importance`` ...).
        family: ``dense``, ``per-input``, ``static`` or ``training-free``.
        model: the encoder it runs (some methods run a unit-reordered copy).
    """

    name: str = "method"
    family: str = "dense"
    model: GatedEncoder

    @abstractmethod
    def forward(self, batch: Batch) -> EncoderOutput:
        """The timed computation: labels only, no bookkeeping."""

    def flops(self, batch: Batch, out: EncoderOutput) -> list[float]:
        """FLOPs per sentence of ``batch`` as run in ``out``."""
        return [float(dense_flops(self.model.spec, n)) for n in batch.lengths.tolist()]

    @torch.no_grad()
    def __call__(self, batch: Batch) -> MethodOutput:
        self.model.eval()
        out = self.forward(batch)
        levels = None
        if out.decisions and all(d is not None for d in out.decisions):
            levels = torch.stack([d.levels for d in out.decisions], dim=1)
        spec = self.model.spec
        return MethodOutput(
            out.logits,
            self.flops(batch, out),
            [float(dense_flops(spec, n)) for n in batch.lengths.tolist()],
            levels,
        )


class Dense(Method):
    """Every unit on."""

    name, family = "dense", "dense"

    def __init__(self, model: GatedEncoder) -> None:
        self.model = model

    def forward(self, batch: Batch) -> EncoderOutput:
        return self.model(batch)


class PolicyMethod(Method):
    """Per-input decisions from a policy (a controller, or random decisions), run sliced and grouped.

    Args:
        model: the backbone.
        policy_fn: builds a fresh hard policy for one forward.
        controller_flops: ``n_words -> FLOPs`` the decision costs per layer.
        name: method name.
    """

    family = "per-input"

    def __init__(self, model: GatedEncoder, policy_fn, controller_flops, name: str) -> None:
        self.model, self.policy_fn, self.controller_flops, self.name = model, policy_fn, controller_flops, name

    def forward(self, batch: Batch) -> EncoderOutput:
        return self.model(batch, self.policy_fn())

    def flops(self, batch: Batch, out: EncoderOutput) -> list[float]:
        cb, spec = self.model.codebook, self.model.spec
        levels = torch.stack([d.levels for d in out.decisions], dim=1).tolist()
        return [
            float(gated_flops(spec, [cb[lv] for lv in levels[b]], n, self.controller_flops(n)))
            for b, n in enumerate(batch.lengths.tolist())
        ]


def controlled(model: GatedEncoder, ctrl: Controller, name: str = "meta") -> PolicyMethod:
    """A trained controller as a method (hard argmax decisions)."""
    ctrl.eval()
    return PolicyMethod(model, lambda: ctrl.policy(model), lambda n: ctrl.flops_per_layer(model, n), name)


class StaticMethod(Method):
    """One pattern per layer for every input (pruned structure), on a unit-reordered copy of the backbone
    whose kept heads and FFN groups come first, so the pruned layers run as sliced prefixes.

    Args:
        model: the reordered backbone.
        patterns: the kept units per layer.
        name: method name.
    """

    family = "static"

    def __init__(self, model: GatedEncoder, patterns: Sequence[Pattern], name: str) -> None:
        self.model, self.patterns, self.name = model, list(patterns), name

    def forward(self, batch: Batch) -> EncoderOutput:
        return self.model.forward_with(batch, lambda i, blk, x, m: blk.forward_sliced(x, m, self.patterns[i], None))

    def flops(self, batch: Batch, out: EncoderOutput) -> list[float]:
        return [float(gated_flops(self.model.spec, self.patterns, n)) for n in batch.lengths.tolist()]
