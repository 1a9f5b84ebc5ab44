"""Backbone + controller as one module, and the episode loss the inner and outer loops minimise."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from metasparse.config.training import adapt_parts
from metasparse.control.budget import CostModel
from metasparse.control.controller import Controller, controlled
from metasparse.control.train import budgeted_loss
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import EncoderOutput, GatedEncoder
from metasparse.model.features import Batch
from metasparse.model.patterns import Pattern
from metasparse.scoring import Dense, Method, Scores, StaticMethod, score

EMBEDDING_TABLES = tuple(
    f"backbone.{t}_emb." for t in ("subword", "word", "suffix", "first_piece", "last_piece")
)  # the row-sparse tables (the last two only with ``model.piece_ends``)
# What each adaptable part (config.ADAPT_PARTS) holds, by parameter name.
ADAPT_PARTS: dict[str, Callable[[str], bool]] = {
    "controller": lambda n: n.startswith("controller."),
    "adapters": lambda n: ".adapter." in n,
    "heads": lambda n: n.startswith("backbone.heads."),
    "norms": lambda n: n.startswith(("backbone.emb_ln.", "backbone.final_ln.")) or n.split(".")[-2] in ("ln1", "ln2"),
    "embeddings": lambda n: n.startswith(EMBEDDING_TABLES),
}
# Adapted from the backbone's values in every inner loop, never meta-learned (see MAML's ``inner_only``).
INNER_ONLY_PARTS = ("embeddings",)


def part_of(name: str) -> str | None:
    """The adaptable part a parameter belongs to (None: never adapted)."""
    return next((part for part, test in ADAPT_PARTS.items() if test(name)), None)


class GatedSystem(nn.Module):
    """One module so that ``torch.func.functional_call`` can swap whichever parameters adapt.

    Args:
        backbone: the pretrained gated encoder (frozen except what ``adapt`` names).
        controller: the per-layer controllers.
    """

    def __init__(self, backbone: GatedEncoder, controller: Controller, cost: CostModel | None = None) -> None:
        super().__init__()
        self.backbone, self.controller = backbone, controller
        self.cost = cost  # how the budget prices decisions (None: analytic FLOPs)

    def forward(self, batch: Batch, hard: bool = False, tau: float = 1.0, record: list | None = None) -> EncoderOutput:
        policy = self.controller.policy(self.backbone, hard=hard, tau=tau, record=record)
        return self.backbone(batch, policy, mode="sliced" if hard else "masked")

    def set_trainable(self, adapt: str) -> list[str]:
        """Freeze everything except the meta-learned parts of ``adapt`` (inner-only parts stay frozen: the
        inner loop adapts copies of them); returns the trainable names."""
        parts = [p for p in adapt_parts(adapt) if p not in INNER_ONLY_PARTS]
        names = []
        for n, p in self.named_parameters():
            p.requires_grad_(part_of(n) in parts)
            if p.requires_grad:
                names.append(n)
        return names

    def method(self) -> Method:
        """How the system is scored: the controller's hard decisions, sliced."""
        return controlled(self.backbone, self.controller)


class FixedSystem(nn.Module):
    """A backbone whose structure does not depend on the input: dense (``patterns`` None) or one pruned
    pattern per layer (static pruning, on a unit-reordered copy whose kept units come first). What the
    fine-tuning baselines adapt through the same inner loop as :class:`GatedSystem`.

    Args:
        backbone: the encoder (with pathway adapters attached if they adapt).
        patterns: one pattern per layer, or None for every unit on.
        name: the method name its scores carry.
    """

    def __init__(self, backbone: GatedEncoder, patterns: list[Pattern] | None = None, name: str = "dense") -> None:
        super().__init__()
        self.backbone, self.patterns, self.name = backbone, patterns, name

    def forward(self, batch: Batch, **_) -> EncoderOutput:
        if self.patterns is None:
            return self.backbone(batch)
        return self.backbone.forward_with(batch, lambda i, b, x, m: b.forward_sliced(x, m, self.patterns[i], None))

    def method(self) -> Method:
        """How the system is scored: dense, or its static structure."""
        return Dense(self.backbone) if self.patterns is None else StaticMethod(self.backbone, self.patterns, self.name)


@torch.no_grad()
def gated_scores(system: GatedSystem, corpus: EncodedCorpus) -> Scores:
    """The system's hard decisions on ``corpus`` through the one walker (accuracy, FLOPs with the
    controller's cost)."""
    return score(controlled(system.backbone, system.controller), corpus)


@torch.no_grad()
def dense_scores(system: GatedSystem, corpus: EncodedCorpus) -> Scores:
    """The system's backbone with every unit on."""
    return score(Dense(system.backbone), corpus)


def stability_term(probs: list[torch.Tensor], pooled: torch.Tensor) -> torch.Tensor:
    """Similar inputs should take similar pathways: similarity-weighted squared distance of the pattern
    distributions, averaged over layers (reduces oscillation between active and inactive units)."""
    if pooled.shape[0] < 2:
        return pooled.new_zeros(())
    z = F.normalize(pooled.detach(), dim=-1)
    sim = (z @ z.T).clamp(min=0).fill_diagonal_(0)
    dist = sum(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1) for p in probs) / len(probs)
    return (sim * dist).sum() / sim.sum().clamp(min=1e-8)


def episode_loss(
    f,
    batch: Batch,
    task: str | list[str],
    *,
    target: float,
    tau: float,
    budget_weight: float,
    stability_weight: float,
    backbone: GatedEncoder,
    controller: Controller,
    cost: CostModel | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Task loss + budget + stability on one batch, run through ``f`` (a system or a learner); ``cost``
    prices the decisions (None: analytic FLOPs)."""
    probs: list[torch.Tensor] = []
    out = f(batch, hard=False, tau=tau, record=probs)
    tasks = [task] if isinstance(task, str) else task
    loss, ce, frac = budgeted_loss(
        backbone, controller, out, probs, batch, target=target, budget_weight=budget_weight, tasks=tasks, cost=cost
    )
    m = batch.word_mask.to(out.hidden.dtype)
    pooled = (out.hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
    stab = stability_term(probs, pooled)
    loss = loss + stability_weight * stab
    return loss, {
        "ce": float(ce.detach()),
        "flops": float(frac.mean().detach()),
        "stability": float(stab.detach()),
    }
