"""Dense, zero-shot and few-step-adapted accuracy and FLOPs per cell, with the learning curve."""

from __future__ import annotations

import zlib

import numpy as np

from metasparse.config import MetaTrainConfig
from metasparse.control.train import calibrate_bias
from metasparse.data.cells import Cell, CellIndex
from metasparse.meta.maml import MAML
from metasparse.meta.outer import materialize
from metasparse.meta.system import GatedSystem, dense_scores, episode_loss, gated_scores
from metasparse.model.corpus import EncodedRows


def support_rows(index: CellIndex, cell: Cell, shots: int, seed: int) -> list[int]:
    """``shots`` train sentences of a cell, fixed by the seed and the cell (fewer if the cell is smaller)."""
    rows = index.rows(cell, "train")
    if len(rows) == 0:
        rows = index.rows(cell, "dev")
    rng = np.random.default_rng([seed, zlib.crc32(cell.name.encode())])
    return sorted(int(r) for r in rng.choice(rows, min(shots, len(rows)), replace=False))


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
    curve: bool = False,
    score_at: set[int] | None = None,
) -> dict:
    """Adapt a clone on ``support`` for ``steps`` steps and score hard decisions on ``test``.

    Returns the final accuracy per task and FLOPs, and with ``curve`` the same after every step (or only
    after the steps in ``score_at``, which scoring every step would make the expensive part).
    """
    # adapt.lr rescales the inner rates instead of replacing them, so Meta-SGD keeps its learned per-element rates
    scale = cfg.adapt.lr / cfg.meta.inner_lr if cfg.adapt.lr else 1.0
    learner = algo.clone(first_order=True, lr_scale=scale)
    sup = data.batch(support)
    points = []

    def score(step: int) -> dict:
        adapted = materialize(system, learner.fast)
        if cfg.adapt.calibrate and step > 0:
            calibrate_bias(adapted.backbone, adapted.controller, data.subset(support), cfg.budget.target, iters=8)
        s = gated_scores(adapted, data.subset(test))
        return {
            "step": step,
            "acc": s.accuracy[tasks[0]],
            "flops": s.flops_fraction,
            "by_task": {t: s.accuracy[t] for t in tasks},
        }

    want = (lambda k: score_at is None or k in score_at) if curve else (lambda k: False)  # noqa: E731
    if want(0):
        points.append(score(0))
    for s in range(steps):
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
        )
        learner.adapt(loss)
        if want(s + 1):
            points.append(score(s + 1))
    final = points[-1] if points and points[-1]["step"] == steps else score(steps)
    return {"final": final, "curve": points}


def evaluate_cell(algo, system, data, index, cell, cfg: MetaTrainConfig, *, adapt: bool) -> dict:
    """The metrics.json entry of one cell."""
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
        res = adapt_and_score(algo, system, data, sup, test, tasks, cfg, steps=cfg.adapt.steps)
        entry.update(
            adapted_acc=res["final"]["acc"], adapted_flops=res["final"]["flops"], steps=cfg.adapt.steps, shots=len(sup)
        )
        for t in tasks:
            entry["by_task"][t]["adapted_acc"] = res["final"]["by_task"][t]
    return entry
