"""Dense, zero-shot and few-step-adapted accuracy and FLOPs per cell, with the learning curve."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from metasparse.config import MetaTrainConfig
from metasparse.control.train import calibrate_bias
from metasparse.data.cells import Cell, CellIndex
from metasparse.meta.adapted import adapted_dir, save_adapted
from metasparse.meta.inner import materialize
from metasparse.meta.maml import MAML
from metasparse.meta.system import GatedSystem, dense_scores, episode_loss, gated_scores
from metasparse.model.corpus import EncodedRows
from metasparse.model.loss import task_loss
from metasparse.scoring import score as score_method


def support_rows(index: CellIndex, cell: Cell, shots: int, seed: int) -> list[int]:
    """``shots`` train sentences of a cell, fixed by the seed and the cell (fewer if the cell is smaller)."""
    rows = index.rows(cell, "train")
    if len(rows) == 0:
        rows = index.rows(cell, "dev")
    rng = np.random.default_rng([seed, zlib.crc32(cell.name.encode())])
    return sorted(int(r) for r in rng.choice(rows, min(shots, len(rows)), replace=False))


def calibration_rows(pool, support: list[int], extra: int, seed: int) -> list[int]:
    """The sentences an adapted controller is re-calibrated to the budget on: the support set plus ``extra``
    other sentences of ``pool`` (the target's train split, used unlabelled), drawn by ``seed``."""
    rest = sorted(set(int(r) for r in pool) - set(support))
    rng = np.random.default_rng([seed, 29])
    more = rng.choice(rest, min(extra, len(rest)), replace=False).tolist() if rest and extra else []
    return sorted(set(support) | {int(r) for r in more})


def target_seed(seed: int, target: str) -> int:
    """The random state of one target's adaptation: fixed by the run's seed and the target's name alone, so
    a resumed run, another order of targets or another process adapts it identically."""
    return int(np.random.default_rng([seed, zlib.crc32(target.encode())]).integers(2**62))


def adapt_and_score(
    algo: MAML,
    system: GatedSystem,
    data: EncodedRows,
    support: list[int],
    test: list[int],
    tasks: list[str],
    cfg: MetaTrainConfig,
    *,
    steps: int,
    seed: int,
    curve: bool = False,
    score_at: set[int] | None = None,
    calib: list[int] | None = None,
) -> dict:
    """The one inner loop: adapt a clone on ``support`` for ``steps`` steps and score hard decisions on
    ``test`` (meta_train's targets, ``adapt`` and bench.transfer all call it).

    Args:
        seed: the random state of this adaptation (see :func:`target_seed`); nothing else is read.
        curve: also score after every step (or only after the steps in ``score_at``: scoring every step
            would be the expensive part).
        calib: the sentences a gated system is re-calibrated to the budget on after adapting (their labels
            are never read; default: the support set, see :func:`calibration_rows`).

    A :class:`GatedSystem` adapts on the episode loss (task + budget + stability) and is re-calibrated to
    the budget on the support set after adapting; a :class:`FixedSystem` (dense or statically pruned: the
    fine-tuning baselines) adapts on the task loss alone, with the same parameter set, steps and support.

    Returns:
        ``final`` (accuracy per task, FLOPs), ``curve`` and ``system``: the adapted system (calibrated).
    """
    torch.manual_seed(seed)
    # adapt.lr rescales the inner rates instead of replacing them, so Meta-SGD keeps its learned per-element rates
    scale = cfg.adapt.lr / cfg.meta.inner_lr if cfg.adapt.lr else 1.0
    learner = algo.clone(first_order=True, lr_scale=scale)
    sup = data.batch(support)
    points, last = [], {}

    gated = isinstance(system, GatedSystem)

    def score(step: int) -> dict:
        adapted = materialize(system, learner.fast)
        if cfg.adapt.calibrate and step > 0 and gated:
            calibrate_bias(
                adapted.backbone, adapted.controller, data.subset(calib or support), cfg.budget.target, cost=system.cost
            )
        s = score_method(adapted.method(), data.subset(test))
        last["system"] = adapted
        return {"step": step, "acc": s.accuracy[tasks[0]], "flops": s.flops_fraction, "by_task": dict(s.accuracy)}

    want = (lambda k: score_at is None or k in score_at) if curve else (lambda k: False)  # noqa: E731
    if want(0):
        points.append(score(0))
    for s in range(steps):
        learner.adapt(_support_loss(learner, sup, tasks, cfg, system, gated))
        if want(s + 1):
            points.append(score(s + 1))
    final = points[-1] if points and points[-1]["step"] == steps else score(steps)
    return {"final": final, "curve": points, "system": last["system"]}


def _support_loss(learner, sup, tasks: list[str], cfg: MetaTrainConfig, system, gated: bool):
    if not gated:  # a fixed structure: the task loss alone
        return task_loss(learner(sup).logits, sup.labels, tasks)
    loss, _ = episode_loss(
        learner,
        sup,
        tasks,
        target=cfg.budget.target,
        tau=cfg.meta.tau_end,
        budget_weight=cfg.budget.weight,
        stability_weight=cfg.meta.stability_weight,
        backbone=system.backbone,
        controller=system.controller,
        cost=system.cost,
    )
    return loss


def evaluate_cell(algo, system, data, index, cell, cfg: MetaTrainConfig, *, adapt: bool, save_under=None) -> dict:
    """The metrics.json entry of one cell; with ``save_under`` (a run dir) the adapted target is saved there
    (see :mod:`metasparse.meta.adapted`)."""
    tasks = list(cfg.episodes.tasks)
    test = [int(r) for r in index.rows(cell, "test")]
    if cfg.adapt.max_test_sentences:
        test = test[: cfg.adapt.max_test_sentences]
    corpus = data.subset(test)
    dense, zero = dense_scores(system, corpus).accuracy, gated_scores(system, corpus)
    entry = {
        "dense_acc": dense[tasks[0]],
        "zero_shot_acc": zero.accuracy[tasks[0]],
        "zero_shot_flops": zero.flops_fraction,
        "test_sentences": len(test),
        "by_task": {t: {"dense_acc": dense[t], "zero_shot_acc": zero.accuracy[t]} for t in tasks},
    }
    if adapt:
        sup = support_rows(index, cell, cfg.adapt.shots, cfg.seed)
        seed = target_seed(cfg.seed, cell.name)
        calib = calibration_rows(index.rows(cell, "train"), sup, cfg.adapt.calibrate_sentences, seed)
        res = adapt_and_score(algo, system, data, sup, test, tasks, cfg, steps=cfg.adapt.steps, seed=seed, calib=calib)
        entry.update(
            adapted_acc=res["final"]["acc"], adapted_flops=res["final"]["flops"], steps=cfg.adapt.steps, shots=len(sup)
        )
        if save_under is not None:
            info = {"cell": cell.name, "support": sup, "steps": cfg.adapt.steps, "seed": seed, "final": res["final"]}
            save_adapted(adapted_dir(save_under, cell.name), res["system"], system, algo.adapt_names, info)
        for t in tasks:
            entry["by_task"][t]["adapted_acc"] = res["final"]["by_task"][t]
    return entry
