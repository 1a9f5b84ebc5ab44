"""The starting points few-step adaptation is compared from, each adapting the run's own parameter set.

* ``meta``: the run's meta-learned system (controller, adapters, heads, norms as meta-training left them).
* ``multitask-ft``: the same parameters trained non-episodically on the same source episodes (the outer
  loop with no inner step: its gradient is the plain multi-task gradient at the shared initialisation).
* ``dense-ft``: the pretrained backbone with every unit on and adapters at zero: the accuracy ceiling at
  full compute.
* ``static-ft``: the pretrained backbone pruned to the budget by unit importance, adapters at zero.
* ``scratch``: a fresh controller (calibrated to the budget on source sentences), adapters at zero.

Every baseline adapts exactly the run's ``meta.adapt`` parts (without the controller when it has none),
with the same K, steps and loss, at its own inner learning rate chosen on the run's source validation
cells (:func:`choose_lr_scale`), never on a target.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import numpy as np
import torch

from metasparse.config import MetaTrainConfig, adapt_parts
from metasparse.data.cells import Cell
from metasparse.data.episodes import EpisodeConfig
from metasparse.meta.evaluation import adapt_and_score, target_seed
from metasparse.meta.maml import MAML
from metasparse.meta.system import FixedSystem, GatedSystem, part_of
from metasparse.model.corpus import EncodedRows

log = logging.getLogger(__name__)


# (system, algorithm) for a seed; the algorithm's rates are the run's, scaled by ``lr_scale`` at adaptation.
Start = Callable[[int], tuple[torch.nn.Module, MAML]]


def baseline_algorithm(system: torch.nn.Module, cfg: MetaTrainConfig) -> MAML:
    """The run's adapt set on ``system`` (no controller part for a fixed structure) at the run's per-part
    rates; nothing is meta-learned, so every part adapts from a detached copy."""
    gated = isinstance(system, GatedSystem)
    parts = [p for p in adapt_parts(cfg.meta.adapt) if gated or p != "controller"]
    if not parts:
        raise ValueError(f"meta.adapt={cfg.meta.adapt!r} leaves nothing to fine-tune without a controller")
    in_set = lambda n: part_of(n) in parts  # noqa: E731
    scale = lambda n: cfg.meta.inner_lr_scale.get(part_of(n), 1.0)  # noqa: E731
    for p in system.parameters():
        p.requires_grad_(False)
    return MAML(
        system,
        cfg.meta.inner_lr,
        first_order=True,
        adapt=in_set,
        inner_only=in_set,
        lr_scale=scale,
        inner_optimizer=cfg.meta.inner_optimizer,
    )


def fresh_backbone(loaded, seed: int):
    """A copy of the pretrained backbone with the run's adapters at their initial values (if it uses any)."""
    from metasparse.meta.load import attach_initial_adapters

    return attach_initial_adapters(copy.deepcopy(loaded.pretrained), loaded.cfg, seed)


def source_cells(loaded) -> tuple[list[Cell], list[Cell]]:
    """The run's meta-training and validation cells (recomputed exactly as the run split them)."""
    from metasparse.meta.outer import split_validation_cells

    cfg, b = loaded.cfg, loaded.bundle
    e, idx = cfg.episodes, b.index
    return split_validation_cells(
        b.sources, cfg.meta.val_fraction, cfg.seed, eligible=lambda c: idx.sentences(c, e.split) >= e.shots + e.queries
    )


def validation_cells(loaded) -> list[Cell]:
    """The source cells the run held out for validation."""
    return source_cells(loaded)[1]


def choose_lr_scale(
    start: Start, loaded, *, shots: int, steps: int, grid: list[float], episodes: int, tasks: list[str]
) -> tuple[float, dict[float, float]]:
    """The multiple of the run's inner rates that adapts best on source validation episodes (K=``shots``,
    ``steps`` steps, query accuracy macro over ``tasks``). Only the run's validation cells are read.

    Returns:
        (best scale, scale -> mean query accuracy).
    """
    cfg, b = loaded.cfg, loaded.bundle
    ecfg = EpisodeConfig(tasks=list(tasks), shots=shots, queries=cfg.episodes.queries, split=cfg.episodes.split)
    eps = b.sampler(validation_cells(loaded), ecfg, cfg.seed, validation=True).take(episodes)
    rows = sorted({r for ep in eps for r in (*ep.support, *ep.query)})
    data = EncodedRows.build(b.dataset, rows, b.tokenizer, b.tasks, loaded.pretrained.spec.suffix_buckets)
    found = {}
    for scale in grid:
        accs, run_cfg = [], _with_lr(cfg, scale)
        for ep in eps:
            system, algo = start(ep.index)
            res = adapt_and_score(
                algo, system, data, list(ep.support), list(ep.query), list(tasks), run_cfg, steps=steps, seed=ep.index
            )
            accs.append(np.mean([res["final"]["by_task"][t] for t in tasks]))
        found[scale] = float(np.mean(accs))
    best = max(grid, key=lambda s: found[s])
    return best, found


def _with_lr(cfg: MetaTrainConfig, scale: float) -> MetaTrainConfig:
    """The run's config with ``adapt.lr`` = ``scale`` x its inner rate (adapt_and_score rescales by it)."""
    out = copy.deepcopy(cfg)
    out.adapt.lr = cfg.meta.inner_lr * scale
    return out


def starting_points(loaded, methods: list[str], *, calib, train, budget: float) -> dict[str, Start]:
    """``method -> seed -> (system, algorithm)`` for each of ``methods`` (see the module docstring)."""
    from metasparse.baselines.importance import importance_pruned
    from metasparse.control.train import calibrate_bias
    from metasparse.meta.load import attach_initial_adapters, new_controller

    cfg, out = loaded.cfg, {}
    if "meta" in methods:
        out["meta"] = lambda seed: (loaded.system, loaded.algo)
    if "dense-ft" in methods:

        def dense(seed: int):
            system = FixedSystem(fresh_backbone(loaded, seed), None, "dense-ft")
            return system, baseline_algorithm(system, cfg)

        out["dense-ft"] = dense
    if "static-ft" in methods:
        pruned = importance_pruned(loaded.pretrained, train, calib, budget)

        def static(seed: int):
            model = attach_initial_adapters(copy.deepcopy(pruned.model), cfg, seed)
            system = FixedSystem(model, pruned.patterns, "static-ft")
            return system, baseline_algorithm(system, cfg)

        out["static-ft"] = static
    if "scratch" in methods:

        def scratch(seed: int):
            model = fresh_backbone(loaded, seed)
            torch.manual_seed(seed)
            system = GatedSystem(model, new_controller(model, cfg), loaded.system.cost)
            calibrate_bias(model, system.controller, calib, budget, iters=8, cost=system.cost)
            return system, baseline_algorithm(system, cfg)

        out["scratch"] = scratch
    if "multitask-ft" in methods:
        system = multitask_system(loaded, calib, budget)
        algo = baseline_algorithm(system, cfg)
        out["multitask-ft"] = lambda seed: (system, algo)
    return out


def multitask_system(loaded, calib, budget: float) -> GatedSystem:
    """The run's trainable parts trained non-episodically on the same source episodes: the run's outer loop
    with no inner step (so the update is the plain gradient of the query loss at the shared parameters)."""
    import tempfile
    from pathlib import Path

    from metasparse.control.train import calibrate_bias
    from metasparse.meta.load import new_system
    from metasparse.meta.outer import meta_train

    cfg = copy.deepcopy(loaded.cfg)
    cfg.meta.inner_steps = 0
    b, e = loaded.bundle, cfg.episodes
    idx = b.index
    train_cells, val_cells = source_cells(loaded)
    rows = sorted({int(r) for c in train_cells + val_cells for r in idx.rows(c, e.split)})
    data = EncodedRows.build(b.dataset, rows, b.tokenizer, b.tasks, loaded.pretrained.spec.suffix_buckets)
    system = new_system(copy.deepcopy(loaded.pretrained), cfg, cost=loaded.system.cost)
    with tempfile.TemporaryDirectory() as tmp:
        meta_train(cfg, b, system, data, Path(tmp), train_cells, val_cells)
    calibrate_bias(system.backbone, system.controller, calib, budget, cost=system.cost)
    return system.eval()


def adapt_curve(
    start: Start, lr_scale: float, loaded, data, support, test, tasks, *, steps, score_at, seed, target, calib=None
):
    """One adaptation curve from a starting point, seeded by (seed, target); a gated system is re-calibrated
    on ``calib`` (unlabelled target sentences, default the support set)."""
    system, algo = start(seed)
    return adapt_and_score(
        algo,
        system,
        data,
        support,
        test,
        tasks,
        _with_lr(loaded.cfg, lr_scale),
        steps=steps,
        seed=target_seed(seed, target),
        curve=True,
        score_at=score_at,
        calib=calib,
    )
