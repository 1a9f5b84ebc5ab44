"""Few-step transfer: adaptation curves of meta-learned vs multitask vs scratch controllers, and accuracy
against FLOPs for every method.

    python -m metasparse.bench.transfer 'run_dirs=[<legal run>,<held-out languages run>]' out=bench/transfer
    python -m metasparse.bench.transfer 'run_dirs=[<run>]' experiment=quick out=/tmp/transfer

For every run and target cell, every controller is adapted on K support sentences of the cell (its train
split) with the run's own inner loop (same steps, learning rate, loss and re-calibration for all three),
and scored with hard decisions on the cell's test split after each of ``steps``; a scratch controller
trained to convergence on the cell's whole train split gives the ceiling. Intervals are 95% t-intervals
over seeds of the macro average over cells. The accuracy-FLOPs comparison runs every method of
:mod:`metasparse.baselines` at each budget on the source test cells and zero-shot on the targets.

Writes ``transfer.json``, ``curves.csv``, ``pareto.csv``, ``transfer.md`` and PNG plots to ``out``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.bench.transfer_report import format_report, plot
from metasparse.config import METHODS, TransferBenchConfig
from metasparse.io import atomic_write, csv_text

log = logging.getLogger(__name__)


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided t-interval (0 with a single value)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return float(v.mean()) if v.size else float("nan"), 0.0
    return float(v.mean()), float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


def _starting_points(loaded, cfg: TransferBenchConfig) -> dict:
    """Method -> ``seed -> (system, algorithm)`` to adapt from: the run's meta-learned controller, and a
    multitask controller trained non-episodically on the run's source cells (``scratch`` is built per seed)."""
    from metasparse.baselines.build import source_splits
    from metasparse.baselines.controllers import trained_controller
    from metasparse.meta.outer import build_algorithm
    from metasparse.meta.system import GatedSystem

    run_cfg, model = loaded.cfg, loaded.system.backbone
    inits = {}
    if "meta" in cfg.methods:
        inits["meta"] = lambda seed: (loaded.system, loaded.algo)
    if "multitask" in cfg.methods:
        splits = source_splits(loaded, test_sentences=1, calib_sentences=cfg.calib_sentences)
        budget, steps = run_cfg.budget.target, cfg.baseline_steps
        mt = trained_controller(model, splits.train, splits.calib, budget, spec=run_cfg.controller, steps=steps)
        mt_system = GatedSystem(model, mt)
        mt_algo = build_algorithm(mt_system, run_cfg)
        inits["multitask"] = lambda seed: (mt_system, mt_algo)
    return inits


def _ceiling(loaded, cfg: TransferBenchConfig, data, train: list[int], test: list[int]) -> dict:
    """A scratch controller trained to convergence on the cell's whole train split, scored on its test."""
    from metasparse.baselines.controllers import trained_controller
    from metasparse.meta.system import GatedSystem, gated_scores

    run_cfg, model = loaded.cfg, loaded.system.backbone
    conv = trained_controller(
        model,
        data.subset(train),
        data.subset(train),
        run_cfg.budget.target,
        spec=run_cfg.controller,
        steps=cfg.converge_steps,
        max_words=512,
    )
    s = gated_scores(GatedSystem(model, conv), data.subset(test))
    return {"acc": s.accuracy[run_cfg.episodes.tasks[0]], "flops": s.flops_fraction, "train_sentences": len(train)}


def _adapt_from(loaded, inits: dict, method: str, seed: int, data, support: list[int]):
    """The (system, algorithm) a curve starts from; ``scratch`` is a fresh, seeded, calibrated controller."""
    import torch

    from metasparse.control.train import calibrate_bias
    from metasparse.meta.load import new_controller
    from metasparse.meta.outer import build_algorithm
    from metasparse.meta.system import GatedSystem

    if method != "scratch":
        return inits[method](seed)
    run_cfg, model = loaded.cfg, loaded.system.backbone
    torch.manual_seed(seed)
    system = GatedSystem(model, new_controller(model, run_cfg))
    calibrate_bias(model, system.controller, data.subset(support), run_cfg.budget.target, iters=8)
    return system, build_algorithm(system, run_cfg)


def curves_for_run(loaded, cfg: TransferBenchConfig) -> tuple[list[dict], dict]:
    """Adaptation curve rows for one run and the converged-scratch ceiling per cell."""
    from metasparse.meta.evaluation import adapt_and_score, support_rows, target_seed
    from metasparse.model.corpus import EncodedRows

    run_cfg, b = loaded.cfg, loaded.bundle
    idx, task = b.index, run_cfg.episodes.tasks[0]
    cells = sorted(b.targets, key=lambda c: -idx.sentences(c, "train"))[: cfg.max_cells or None]
    rows = sorted({int(r) for c in cells for s in ("train", "dev", "test") for r in idx.rows(c, s)})
    data = EncodedRows.build(b.dataset, rows, b.tokenizer, b.tasks, loaded.system.backbone.spec.suffix_buckets)
    inits = _starting_points(loaded, cfg)
    out, ceiling = [], {}
    for cell in cells:
        test = [int(r) for r in idx.rows(cell, "test")][: cfg.test_sentences or None]
        train = [int(r) for r in idx.rows(cell, "train")]
        if not test or not train:
            log.warning("%s: no test or train sentences; skipped", cell.name)
            continue
        ceiling[cell.name] = _ceiling(loaded, cfg, data, train, test)
        for shots in cfg.shots:
            for seed in cfg.seeds:
                support = support_rows(idx, cell, shots, seed)
                for method in cfg.methods:
                    t0 = time.time()
                    system, algo = _adapt_from(loaded, inits, method, seed, data, support)
                    res = adapt_and_score(
                        algo,
                        system,
                        data,
                        support,
                        test,
                        [task],
                        run_cfg,
                        steps=max(cfg.steps),
                        seed=target_seed(seed, cell.name),
                        curve=True,
                        score_at=set(cfg.steps),
                    )
                    key = {"cell": cell.name, "method": method, "shots": shots, "support": len(support), "seed": seed}
                    out += [{**key, "step": p["step"], "acc": p["acc"], "flops": p["flops"]} for p in res["curve"]]
                    log.info("%s %s K=%d seed %d: %.1fs", cell.name, method, shots, seed, time.time() - t0)
    return out, ceiling


def aggregate(curves: list[dict]) -> list[dict]:
    """Mean and 95% interval over seeds of the macro average over cells, per (method, shots, step)."""
    per_seed = defaultdict(list)
    for r in curves:
        per_seed[r["method"], r["shots"], r["step"], r["seed"]].append(r)
    grouped = defaultdict(lambda: {"acc": [], "flops": []})
    for (m, k, s, _), rs in per_seed.items():
        grouped[m, k, s]["acc"].append(float(np.mean([r["acc"] for r in rs])))
        grouped[m, k, s]["flops"].append(float(np.mean([r["flops"] for r in rs])))
    out = []
    for (m, k, s), v in sorted(grouped.items()):
        acc, acc_ci = mean_ci(v["acc"])
        flops, flops_ci = mean_ci(v["flops"])
        out.append(
            {
                "method": m,
                "shots": k,
                "step": s,
                "acc": acc,
                "acc_ci": acc_ci,
                "flops": flops,
                "flops_ci": flops_ci,
                "seeds": len(v["acc"]),
            }
        )
    return out


def goals(agg: list[dict], ceiling: dict, shots: int = 16) -> dict:
    """The issue's transfer goals, read off the aggregated curves at ``shots``."""
    at = {(a["method"], a["step"]): a["acc"] for a in agg if a["shots"] == shots}
    conv = float(np.mean([c["acc"] for c in ceiling.values()])) if ceiling else float("nan")
    out: dict = {"shots": shots, "converged_scratch_acc": conv}
    if ("meta", 0) in at:
        zero = at["meta", 0]
        best = max((v for (m, s), v in at.items() if m == "meta" and s <= 20), default=float("nan"))
        gap = conv - zero
        out.update(
            meta_zero_shot_acc=zero,
            meta_best_acc_within_20=best,
            gap_closed=(best - zero) / gap if gap > 0 else float("nan"),
            gap_points=gap,
        )
    if ("meta", 10) in at and ("multitask", 10) in at:
        out["meta_minus_multitask_at_10"] = at["meta", 10] - at["multitask", 10]
    return out


def pareto_for_run(loaded, cfg: TransferBenchConfig) -> list[dict]:
    """Every method at every budget: source test and zero-shot target accuracy and FLOPs."""
    from metasparse.baselines.build import FAMILIES, build_method, source_splits
    from metasparse.model.corpus import EncodedCorpus
    from metasparse.scoring import score

    b, idx = loaded.bundle, loaded.bundle.index
    splits = source_splits(loaded, test_sentences=cfg.pareto_test_sentences, calib_sentences=cfg.calib_sentences)
    target_rows = sorted(int(r) for c in b.targets for r in idx.rows(c, "test"))
    targets = EncodedCorpus.build(
        b.dataset, target_rows, b.tokenizer, b.tasks, loaded.system.backbone.spec.suffix_buckets
    )
    names = list(METHODS) if "all" in cfg.pareto_methods else list(cfg.pareto_methods)
    rows = []
    for budget in [1.0, *cfg.pareto_budgets]:
        for name in ["dense"] if budget == 1.0 else [n for n in names if n != "dense"]:
            t0 = time.time()
            m = build_method(name, loaded, splits, budget, steps=cfg.baseline_steps)
            src, tgt = score(m, splits.test), score(m, targets)
            rows.append(
                {
                    "method": name,
                    "family": FAMILIES[name],
                    "budget": budget,
                    "flops": src.flops_fraction,
                    "upos": src.accuracy.get("upos"),
                    "deprel": src.accuracy.get("deprel"),
                    "upos_macro_cells": src.macro_cells.get("upos"),
                    "deprel_macro_cells": src.macro_cells.get("deprel"),
                    "upos_f1": src.macro_f1.get("upos"),
                    "deprel_f1": src.macro_f1.get("deprel"),
                    "target_flops": tgt.flops_fraction,
                    "target_upos_macro_cells": tgt.macro_cells.get("upos"),
                    "target_deprel_macro_cells": tgt.macro_cells.get("deprel"),
                }
            )
            log.info(
                "pareto %s @%.2f: flops %.3f upos %.4f (%.1fs)",
                name,
                budget,
                src.flops_fraction,
                rows[-1]["upos_macro_cells"],
                time.time() - t0,
            )
    return rows


def run(cfg: TransferBenchConfig, out_dir: Path) -> dict:
    """Run the benchmark into ``cfg.out`` (or ``out_dir``); returns what ``transfer.json`` holds."""
    from metasparse.meta.load import load_run

    t0 = time.time()
    out = Path(cfg.out) if cfg.out else out_dir
    out.mkdir(parents=True, exist_ok=True)
    result = {"config": OmegaConf.to_container(OmegaConf.structured(cfg)), "runs": {}}
    all_curves, all_pareto = [], []
    for i, run_dir in enumerate(cfg.run_dirs):
        loaded = load_run(run_dir)
        held = (
            loaded.cfg.domain.name
            if loaded.cfg.domain
            else "+".join([loaded.cfg.language.code, *loaded.cfg.language.also])
            if loaded.cfg.language
            else f"run{i}"
        )
        name = held if held not in result["runs"] else f"{held}{i}"
        curves, ceiling = curves_for_run(loaded, cfg)
        agg = aggregate(curves)
        pareto = pareto_for_run(loaded, cfg) if i < cfg.pareto_runs else []
        result["runs"][name] = {
            "run_dir": str(run_dir),
            "task": loaded.cfg.episodes.tasks[0],
            "budget": loaded.cfg.budget.target,
            "cells": sorted(ceiling),
            "ceiling": ceiling,
            "aggregate": agg,
            "goals": goals(agg, ceiling, 16 if 16 in cfg.shots else cfg.shots[0]),
            "pareto": pareto,
        }
        all_curves += [{"run": name, **r} for r in curves]
        all_pareto += [{"run": name, **r} for r in pareto]
    result["minutes"] = (time.time() - t0) / 60
    result["plots"] = plot(result, out)
    md = format_report(result)
    atomic_write(out / "curves.csv", csv_text(all_curves))
    atomic_write(out / "pareto.csv", csv_text(all_pareto))
    atomic_write(out / "transfer.json", json.dumps(result, indent=2))
    atomic_write(out / "transfer.md", md)
    print(md)
    return result


@hydra.main(version_base="1.3", config_path="../../conf", config_name="bench_transfer")
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
