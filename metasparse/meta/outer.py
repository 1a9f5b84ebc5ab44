"""The outer loop: meta-batches of source episodes, inner adaptation on support, outer loss on query.

Outer loss = task loss + budget term (target annealed from dense) + stability term. Validation on
held-out source cells every ``val_every`` steps measures post-adaptation accuracy with hard decisions;
when it falls more than ``restore_margin`` below the best at the same budget target, the best state is
restored and the outer learning rate lowered. Checkpoints (safetensors + JSON, atomic) make the run
resumable: episode ``i`` depends only on ``(seed, i)``, so a resumed run sees the episodes it would have.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from metasparse.checkpoint import load_checkpoint, optimizer_state, restore_optimizer_state, save_checkpoint
from metasparse.config import MetaTrainConfig
from metasparse.config.training import adapt_parts, outer_seed
from metasparse.control.budget import annealed_target
from metasparse.control.relax import anneal_temperature
from metasparse.data.cells import Cell
from metasparse.data.episodes import Episode
from metasparse.data.prepare import DataBundle
from metasparse.distributed import all_reduce_grads, gather_lists, is_main, rank_and_size, shard
from metasparse.errors import NonFiniteError
from metasparse.meta.inner import adapt_learner, validate
from metasparse.meta.maml import MAML, anil
from metasparse.meta.meta_sgd import MetaSGD
from metasparse.meta.reptile import Reptile
from metasparse.meta.sparse_maml import SparseMAML
from metasparse.meta.system import INNER_ONLY_PARTS, GatedSystem, episode_loss, part_of
from metasparse.model.corpus import EncodedRows
from metasparse.tracking import log_scalars

log = logging.getLogger(__name__)


def anil_head(name: str) -> bool:
    """ANIL's inner loop: the controllers' output layers, and the task heads when ``meta.adapt`` trains them."""
    parts = name.split(".")  # controller.nets.<layer>.<module in the Sequential>.<weight|bias>
    # (a substring test for ".2." also caught layer 2's first Linear: "controller.nets.2.0.bias")
    return (parts[:2] == ["controller", "nets"] and parts[3] == "2") or name.startswith("backbone.heads.")


def build_algorithm(system: GatedSystem, cfg: MetaTrainConfig) -> MAML:
    """The configured meta-learner over the parts ``meta.adapt`` names, each at its own inner rate."""
    m = cfg.meta
    system.set_trainable(m.adapt)
    parts = adapt_parts(m.adapt)
    adapt = lambda n: part_of(n) in parts  # noqa: E731
    inner_only = lambda n: part_of(n) in INNER_ONLY_PARTS  # noqa: E731
    kw = {
        "adapt": adapt,
        "inner_only": inner_only,
        "lr_scale": lambda n: m.inner_lr_scale.get(part_of(n), 1.0),
        "inner_optimizer": m.inner_optimizer,
    }
    if m.algorithm == "maml":
        return MAML(system, m.inner_lr, first_order=False, **kw)
    if m.algorithm == "fomaml":
        return MAML(system, m.inner_lr, first_order=True, **kw)
    if m.algorithm == "anil":
        return anil(system, m.inner_lr, head=anil_head, first_order=True)
    if m.algorithm == "metasgd":
        return MetaSGD(system, m.inner_lr, first_order=True, **kw)
    if m.algorithm == "sparse_maml":
        return SparseMAML(system, m.inner_lr, first_order=True, mask_init=m.mask_init, **kw)
    return Reptile(system, m.inner_lr, adapt=adapt, lr_scale=kw["lr_scale"], inner_only=inner_only)


def budget_at(step: int, cfg: MetaTrainConfig) -> float:
    """Target FLOPs fraction at an outer step: 1.0 (dense) annealed linearly to the budget."""
    return annealed_target(step, cfg.meta.steps, cfg.budget.target, cfg.budget.warmup)


@dataclass
class MetaState:
    """What the outer loop carries between steps (saved in checkpoints)."""

    step: int = 0
    outer_lr: float = 0.0
    best_val: float = -math.inf
    best_step: int = -1
    best_target: float | None = None
    restorations: int = 0
    history: list[dict] = field(default_factory=list)
    nonfinite: list[dict] = field(default_factory=list)


def split_validation_cells(
    sources: list[Cell], fraction: float, seed: int, eligible: Callable[[Cell], bool] = lambda c: True
) -> tuple[list[Cell], list[Cell]]:
    """Deterministically hold out ``fraction`` of the source cells for validation, chosen among ``eligible``
    ones (cells big enough for an episode), so validation always has episodes to draw."""
    pool = [c for c in sources if eligible(c)]
    if len(pool) < 2:
        raise ValueError(f"only {len(pool)} source cell(s) are big enough for episodes: no validation cells possible")
    rng = np.random.default_rng([seed, 17])
    order = rng.permutation(len(pool))
    n_val = min(len(pool) - 1, max(1, int(round(fraction * len(sources)))))
    val = sorted(pool[i] for i in order[:n_val])
    return [c for c in sources if c not in set(val)], val


def meta_gradient(
    algo: MAML,
    system: GatedSystem,
    data: EncodedRows,
    episodes: list[tuple[int, Episode]],
    cfg: MetaTrainConfig,
    *,
    target: float,
    tau: float,
) -> list[dict[str, float]]:
    """Accumulate the meta-gradient of ``episodes`` (``(global index, episode)`` pairs, this rank's share)
    into ``.grad``, summed across ranks, scaled as the mean over the whole meta-batch.

    Raises:
        NonFiniteError: an episode's query loss is NaN or infinite (names the episode's cell and index).
    """
    m = cfg.meta
    learners, stats = [], []
    for i, ep in episodes:
        # Gumbel noise of episode i: the same on any rank, and on resume
        torch.manual_seed(outer_seed(cfg) * 100_003 + i)
        learner = adapt_learner(algo, data, ep, cfg, steps=m.inner_steps, target=target, tau=tau, system=system)
        if isinstance(algo, Reptile):
            learners.append(learner)
            continue
        loss, st = episode_loss(
            learner,
            data.batch(ep.query),
            ep.task,
            target=target,
            tau=tau,
            budget_weight=cfg.budget.weight,
            stability_weight=m.stability_weight,
            backbone=system.backbone,
            controller=system.controller,
            cost=system.cost,
        )
        if not torch.isfinite(loss):
            raise NonFiniteError(
                f"query loss {float(loss.detach())} in episode {i} (cell {ep.cell.name}, task {ep.task})"
            )
        (loss / m.meta_batch).backward()
        stats.append(st)
    if learners:
        algo.meta_grads(learners, total=m.meta_batch)
    all_reduce_grads(p for p in algo.parameters() if p.requires_grad)
    return stats


def _save(folder: Path, system: GatedSystem, algo: MAML, opt: torch.optim.Optimizer, state: MetaState) -> None:
    if not is_main():  # every rank holds the same state; one writes it
        return
    params = dict(algo.named_parameters())
    opt_tensors, opt_scalars = optimizer_state(opt, params)
    tensors = {**{f"param.{n}": p for n, p in params.items() if p.requires_grad}, **opt_tensors}
    save_checkpoint(folder, tensors, {"meta_state": state.__dict__, "optimizer_scalars": opt_scalars})


def _load(folder: Path, algo: MAML, opt: torch.optim.Optimizer) -> MetaState:
    tensors, st = load_checkpoint(folder)
    params = dict(algo.named_parameters())
    with torch.no_grad():
        for k, v in tensors.items():
            if k.startswith("param."):
                params[k[6:]].copy_(v)
    trainable = {n: p for n, p in params.items() if p.requires_grad}
    restore_optimizer_state(opt, trainable, tensors, st["optimizer_scalars"])
    state = MetaState(**st["meta_state"])
    for g in opt.param_groups:
        g["lr"] = state.outer_lr
    return state


def _outer_step(algo, system, data, episodes, cfg: MetaTrainConfig, opt, state: MetaState, target, tau) -> list:
    """One meta-gradient step on this rank's share of ``episodes``; a non-finite loss or gradient skips it
    (nothing applied, the last good state kept, recorded in ``state.nonfinite``). Returns the episode stats."""
    m = cfg.meta
    rank, world = rank_and_size()
    trainable = [p for p in algo.parameters() if p.requires_grad]
    opt.zero_grad(set_to_none=True)
    try:
        stats = meta_gradient(algo, system, data, shard(episodes, rank, world), cfg, target=target, tau=tau)
        stats = gather_lists(stats)  # the logged losses cover the whole meta-batch on every rank
        norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        if not torch.isfinite(norm):
            raise NonFiniteError(f"meta-gradient norm is {float(norm)} at outer step {state.step + 1}")
    except NonFiniteError as exc:
        # Stop the step: nothing is applied, the parameters and optimiser state are still the last good
        # ones (the optimiser has not stepped), and the run goes on with the next meta-batch.
        opt.zero_grad(set_to_none=True)
        state.nonfinite.append({"step": state.step + 1, "where": str(exc)})
        log.warning("non-finite value, step skipped and the last good state kept: %s", exc)
        if len(state.nonfinite) > m.max_nonfinite:
            raise NonFiniteError(
                f"{len(state.nonfinite)} non-finite steps (meta.max_nonfinite={m.max_nonfinite}); last: {exc}"
            ) from None
        return []
    opt.step()
    return stats


def _keep_best_or_restore(rec: dict, system, algo, opt, state: MetaState, cfg: MetaTrainConfig, ckpt: Path) -> None:
    """After a validation: save a new best, or restore the best and lower the outer lr on a dip.

    Only validations at the same budget target are compared: while the budget anneals from dense an earlier
    state's higher accuracy is the compute it spent, and the first validation at the final target could
    send the run back to a state from before the budget bit (README, "Validation dips"). Nor is a state
    that spends more than ``meta.best_budget_slack`` over its target (``val_cost``, in the budget's unit)
    compared with any: its accuracy is compute too. At 0.3 of dense latency the decisions stayed near dense
    for tens of steps after the target arrived; such a state was the best, and each time the budget bit the
    run went back to it (two restorations, ending on a near-dense controller; README, "Validation judged on
    budget only").
    """
    m = cfg.meta
    if rec["val_cost"] > rec["target"] * (1.0 + m.best_budget_slack):
        log.info(
            "validation at step %d spends %.3f for a target of %.3f: not compared",
            state.step,
            rec["val_cost"],
            rec["target"],
        )
        return
    if rec["val_acc"] > state.best_val or rec["target"] != state.best_target:
        state.best_val, state.best_step, state.best_target = rec["val_acc"], state.step, rec["target"]
        _save(ckpt / "best", system, algo, opt, state)
    elif rec["val_acc"] < state.best_val - m.restore_margin and (ckpt / "best").exists():
        # Only the parameters and optimiser state go back; the step count keeps going forward.
        restored = _load(ckpt / "best", algo, opt)
        state.outer_lr *= m.restore_lr_factor
        state.restorations += 1
        for g in opt.param_groups:
            g["lr"] = state.outer_lr
        log.warning(
            "validation fell to %.4f (best %.4f at step %d): restored the best state, outer lr -> %g",
            *(rec["val_acc"], restored.best_val, restored.best_step, state.outer_lr),
        )
        rec["restored_from"] = restored.best_step


def meta_train(
    cfg: MetaTrainConfig,
    bundle: DataBundle,
    system: GatedSystem,
    data: EncodedRows,
    out_dir: Path,
    train_cells: list[Cell],
    val_cells: list[Cell],
    resume: Path | None = None,
) -> tuple[MAML, MetaState]:
    """Run the outer loop; checkpoints go to ``out_dir/ckpt/{last,best}``."""
    m = cfg.meta
    algo = build_algorithm(system, cfg)
    opt = torch.optim.Adam([p for p in algo.parameters() if p.requires_grad], lr=m.outer_lr)
    sampler = bundle.sampler(train_cells, cfg.episodes, outer_seed(cfg))
    # validation episodes stay the run's: runs of several meta.seed values are validated alike
    val_eps = bundle.sampler(val_cells, cfg.episodes, cfg.seed, validation=True).take(m.val_episodes)
    state, ckpt = MetaState(outer_lr=m.outer_lr), out_dir / "ckpt"
    if resume is not None:
        state = _load(resume / "ckpt" / "last", algo, opt)
        log.info("resumed meta-training at step %d from %s", state.step, resume)
    bar = tqdm(
        total=m.steps, initial=state.step, desc="meta-train", unit="step", mininterval=5.0, disable=not is_main()
    )
    t0 = time.time()
    while state.step < m.steps:
        step = state.step
        target, tau = budget_at(step, cfg), anneal_temperature(step, m.steps, m.tau_start, m.tau_end)
        first = step * m.meta_batch
        episodes = list(enumerate(sampler.take(m.meta_batch, start=first), start=first))
        stats = _outer_step(algo, system, data, episodes, cfg, opt, state, target, tau)
        state.step += 1
        rec = {"step": state.step, "target": target, "tau": tau, "lr": state.outer_lr}
        rec.update({k: float(np.mean([s[k] for s in stats])) for k in stats[0]} if stats else {})
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k in ("ce", "flops")}, refresh=False)
        if (m.val_every and state.step % m.val_every == 0) or state.step == m.steps:
            rec.update(validate(algo, system, data, val_eps, cfg, step))
            _keep_best_or_restore(rec, system, algo, opt, state, cfg, ckpt)
            log.info("step %d: %s", state.step, {k: round(v, 4) for k, v in rec.items() if isinstance(v, float)})
        state.history.append(rec)
        numbers = {k: v for k, v in rec.items() if isinstance(v, int | float) and k != "step"}
        log_scalars("meta", {**numbers, "restorations": state.restorations}, state.step)
        if state.step % m.checkpoint_every == 0 or state.step == m.steps:
            _save(ckpt / "last", system, algo, opt, state)
    bar.close()
    log.info("meta-training: %d steps in %.1f min", m.steps, (time.time() - t0) / 60)
    return algo, state
