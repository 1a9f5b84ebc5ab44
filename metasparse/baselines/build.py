"""Build any method for a meta_train run at a FLOPs budget, on the same source sentences for all.

Learned baselines (L0 gates, multitask controller) train on two thirds of the source cells' dev split,
and every method meets its budget on the other third: the backbone has nearly memorised the source
train split, so sentences from it would teach that every input is easy. Evaluation uses source test.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch

from metasparse.baselines.controllers import trained_controller
from metasparse.baselines.importance import importance_pruned
from metasparse.baselines.l0 import l0_pruned
from metasparse.baselines.latency_mix import latency_mixed
from metasparse.baselines.latency_static import latency_pruned
from metasparse.baselines.random_policy import random_calibrated
from metasparse.baselines.teal import teal_calibrated
from metasparse.config import METHODS
from metasparse.control.budget import LatencyCost
from metasparse.control.controller import controlled
from metasparse.control.train import calibrate_bias
from metasparse.meta.load import LoadedRun
from metasparse.model.corpus import EncodedCorpus
from metasparse.runtime.cost_store import load_or_measure
from metasparse.runtime.costs import CostTable
from metasparse.scoring.methods import Dense, Method

log = logging.getLogger(__name__)

FAMILIES = {
    "dense": "dense",
    "meta": "per-input",
    "joint": "per-input",
    "multitask": "per-input",
    "scratch": "per-input",
    "random": "per-input",
    "importance": "static",
    "l0": "static",
    "latency": "static",
    "latency_mix": "per-input",
    "teal": "training-free",
}


@dataclass
class SourceSplits:
    """Encoded source sentences: ``train`` (learned baselines), ``calib`` (budgets), ``test`` (scores)."""

    train: EncodedCorpus
    calib: EncodedCorpus
    test: EncodedCorpus


def source_splits(run: LoadedRun, *, test_sentences: int | None = 2000, calib_sentences: int = 1500, seed: int = 0):
    """Deterministic source splits for ``run`` (a function of ``seed``)."""
    b, idx = run.bundle, run.bundle.index
    sb = run.system.backbone.spec.suffix_buckets
    rng = np.random.default_rng([seed, 5])
    dev = rng.permutation(sorted(int(r) for c in b.sources for r in idx.rows(c, "dev"))).tolist()
    cut = len(dev) * 2 // 3
    calib = sorted(dev[cut:])[:calib_sentences] if calib_sentences else sorted(dev[cut:])
    test = sorted(int(r) for c in b.sources for r in idx.rows(c, "test"))
    if test_sentences and len(test) > test_sentences:
        test = sorted(rng.choice(test, test_sentences, replace=False).tolist())
    build = lambda rows: EncodedCorpus.build(b.dataset, rows, b.tokenizer, b.tasks, sb)  # noqa: E731
    return SourceSplits(build(sorted(dev[:cut])), build(calib), build(test))


def latency_table(run: LoadedRun) -> tuple[CostTable, int]:
    """The cost table and batch size latency-aware baselines are priced by: the run's own when its budget is
    in time, else the backbone's table on this machine (measured on first use) at batch 1."""
    cost = run.system.cost
    if isinstance(cost, LatencyCost):
        return cost.table, cost.batch
    return load_or_measure(run.system.backbone, run.backbone_dir, threads=torch.get_num_threads())[0], 1


def runnable_methods(names: list[str], run: LoadedRun, *, named: list[str]) -> list[str]:
    """``names`` less ``joint`` when ``run``'s backbone had no joint phase and ``joint`` came from ``all``
    rather than from ``named`` (asked for by name, it fails in :func:`build_method` with the reason)."""
    if run.joint_controller is not None or "joint" in named or "joint" not in names:
        return names
    log.info("methods: no joint row, this run's backbone had no joint phase (joint.steps=0)")
    return [n for n in names if n != "joint"]


def build_method(
    name: str, run: LoadedRun, splits: SourceSplits, budget: float, *, steps: int = 300, seed: int = 0
) -> Method:
    """``name`` (one of :data:`METHODS`) for ``run``'s backbone at ``budget``.

    The meta-learned controller is the run's own, its bias re-calibrated on ``splits.calib`` so that it
    meets ``budget`` on the same sentences as every other method; ``joint`` is the controller meta-training
    started from (the joint phase's), on the same backbone and calibrated the same way, so the two rows
    differ only by meta-training's controller. ``steps`` trains the multitask controller and the L0 gates.
    """
    model = run.system.backbone
    if name == "dense":
        return Dense(model)
    if name in ("meta", "joint"):  # joint: meta-training's ablation, where it started, calibrated the same way
        ctrl = run.system.controller if name == "meta" else run.joint_controller
        if ctrl is None:
            raise ValueError(
                "method=joint is the joint phase's controller, and this run's backbone had no joint phase "
                "(joint.steps=0): leave joint out of methods"
            )
        ctrl = copy.deepcopy(ctrl)
        calibrate_bias(model, ctrl, splits.calib, budget, cost=run.system.cost)
        return controlled(model, ctrl, name)
    if name == "multitask":
        spec = run.cfg.controller
        ctrl = trained_controller(
            model, splits.train, splits.calib, budget, spec=spec, steps=steps, seed=seed, cost=run.system.cost
        )
        return controlled(model, ctrl, "multitask")
    if name == "importance":
        return importance_pruned(model, splits.train, splits.calib, budget)
    if name == "l0":
        return l0_pruned(model, splits.train, splits.calib, budget, steps=steps, seed=seed)
    if name in ("latency", "latency_mix"):
        table, batch = latency_table(run)
        if name == "latency_mix":
            return latency_mixed(model, splits.train, splits.calib, budget, table, batch=batch, seed=seed)
        return latency_pruned(model, splits.train, splits.calib, budget, table, batch=batch)
    if name == "teal":
        return teal_calibrated(model, splits.calib, budget)
    if name == "random":
        return random_calibrated(model, splits.calib, budget, seed, cost=run.system.cost)  # the run's unit
    raise ValueError(f"method={name!r}; allowed: {', '.join(METHODS)}")
