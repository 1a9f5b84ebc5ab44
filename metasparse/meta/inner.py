"""The inner loop seen from outside: adapt a clone on an episode's support set, write the adapted
parameters into a system for hard, sliced runs, and validate post-adaptation accuracy and cost."""

from __future__ import annotations

import copy

import numpy as np
import torch

from metasparse.config import MetaTrainConfig
from metasparse.control.relax import anneal_temperature
from metasparse.control.train import corpus_fraction
from metasparse.data.episodes import Episode
from metasparse.meta.maml import MAML
from metasparse.meta.system import GatedSystem, episode_loss, gated_scores
from metasparse.model.corpus import EncodedRows


def adapt_learner(
    algo: MAML,
    data: EncodedRows,
    ep: Episode,
    cfg: MetaTrainConfig,
    *,
    steps: int,
    target: float,
    tau: float,
    system: GatedSystem,
):
    """Clone and run ``steps`` inner steps on the episode's support set."""
    learner = algo.clone()
    sup = data.batch(ep.support)
    for _ in range(steps):
        loss, _ = episode_loss(
            learner,
            sup,
            ep.task,
            target=target,
            tau=tau,
            budget_weight=cfg.budget.weight,
            stability_weight=cfg.meta.stability_weight,
            backbone=system.backbone,
            controller=system.controller,
            cost=system.cost,
        )
        learner.adapt(loss)
    return learner


def materialize(system: GatedSystem, fast: dict[str, torch.Tensor]) -> GatedSystem:
    """A copy of ``system`` with the adapted parameters written in (for hard, sliced evaluation)."""
    shared = {} if any(n.startswith("backbone.") for n in fast) else {id(system.backbone): system.backbone}
    copy_ = copy.deepcopy(system, memo=shared)  # the frozen backbone is shared unless it adapts
    params = dict(copy_.named_parameters())
    with torch.no_grad():
        for n, v in fast.items():
            params[n].copy_(v.detach())
    return copy_.eval()


def validate(
    algo: MAML, system: GatedSystem, data: EncodedRows, episodes: list[Episode], cfg: MetaTrainConfig, step: int
) -> dict[str, float]:
    """Post-adaptation query accuracy, FLOPs and cost on validation episodes (hard decisions).

    ``val_cost`` is in the budget's unit (the table's predicted latency under ``budget.unit=latency``,
    else FLOPs): what the outer loop compares with the budget target before it compares accuracies."""
    accs, flops, costs = [], [], []
    tau = anneal_temperature(step, cfg.meta.steps, cfg.meta.tau_start, cfg.meta.tau_end)
    for ep in episodes:
        learner = adapt_learner(
            algo, data, ep, cfg, steps=cfg.meta.inner_steps, target=cfg.budget.target, tau=tau, system=system
        )
        adapted = materialize(system, learner.fast)
        query = data.subset(ep.query)
        s = gated_scores(adapted, query)
        tasks = [ep.task] if isinstance(ep.task, str) else list(ep.task)
        accs.append(float(np.mean([s.accuracy[t] for t in tasks])))  # a joint episode: the mean over its tasks
        flops.append(s.flops_fraction)
        costs.append(corpus_fraction(adapted.backbone, adapted.controller, query, system.cost))
    return {"val_acc": float(np.mean(accs)), "val_flops": float(np.mean(flops)), "val_cost": float(np.mean(costs))}
