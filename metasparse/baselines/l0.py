"""Static L0 gates (Voita et al. 2019 style): one hard-concrete gate per head and per FFN group, learned
on the frozen backbone with the task loss and a penalty on expected FLOPs; one mask for all inputs.

Hard-concrete (Louizos et al. 2018): ``s = sigmoid((log u - log(1-u) + log_alpha) / beta)`` stretched to
``(l, r)`` and clipped to [0, 1], so gates are exactly 0 or 1 with non-zero probability and the
probability of a non-zero gate, ``sigmoid(log_alpha - beta log(-l/r))``, is differentiable. After
training the units are ranked by ``log_alpha`` and pruned to meet the budget exactly.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from metasparse.baselines.units import UnitCosts, prune_to_budget, reorder_units
from metasparse.control.budget import annealed_target
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import GatedEncoder
from metasparse.model.freeze import frozen
from metasparse.model.loss import task_loss
from metasparse.scoring.methods import StaticMethod

BETA, LEFT, RIGHT = 2.0 / 3.0, -0.1, 1.1


def sample_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """One hard-concrete sample per gate."""
    u = torch.rand_like(log_alpha).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((u.log() - (1 - u).log() + log_alpha) / BETA)
    return (s * (RIGHT - LEFT) + LEFT).clamp(0.0, 1.0)


def prob_nonzero(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(gate != 0), the expected L0 norm per gate."""
    return torch.sigmoid(log_alpha - BETA * math.log(-LEFT / RIGHT))


def train_l0_gates(
    model: GatedEncoder,
    corpus: EncodedCorpus,
    target: float,
    *,
    steps: int = 150,
    lr: float = 0.05,
    weight: float = 20.0,
    max_words: int = 1024,
    seed: int = 0,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Learn ``log_alpha`` per head ``[layers, heads]`` and per FFN group ``[layers, groups]``."""
    torch.manual_seed(seed)
    model.eval()
    L, H, G = model.spec.layers, model.spec.heads, model.spec.ffn_groups
    la_h = torch.full((L, H), 3.0, requires_grad=True)  # start nearly all-on
    la_g = torch.full((L, G), 3.0, requires_grad=True)
    opt = torch.optim.Adam([la_h, la_g], lr=lr)
    costs = UnitCosts.of(model, corpus.lengths())
    with frozen(model):  # the caller's requires_grad flags come back as they were
        order, epoch = [], 0
        for step in tqdm(range(steps), desc=f"l0@{target}", disable=not progress, mininterval=5.0):
            if not order:
                order = corpus.batches(max_words, shuffle=True, seed=seed, epoch=epoch)
                epoch += 1
            batch = corpus.batch(order.pop())
            gh, gg = sample_gates(la_h), sample_gates(la_g)
            out = model.forward_with(
                batch, lambda i, blk, x, m, gh=gh, gg=gg: blk.forward_unit_gated(x, m, gh[i], gg[i])
            )
            frac = (
                costs.head * prob_nonzero(la_h).sum() + costs.group * prob_nonzero(la_g).sum() + costs.fixed
            ) / costs.dense
            goal = annealed_target(step, steps, target, warmup=0.3)
            loss = task_loss(out.logits, batch.labels) + weight * (frac - goal) ** 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return la_h.detach(), la_g.detach()


def l0_pruned(model: GatedEncoder, train: EncodedCorpus, calib: EncodedCorpus, target: float, **kw) -> StaticMethod:
    """The backbone pruned to ``target`` FLOPs by L0 gates learned on ``train``."""
    la_h, la_g = train_l0_gates(model, train, target, **kw)
    kept = prune_to_budget(la_h, la_g, UnitCosts.of(model, calib.lengths()), target, per_flop=False)
    return StaticMethod(reorder_units(model, kept), kept.patterns(), "l0")
