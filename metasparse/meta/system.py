"""Backbone + controller as one module, and the episode loss the inner and outer loops minimise."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metasparse.control.controller import Controller, controlled
from metasparse.control.train import budgeted_loss
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import EncoderOutput, GatedEncoder
from metasparse.model.features import Batch
from metasparse.scoring import Dense, Scores, score

ADAPT_PREFIXES = {
    "controller": ("controller.",),
    "controller+head": ("controller.", "backbone.heads."),
    "controller+head+norm": ("controller.", "backbone.heads.", "backbone.final_ln.", "backbone.emb_ln."),
}


class GatedSystem(nn.Module):
    """One module so that ``torch.func.functional_call`` can swap whichever parameters adapt.

    Args:
        backbone: the pretrained gated encoder (frozen except what ``adapt`` names).
        controller: the per-layer controllers.
    """

    def __init__(self, backbone: GatedEncoder, controller: Controller) -> None:
        super().__init__()
        self.backbone, self.controller = backbone, controller

    def forward(self, batch: Batch, hard: bool = False, tau: float = 1.0, record: list | None = None) -> EncoderOutput:
        policy = self.controller.policy(self.backbone, hard=hard, tau=tau, record=record)
        return self.backbone(batch, policy, mode="sliced" if hard else "masked")

    def set_trainable(self, adapt: str) -> list[str]:
        """Freeze everything except the parameter groups of ``adapt``; returns the trainable names."""
        prefixes = ADAPT_PREFIXES[adapt]
        names = []
        for n, p in self.named_parameters():
            p.requires_grad_(
                n.startswith(prefixes) and not (n.startswith("backbone.") and "ln" in n and "norm" not in adapt)
            )
            if p.requires_grad:
                names.append(n)
        return names


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
) -> tuple[torch.Tensor, dict[str, float]]:
    """Task loss + budget + stability on one batch, run through ``f`` (a system or a learner)."""
    probs: list[torch.Tensor] = []
    out = f(batch, hard=False, tau=tau, record=probs)
    tasks = [task] if isinstance(task, str) else task
    loss, ce, frac = budgeted_loss(
        backbone, controller, out, probs, batch, target=target, budget_weight=budget_weight, tasks=tasks
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
