"""One interface for every way of running the backbone, so all of them share one corpus walker.

A :class:`Method` labels a batch and reports, per sentence, the FLOPs it really spent (analytic, as the
engine counts them: controller included for per-input methods, measured non-zeros for activation
sparsity) and, for per-input methods, the codebook pattern it chose per layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from metasparse.model.encoder import EncoderOutput, EncoderSpec, GatedEncoder, Policy
from metasparse.model.features import Batch
from metasparse.model.flops import dense_flops, gated_flops, token_score_flops, word_compute
from metasparse.model.patterns import Pattern


def decision_flops(
    spec: EncoderSpec,
    codebook: Sequence[Pattern],
    levels: torch.Tensor,
    lengths: Sequence[int],
    controller_flops: Callable[[int], int] | None = None,
    running: torch.Tensor | None = None,
) -> list[float]:
    """FLOPs per sentence of hard decisions ``levels`` ``[B, layers]`` (codebook indices), with the
    controller's cost per layer (``n_words -> FLOPs``) when one decided, and ``running`` ``[B, layers]``
    tokens still running at each layer when some exited early."""
    rows = levels.tolist()
    run = running.tolist() if running is not None else [None] * len(rows)
    return [
        float(
            gated_flops(
                spec, [codebook[lv] for lv in rows[b]], n, controller_flops(n) if controller_flops else 0, run[b]
            )
        )
        for b, n in enumerate(lengths)
    ]


@dataclass
class MethodOutput:
    """What one batch cost and produced.

    Attributes:
        logits: task -> ``[B, T, labels]``.
        flops: FLOPs spent per sentence.
        dense_flops: FLOPs the dense model spends per sentence.
        levels: ``[B, layers]`` codebook index per sentence and layer (per-input methods), else None.
        decision_probs: per layer, the policy's pattern probabilities ``[B, patterns]`` (controllers), else
            None.
        token_flops: ``[B, T]`` each word's share of the dense block FLOPs it got (per-layer decisions,
            early exits and token routing included; see :func:`word_compute`), else None.
        exited_at: ``[B, T]`` the layer after which each word exited early, or None when none did.
        token_ffn: ``[B, T]`` the share of layers whose FFN each word passed (see :func:`word_compute`).
    """

    logits: dict[str, torch.Tensor]
    flops: list[float]
    dense_flops: list[float]
    levels: torch.Tensor | None = None
    decision_probs: list[torch.Tensor] | None = None
    token_flops: torch.Tensor | None = None
    exited_at: torch.Tensor | None = None
    token_ffn: torch.Tensor | None = None


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

    def decision_probs(self) -> list[torch.Tensor] | None:
        """The last forward's pattern probabilities per layer, for methods whose policy has them."""
        return None

    @torch.no_grad()
    def __call__(self, batch: Batch) -> MethodOutput:
        self.model.eval()
        out = self.forward(batch)
        levels, per_token, ffn = None, None, None
        spec = self.model.spec
        if out.decisions and all(d is not None for d in out.decisions):
            levels = torch.stack([d.levels for d in out.decisions], dim=1)
            scores = [d.token_scores for d in out.decisions]
            per_token, ffn = word_compute(spec, self.model.codebook, levels, batch.word_mask, out.exited_at, scores)
        return MethodOutput(
            out.logits,
            self.flops(batch, out),
            [float(dense_flops(spec, n)) for n in batch.lengths.tolist()],
            levels,
            self.decision_probs(),
            per_token,
            out.exited_at,
            ffn,
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
        policy_fn: ``record -> policy``: builds a fresh hard policy for one forward; a policy that has
            pattern probabilities appends them to ``record`` (a list), one ``[B, patterns]`` per layer.
        controller_flops: ``n_words -> FLOPs`` the decision costs per layer.
        name: method name.
        decisions_per_forward: controller decisions one forward makes (None: one per layer; 1 for an
            upfront controller), what a latency prediction counts.
    """

    family = "per-input"

    def __init__(
        self,
        model: GatedEncoder,
        policy_fn: Callable[[list], Policy],
        controller_flops: Callable[[int], int],
        name: str,
        decisions_per_forward: int | None = None,
    ) -> None:
        self.model, self.policy_fn, self.controller_flops, self.name = model, policy_fn, controller_flops, name
        self.decisions_per_forward = decisions_per_forward
        self._probs: list[torch.Tensor] = []
        self._record = False

    def forward(self, batch: Batch) -> EncoderOutput:
        """Decisions and labels; the pattern probabilities are recorded only for a report (``__call__``):
        the timed path pays no softmax per layer, which at batch 1 costs about a percent of dense."""
        self._probs = []
        return self.model(batch, self.policy_fn(self._probs if self._record else None))

    def __call__(self, batch: Batch) -> MethodOutput:
        self._record = True
        try:
            return super().__call__(batch)
        finally:
            self._record = False

    def decision_probs(self) -> list[torch.Tensor] | None:
        return self._probs or None

    def flops(self, batch: Batch, out: EncoderOutput) -> list[float]:
        levels = torch.stack([d.levels for d in out.decisions], dim=1)
        return decision_flops(
            self.model.spec,
            self.model.codebook,
            levels,
            batch.lengths.tolist(),
            self.controller_flops,
            out.active_counts,
        )


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


class PlanMethod(Method):
    """One codebook entry per layer for every input, on the backbone as it is (no reordering).

    Args:
        model: the backbone.
        plan: codebook index per layer.
    """

    family = "static"

    def __init__(self, model: GatedEncoder, plan: Sequence[int], name: str = "plan") -> None:
        self.model, self.plan, self.name = model, list(plan), name

    def forward(self, batch: Batch) -> EncoderOutput:
        return self.model(batch, plan=self.plan)

    def flops(self, batch: Batch, out: EncoderOutput) -> list[float]:
        patterns = [self.model.codebook[i] for i in self.plan]
        run = out.active_counts.tolist() if out.active_counts is not None else [None] * batch.size
        lengths = batch.lengths.tolist()
        # a routed pattern's token scores are the UPOS head's entropy on the layer input: one head pass
        scoring = sum(1 for p in patterns if p.tokens < 1.0)
        return [
            float(gated_flops(self.model.spec, patterns, n, 0, r) + scoring * token_score_flops(self.model.spec, n))
            for n, r in zip(lengths, run, strict=True)
        ]
