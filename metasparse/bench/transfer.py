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
from metasparse.cli import one_line_errors
from metasparse.config import METHODS, TransferBenchConfig
from metasparse.io import atomic_write, csv_text
from metasparse.tracking import job_tracking, log_figure, log_scalars

log = logging.getLogger(__name__)


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided t-interval (0 with a single value)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return float(v.mean()) if v.size else float("nan"), 0.0
    return float(v.mean()), float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


def _ceiling(loaded, cfg: TransferBenchConfig, data, train: list[int], test: list[int]) -> dict:
    """A scratch controller trained to convergence on the cell's whole train split, scored on its test."""
    from metasparse.baselines.controllers import trained_controller
    from metasparse.meta.system import GatedSystem, gated_scores

    run_cfg, model = loaded.cfg, loaded.pretrained
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


def _starts_and_rates(loaded, cfg: TransferBenchConfig, tasks: list[str]) -> tuple[dict, dict]:
    """Each method's starting point and its inner-rate multiple, chosen on the run's source validation cells
    at the largest K and step count of the grid (never on a target)."""
    from metasparse.baselines.build import source_splits
    from metasparse.baselines.finetune import choose_lr_scale, starting_points

    splits = source_splits(loaded, test_sentences=1, calib_sentences=cfg.calib_sentences)
    starts = starting_points(
        loaded, cfg.methods, calib=splits.calib, train=splits.train, budget=loaded.cfg.budget.target
    )
    rates = {}
    for method, start in starts.items():
        t0 = time.time()
        best, found = choose_lr_scale(
            start,
            loaded,
            shots=max(cfg.shots),
            steps=max(cfg.steps),
            grid=cfg.lr_grid,
            episodes=cfg.lr_episodes,
            tasks=tasks,
        )
        rates[method] = {"scale": best, "validation_acc": found}
        log.info("%s: inner-rate multiple %g (validation %s, %.0fs)", method, best, found, time.time() - t0)
    return starts, rates


def curves_for_run(loaded, cfg: TransferBenchConfig) -> tuple[list[dict], dict, dict]:
    """Adaptation curve rows (accuracy per task and FLOPs) for one run, the converged-scratch ceiling per
    cell, and each method's chosen inner rate."""
    from metasparse.baselines.finetune import adapt_curve
    from metasparse.meta.evaluation import calibration_rows, support_rows, target_seed
    from metasparse.model.corpus import EncodedRows

    b = loaded.bundle
    idx, tasks = b.index, sorted(b.tasks, key=lambda t: (t != "upos", t))  # UPOS first, as in every report
    cells = sorted(b.targets, key=lambda c: -idx.sentences(c, "train"))[: cfg.max_cells or None]
    rows = sorted({int(r) for c in cells for s in ("train", "dev", "test") for r in idx.rows(c, s)})
    data = EncodedRows.build(b.dataset, rows, b.tokenizer, b.tasks, loaded.pretrained.spec.suffix_buckets)
    starts, rates = _starts_and_rates(loaded, cfg, tasks)
    out, ceiling = [], {}
    for cell in cells:
        test = [int(r) for r in idx.rows(cell, "test")][: cfg.test_sentences or None]
        train = [int(r) for r in idx.rows(cell, "train")]
        if not test or not train:
            log.warning("%s: no test or train sentences; skipped", cell.name)
            continue
        if cfg.converge_steps:
            ceiling[cell.name] = _ceiling(loaded, cfg, data, train, test)
        for shots in cfg.shots:
            for seed in cfg.seeds:
                support = support_rows(idx, cell, shots, seed)
                extra = loaded.cfg.adapt.calibrate_sentences
                calib = calibration_rows(train, support, extra, target_seed(seed, cell.name))
                for method, start in starts.items():
                    t0 = time.time()
                    res = adapt_curve(
                        start,
                        rates[method]["scale"],
                        loaded,
                        data,
                        support,
                        test,
                        tasks,
                        steps=max(cfg.steps),
                        score_at=set(cfg.steps),
                        seed=seed,
                        target=cell.name,
                        calib=calib,
                    )
                    key = {"cell": cell.name, "method": method, "shots": shots, "support": len(support), "seed": seed}
                    out += [
                        {**key, "step": p["step"], "acc": p["acc"], "flops": p["flops"], **p["by_task"]}
                        for p in res["curve"]
                    ]
                    log.info("%s %s K=%d seed %d: %.1fs", cell.name, method, shots, seed, time.time() - t0)
    return out, ceiling, rates


def aggregate(curves: list[dict]) -> list[dict]:
    """Mean and 95% interval over seeds of the macro average over cells, per (method, shots, step)."""
    per_seed = defaultdict(list)
    for r in curves:
        per_seed[r["method"], r["shots"], r["step"], r["seed"]].append(r)
    keys = ["acc", "flops", *[t for t in ("upos", "deprel") if curves and t in curves[0]]]
    grouped = defaultdict(lambda: defaultdict(list))
    for (m, k, s, _), rs in per_seed.items():
        for key in keys:
            grouped[m, k, s][key].append(float(np.mean([r[key] for r in rs])))
    out = []
    for (m, k, s), v in sorted(grouped.items()):
        row = {"method": m, "shots": k, "step": s, "seeds": len(v["acc"])}
        for key in keys:
            row[key], row[f"{key}_ci"] = mean_ci(v[key])
        out.append(row)
    return out


def goals(agg: list[dict], ceiling: dict, shots: int = 16) -> dict:
    """The transfer goals, read off the aggregated curves at ``shots``: meta (at the budget) against dense
    fine-tuning (full compute) within 20 steps, against multitask-ft at 10 steps, per task, with intervals."""
    at = {(a["method"], a["step"]): a for a in agg if a["shots"] == shots}
    conv = float(np.mean([c["acc"] for c in ceiling.values()])) if ceiling else float("nan")
    out: dict = {"shots": shots, "converged_scratch_acc": conv}
    tasks = [t for t in ("upos", "deprel") if agg and t in agg[0]]
    steps20 = sorted(s for (m, s) in at if m == "meta" and s <= 20)
    if steps20:
        last = steps20[-1]
        out["meta_zero_shot"] = {t: at["meta", 0][t] for t in tasks} if ("meta", 0) in at else None
        out["meta_at"] = {"step": last, "flops": at["meta", last]["flops"], **{t: at["meta", last][t] for t in tasks}}
        if ("dense-ft", last) in at:
            d = at["dense-ft", last]
            out["dense_ft_at"] = {"step": last, **{t: d[t] for t in tasks}}
            out["meta_minus_dense_ft"] = {t: at["meta", last][t] - d[t] for t in tasks}
    if ("meta", 10) in at and ("multitask-ft", 10) in at:
        a, b = at["meta", 10], at["multitask-ft", 10]
        out["meta_minus_multitask_ft_at_10"] = {t: a[t] - b[t] for t in tasks}
        out["intervals_apart_at_10"] = {t: a[t] - a[f"{t}_ci"] > b[t] + b[f"{t}_ci"] for t in tasks}
    return out


def pareto_for_run(loaded, cfg: TransferBenchConfig) -> list[dict]:
    """Every method at every budget: source test and zero-shot target accuracy and FLOPs."""
    from metasparse.baselines.build import FAMILIES, build_method, runnable_methods, source_splits
    from metasparse.model.corpus import EncodedCorpus
    from metasparse.scoring import score

    b, idx = loaded.bundle, loaded.bundle.index
    splits = source_splits(loaded, test_sentences=cfg.pareto_test_sentences, calib_sentences=cfg.calib_sentences)
    target_rows = sorted(int(r) for c in b.targets for r in idx.rows(c, "test"))
    targets = EncodedCorpus.build(
        b.dataset, target_rows, b.tokenizer, b.tasks, loaded.system.backbone.spec.suffix_buckets
    )
    names = list(METHODS) if "all" in cfg.pareto_methods else list(cfg.pareto_methods)
    names = runnable_methods(names, loaded, named=cfg.pareto_methods)
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
        curves, ceiling, rates = curves_for_run(loaded, cfg)
        agg = aggregate(curves)
        pareto = pareto_for_run(loaded, cfg) if i < cfg.pareto_runs else []
        result["runs"][name] = {
            "run_dir": str(run_dir),
            "task": loaded.cfg.episodes.tasks[0],
            "budget": loaded.cfg.budget.target,
            "cells": sorted({r["cell"] for r in curves}),
            "ceiling": ceiling,
            "inner_rates": rates,
            "aggregate": agg,
            "goals": goals(agg, ceiling, 16 if 16 in cfg.shots else cfg.shots[0]),
            "pareto": pareto,
        }
        all_curves += [{"run": name, **r} for r in curves]
        all_pareto += [{"run": name, **r} for r in pareto]
    result["minutes"] = (time.time() - t0) / 60
    result["plots"] = plot(result, out)
    for name, r in result["runs"].items():
        for a in r["aggregate"]:
            log_scalars(
                f"transfer/{name}/{a['method']}/shots{a['shots']}", {"acc": a["acc"], "flops": a["flops"]}, a["step"]
            )
    for png in result["plots"]:
        log_figure(Path(png).stem, out / png)
    md = format_report(result)
    atomic_write(out / "curves.csv", csv_text(all_curves))
    atomic_write(out / "pareto.csv", csv_text(all_pareto))
    atomic_write(out / "transfer.json", json.dumps(result, indent=2))
    atomic_write(out / "transfer.md", md)
    print(md)
    return result


@hydra.main(version_base="1.3", config_path="../../conf", config_name="bench_transfer")
@one_line_errors
def main(cfg: DictConfig) -> None:
    config, out_dir = OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir)
    with job_tracking(config, out_dir, "bench.transfer"):
        run(config, out_dir)


if __name__ == "__main__":
    main()
