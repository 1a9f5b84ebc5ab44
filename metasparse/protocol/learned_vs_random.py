"""Learned against random per-input decisions at the same budget, on one backbone: the check that the
controller's choices are worth something (Mixture-of-Depths: learned beats random only where the model
co-adapts to the router)."""

from __future__ import annotations

import copy

import numpy as np

from metasparse.baselines.random_policy import random_calibrated
from metasparse.control.controller import Controller, controlled
from metasparse.control.train import calibrate_bias
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import GatedEncoder
from metasparse.scoring import Dense, score
from metasparse.train.pretraining import _rows


def source_corpora(bundle, suffix_buckets: int, *, calib: int = 1500, test: int = 2000, seed: int = 0):
    """Seeded samples: source dev sentences a controller on a frozen backbone trains on (the backbone has
    nearly memorised its train split), other source dev sentences every method meets the budget on, and
    source test sentences to score. Returns (train, calib, test)."""
    rng = np.random.default_rng(seed)
    dev = rng.permutation(_rows(bundle, "dev")).tolist()
    test_rows = _rows(bundle, "test")
    pick = sorted(rng.choice(test_rows, min(test, len(test_rows)), replace=False).tolist())

    def build(rows) -> EncodedCorpus:
        return EncodedCorpus.build(bundle.dataset, sorted(rows), bundle.tokenizer, bundle.tasks, suffix_buckets)

    n_calib = min(calib, len(dev) // 3)
    return build(dev[n_calib:]), build(dev[:n_calib]), build(pick)


def learned_vs_random(
    model: GatedEncoder, ctrl: Controller, calib: EncodedCorpus, test: EncodedCorpus, target: float, seed: int = 0
) -> dict:
    """Macro-over-languages accuracy and FLOPs of dense, the controller (bias calibrated on ``calib`` to
    ``target``) and random per-input decisions calibrated to the same target, on ``test``."""
    learned = copy.deepcopy(ctrl)
    calibrate_bias(model, learned, calib, target)
    rows = {
        "dense": score(Dense(model), test),
        "learned": score(controlled(model, learned, "learned"), test),
        "random": score(random_calibrated(model, calib, target, seed), test),
    }
    out = {name: {**s.macro_langs, "flops": s.flops_fraction} for name, s in rows.items()}
    out["learned_minus_random"] = {t: out["learned"][t] - out["random"][t] for t in rows["dense"].tasks}
    out["target"], out["sentences"] = target, len(test)
    return out


def frozen_backbone_comparison(
    model: GatedEncoder, spec, train: EncodedCorpus, calib: EncodedCorpus, test: EncodedCorpus, target: float, seed=0
) -> dict:
    """The same comparison on a backbone that never saw a controller: a multitask controller trained on it
    frozen (300 steps, as ``evaluate``'s ``multitask``) against random decisions."""
    from metasparse.baselines.controllers import trained_controller

    ctrl = trained_controller(model, train, calib, target, spec=spec, steps=300, seed=seed)
    return learned_vs_random(model, ctrl, calib, test, target, seed)


def format_comparison(r: dict, title: str = "Joint phase: learned vs random") -> str:
    tasks = [t for t in r["dense"] if t != "flops"]
    lines = [
        f"## {title} per-input decisions at FLOPs {r['target']} ({r['sentences']} source "
        "test sentences, macro over languages)",
        "",
        "| decisions | FLOPs | " + " | ".join(tasks) + " |",
        "|---|---:|" + "---:|" * len(tasks),
    ]
    for name in ("dense", "learned", "random"):
        v = r[name]
        lines.append(f"| {name} | {v['flops']:.3f} | " + " | ".join(f"{100 * v[t]:.1f}" for t in tasks) + " |")
    d = r["learned_minus_random"]
    lines.append("| learned - random | | " + " | ".join(f"{100 * d[t]:+.1f}" for t in tasks) + " |")
    return "\n".join(lines) + "\n"
