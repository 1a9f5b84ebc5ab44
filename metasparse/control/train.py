"""Train a controller on a frozen backbone toward a FLOPs budget (non-episodic, "multitask" training).

Loss = task cross-entropy under relaxed decisions (straight-through Gumbel-softmax on the masked
path, temperature annealed) + ``budget_weight`` x (expected FLOPs fraction - target)^2. The budget
is annealed from dense (1.0) to the target over the first ``budget_warmup`` share of steps, so the
controller first learns which inputs need width, then gives width up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from metasparse.control.budget import (
    CostModel,
    FlopsCost,
    annealed_target,
    budget_penalty,
    decision_fraction,
    expected_fraction,
)
from metasparse.control.controller import Controller, controlled
from metasparse.control.relax import anneal_temperature
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import EncoderOutput, GatedEncoder
from metasparse.model.features import Batch
from metasparse.model.flops import dense_flops
from metasparse.model.freeze import frozen
from metasparse.model.loss import task_loss

log = logging.getLogger(__name__)

MAX_SHIFT = 20.0 * 4**4  # calibration's widest bias shift (logit units per unit of a pattern's width share)


@dataclass
class ControllerTrainConfig:
    """Controller training settings.

    Attributes:
        target: FLOPs budget as a fraction of dense (controller included).
        steps: optimisation steps.
        max_words: padded words per batch.
        lr: Adam learning rate.
        budget_weight: weight of the squared budget gap.
        budget_warmup: share of steps over which the target anneals from 1.0.
        tau_start, tau_end: Gumbel temperature schedule.
    """

    target: float = 0.5
    steps: int = 150
    max_words: int = 1024
    lr: float = 3e-3
    budget_weight: float = 20.0
    budget_warmup: float = 0.3
    tau_start: float = 2.0
    tau_end: float = 0.3


def budgeted_loss(
    backbone: GatedEncoder,
    controller: Controller,
    out: EncoderOutput,
    probs: list[torch.Tensor],
    batch: Batch,
    *,
    target: float,
    budget_weight: float,
    tasks: Iterable[str] | None = None,
    cost: CostModel | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss every controller trainer minimises on a relaxed forward: task cross-entropy plus
    ``budget_weight`` x (expected cost fraction - target)^2, the controller's own cost included.

    Args:
        out, probs: the relaxed forward's output and each layer's pattern probabilities.
        tasks: tasks in the loss (default: every labelled one).
        cost: how decisions are priced (default: analytic FLOPs; or a measured latency table).

    Returns:
        (loss, task cross-entropy, expected cost fraction per sentence ``[B]``).
    """
    ce = task_loss(out.logits, batch.labels, tasks)
    frac = expected_fraction(cost or FlopsCost(backbone), probs, batch.lengths, controller)
    return ce + budget_weight * budget_penalty(frac, target, "square"), ce, frac


def controller_loss(
    model: GatedEncoder,
    ctrl: Controller,
    batch,
    target: float,
    tau: float,
    budget_weight: float,
    cost: CostModel | None = None,
):
    """Non-episodic training's loss on one batch (masked path, Gumbel decisions); returns (loss, fraction)."""
    probs: list[torch.Tensor] = []
    out = model(batch, ctrl.policy(model, hard=False, tau=tau, record=probs), mode="masked")
    loss, _, frac = budgeted_loss(model, ctrl, out, probs, batch, target=target, budget_weight=budget_weight, cost=cost)
    return loss, frac


def train_controller(
    model: GatedEncoder,
    ctrl: Controller,
    corpus: EncodedCorpus,
    cfg: ControllerTrainConfig,
    *,
    seed: int = 0,
    progress: bool = True,
    cost: CostModel | None = None,
) -> list[dict]:
    """Fit ``ctrl`` on ``corpus`` with the backbone frozen (``cost``: how the budget prices decisions,
    default analytic FLOPs); returns the per-step log."""
    model.eval()  # no dropout; the backbone is frozen (and handed back with the caller's flags)
    with frozen(model):
        opt = torch.optim.Adam(ctrl.parameters(), lr=cfg.lr)
        history, epoch, order = [], 0, []
        torch.manual_seed(seed)
        bar = tqdm(range(cfg.steps), desc=f"controller@{cfg.target}", disable=not progress, mininterval=5.0)
        for step in bar:
            if not order:
                order = corpus.batches(cfg.max_words, shuffle=True, seed=seed, epoch=epoch)
                epoch += 1
            batch = corpus.batch(order.pop())
            target = annealed_target(step, cfg.steps, cfg.target, cfg.budget_warmup)
            tau = anneal_temperature(step, cfg.steps, cfg.tau_start, cfg.tau_end)
            loss, frac = controller_loss(model, ctrl, batch, target, tau, cfg.budget_weight, cost)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(
                {"step": step, "loss": float(loss.detach()), "flops": float(frac.mean().detach()), "tau": tau}
            )
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", flops=f"{history[-1]['flops']:.3f}", refresh=False)
    return history


def calibrate_bias(
    model: GatedEncoder,
    ctrl: Controller,
    corpus: EncodedCorpus,
    target: float,
    *,
    max_words: int = 4096,
    iters: int = 12,
    cost: CostModel | None = None,
) -> float:
    """Shift every layer's logits by ``s * flops_share(pattern)`` (bisection on ``s``) so that hard
    decisions on ``corpus`` meet ``target`` in the budget's unit (``cost``; default FLOPs); the relaxed
    training only meets it in expectation."""
    spec = model.spec
    share = torch.tensor([(p.n_heads / spec.heads + p.n_groups / spec.ffn_groups) / 2 for p in model.codebook])
    biases = list(ctrl.decision_biases().values())
    base = [b.detach().clone() for b in biases]

    def shift(s: float) -> None:
        with torch.no_grad():
            for bias, b in zip(biases, base, strict=True):
                bias.copy_(b + s * share.repeat(b.numel() // share.numel()))  # upfront: L x P

    batches = padded_batches(corpus, max_words)  # padded once for every step of the bisection

    def fraction(s: float) -> float:
        shift(s)
        return corpus_fraction(model, ctrl, corpus, cost, batches=batches)

    try:
        lo, hi = _bracket(fraction, target)  # the cost grows with the shift: keep the largest within target
    except ValueError:
        shift(0.0)  # hand the controller back as it came
        raise
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fraction(mid) > target else (mid, hi)
    shift(lo)
    return lo


def _bracket(fraction, target: float) -> tuple[float, float]:
    """Shifts ``(lo, hi)`` around the target, ``fraction(lo) <= target < fraction(hi)`` (or ``hi`` at
    :data:`MAX_SHIFT` when even it stays within target), from (-20, 20) widened 4x at a time while needed.

    Why: a controller's logits can differ by more than a shift of 20 moves them (one trained from scratch
    on the co-trained backbone gave every sentence the 0.75 pattern with margins of 5-31), and a fixed
    bracket then ended the bisection at its edge, over the target, without a word.
    """
    lo, hi = -20.0, 20.0
    while (low := fraction(lo)) > target:
        if lo <= -MAX_SHIFT:
            raise ValueError(
                f"calibration: target {target:.3f} is below the cost of the cheapest decisions the controller "
                f"can be shifted to ({low:.3f} at shift {lo:g}); raise the budget"
            )
        lo, hi = lo * 4, lo
    while hi < MAX_SHIFT and fraction(hi) <= target:
        lo, hi = hi, hi * 4
    return lo, hi


def corpus_fraction(
    model: GatedEncoder,
    ctrl: Controller,
    corpus: EncodedCorpus,
    cost: CostModel | None,
    *,
    max_words: int = 4096,
    batches: list[Batch] | None = None,
) -> float:
    """The controller's hard decisions on ``corpus``: total cost over total dense cost, in ``cost``'s unit
    (FLOPs as the engine counts them when ``cost`` is None or FLOPs; else the latency the table predicts).

    Only the decisions and their cost are computed (no predictions, no per-word shares): the calibration's
    bisection calls this a dozen times, on ``batches`` it padded once (default: ``corpus`` in
    :func:`~metasparse.scoring.score`'s batches, so the sums run in the same order and give the same value).
    """
    if batches is None:
        batches = padded_batches(corpus, max_words)
    method = controlled(model, ctrl)
    by_flops = cost is None or cost.unit == "flops"
    used = dense = 0.0
    model.eval()
    with torch.no_grad():
        for batch in batches:
            out = method.forward(batch)
            if by_flops:
                for u, n in zip(method.flops(batch, out), batch.lengths.tolist(), strict=True):
                    used, dense = used + u, dense + float(dense_flops(model.spec, n))
                continue
            levels = torch.stack([d.levels for d in out.decisions], dim=1)
            parts = cost.parts(batch.lengths, ctrl)
            frac = decision_fraction(cost, levels, batch.lengths, ctrl)
            used += float((frac * parts.dense).sum())
            dense += float(parts.dense.sum())
    return used / dense if dense else float("nan")


def padded_batches(corpus: EncodedCorpus, max_words: int = 4096) -> list[Batch]:
    """``corpus`` padded into the batches :func:`~metasparse.scoring.score` walks, in its order."""
    return [corpus.batch(idx) for idx in corpus.batches(max_words, shuffle=False)]
