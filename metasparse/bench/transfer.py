"""Few-step transfer: adaptation curves of meta-learned vs multitask vs scratch controllers, and accuracy
against FLOPs for every method.

    python -m metasparse.bench.transfer 'run_dirs=[<legal run>,<held-out languages run>]' out=bench/transfer
    python -m metasparse.bench.transfer 'run_dirs=[<run>]' quick=true out=/tmp/transfer

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

from metasparse.baselines import METHODS
from metasparse.config import TransferBenchConfig
from metasparse.io import atomic_write, csv_text

log = logging.getLogger(__name__)


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided t-interval (0 with a single value)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return float(v.mean()) if v.size else float("nan"), 0.0
    return float(v.mean()), float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


def _apply_quick(cfg: TransferBenchConfig) -> None:
    cfg.steps, cfg.shots, cfg.seeds = [0, 1, 2], [8], cfg.seeds[:2]
    cfg.max_cells = min(cfg.max_cells or 2, 2)
    cfg.test_sentences = min(cfg.test_sentences or 30, 30)
    cfg.converge_steps = min(cfg.converge_steps, 15)
    cfg.pareto_budgets = [0.5]
    if "all" in cfg.pareto_methods:
        cfg.pareto_methods = ["meta", "importance", "random"]


def curves_for_run(loaded, cfg: TransferBenchConfig) -> tuple[list[dict], dict]:
    """Adaptation curve rows for one run and the converged-scratch ceiling per cell."""
    import torch

    from metasparse.baselines.build import source_splits
    from metasparse.baselines.controllers import trained_controller
    from metasparse.control.train import calibrate_bias
    from metasparse.meta.evaluation import adapt_and_score, support_rows
    from metasparse.meta.load import new_controller
    from metasparse.meta.outer import build_algorithm
    from metasparse.meta.system import GatedSystem, gated_scores
    from metasparse.train.corpus import EncodedRows

    run_cfg, b = loaded.cfg, loaded.bundle
    idx, model = b.index, loaded.system.backbone
    task = run_cfg.episodes.tasks[0]
    budget = run_cfg.budget.target
    cells = sorted(b.targets, key=lambda c: -idx.sentences(c, "train"))[: cfg.max_cells or None]
    rows = sorted({int(r) for c in cells for s in ("train", "dev", "test") for r in idx.rows(c, s)})
    data = EncodedRows.build(b.dataset, rows, b.tokenizer, b.tasks, model.spec.suffix_buckets)
    steps = max(cfg.steps)
    inits = {}
    if "meta" in cfg.methods:
        inits["meta"] = lambda seed: (loaded.system, loaded.algo)
    if "multitask" in cfg.methods:
        splits = source_splits(loaded, test_sentences=1, calib_sentences=300 if cfg.quick else 1500)
        mt = trained_controller(
            model,
            splits.train,
            splits.calib,
            budget,
            spec=run_cfg.controller,
            steps=30 if cfg.quick else 300,
        )
        mt_system = GatedSystem(model, mt)
        mt_algo = build_algorithm(mt_system, run_cfg)
        inits["multitask"] = lambda seed: (mt_system, mt_algo)

    out, ceiling = [], {}
    for cell in cells:
        test = [int(r) for r in idx.rows(cell, "test")]
        test = test[: cfg.test_sentences] if cfg.test_sentences else test
        train = [int(r) for r in idx.rows(cell, "train")]
        if not test or not train:
            log.warning("%s: no test or train sentences; skipped", cell.name)
            continue
        conv = trained_controller(
            model,
            data.subset(train),
            data.subset(train),
            budget,
            spec=run_cfg.controller,
            steps=cfg.converge_steps,
            max_words=512,
        )
        conv_scores = gated_scores(GatedSystem(model, conv), data.subset(test))
        ceiling[cell.name] = {
            "acc": conv_scores.accuracy[task],
            "flops": conv_scores.flops_fraction,
            "train_sentences": len(train),
        }
        for shots in cfg.shots:
            for seed in cfg.seeds:
                support = support_rows(idx, cell, shots, seed)
                for method in cfg.methods:
                    t0 = time.time()
                    if method == "scratch":
                        torch.manual_seed(seed)
                        system = GatedSystem(model, new_controller(model, run_cfg))
                        calibrate_bias(model, system.controller, data.subset(support), budget, iters=8)
                        algo = build_algorithm(system, run_cfg)
                    else:
                        system, algo = inits[method](seed)
                    res = adapt_and_score(
                        algo,
                        system,
                        data,
                        support,
                        test,
                        [task],
                        run_cfg,
                        steps=steps,
                        curve=True,
                        score_at=set(cfg.steps),
                    )
                    for p in res["curve"]:
                        out.append(
                            {
                                "cell": cell.name,
                                "method": method,
                                "shots": shots,
                                "support": len(support),
                                "seed": seed,
                                "step": p["step"],
                                "acc": p["acc"],
                                "flops": p["flops"],
                            }
                        )
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
    from metasparse.scoring import score
    from metasparse.train.corpus import EncodedCorpus

    b, idx = loaded.bundle, loaded.bundle.index
    splits = source_splits(
        loaded, test_sentences=200 if cfg.quick else 2000, calib_sentences=300 if cfg.quick else 1500
    )
    target_rows = sorted(int(r) for c in b.targets for r in idx.rows(c, "test"))
    targets = EncodedCorpus.build(
        b.dataset, target_rows, b.tokenizer, b.tasks, loaded.system.backbone.spec.suffix_buckets
    )
    names = list(METHODS) if "all" in cfg.pareto_methods else list(cfg.pareto_methods)
    rows = []
    for budget in [1.0, *cfg.pareto_budgets]:
        for name in ["dense"] if budget == 1.0 else [n for n in names if n != "dense"]:
            t0 = time.time()
            m = build_method(name, loaded, splits, budget, quick=cfg.quick)
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


def plot(result: dict, out: Path) -> list[str]:
    """Adaptation curves (one panel per K) and the accuracy-FLOPs front, per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for name, r in result["runs"].items():
        agg = r["aggregate"]
        shots = sorted({a["shots"] for a in agg})
        fig, axes = plt.subplots(1, len(shots), figsize=(4.5 * len(shots), 3.6), squeeze=False, sharey=True)
        for ax, k in zip(axes[0], shots, strict=True):
            for m in sorted({a["method"] for a in agg}):
                pts = sorted((a for a in agg if a["shots"] == k and a["method"] == m), key=lambda a: a["step"])
                x = np.array([a["step"] for a in pts])
                y = np.array([100 * a["acc"] for a in pts])
                ci = np.array([100 * a["acc_ci"] for a in pts])
                ax.plot(x, y, marker="o", label=m)
                ax.fill_between(x, y - ci, y + ci, alpha=0.2)
            conv = r["goals"].get("converged_scratch_acc")
            if conv == conv:
                ax.axhline(100 * conv, color="grey", ls="--", lw=1, label="scratch, converged")
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(-0.2, 1.3 * max(a["step"] for a in agg) + 0.5)  # no negative decade on the step axis
            ax.set_title(f"{name}: K={k}")
            ax.set_xlabel("adaptation steps")
        axes[0][0].set_ylabel(f"{r['task'].upper()} accuracy (%), macro over cells")
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        path = out / f"curves_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)
        if r.get("pareto"):
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
            for ax, key in zip(axes, ("upos_macro_cells", "deprel_macro_cells"), strict=True):
                for m in sorted({p["method"] for p in r["pareto"]}):
                    pts = sorted((p for p in r["pareto"] if p["method"] == m), key=lambda p: p["flops"])
                    ax.plot([p["flops"] for p in pts], [100 * p[key] for p in pts], marker="o", label=m)
                ax.set_xlabel("FLOPs / dense (source test)")
                ax.set_ylabel(key.replace("_macro_cells", "").upper() + " accuracy (%), macro over cells")
            axes[1].legend(fontsize=8)
            fig.tight_layout()
            path = out / f"pareto_{name}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            files.append(path.name)
    return files


def format_report(result: dict) -> str:
    pct = lambda v: "-" if v is None or v != v else f"{100 * v:.1f}"  # noqa: E731
    lines = ["# bench.transfer", ""]
    for name, r in result["runs"].items():
        lines += [f"## {name} ({r['run_dir']}), {r['task'].upper()}, budget {r['budget']}", ""]
        lines += [
            f"Cells: {', '.join(r['cells'])}. Mean over {len(result['config']['seeds'])} seeds of the macro "
            "average over cells, with the 95% t-interval half-width.",
            "",
        ]
        steps = sorted({a["step"] for a in r["aggregate"]})
        lines += [
            "| method | K | " + " | ".join(f"step {s}" for s in steps) + " |",
            "|---|---:|" + "---:|" * len(steps),
        ]
        table = {(a["method"], a["shots"], a["step"]): a for a in r["aggregate"]}
        for m in sorted({a["method"] for a in r["aggregate"]}):
            for k in sorted({a["shots"] for a in r["aggregate"]}):
                cells = [table.get((m, k, s)) for s in steps]
                lines.append(
                    f"| {m} | {k} | "
                    + " | ".join(f"{pct(c['acc'])} ± {100 * c['acc_ci']:.1f}" if c else "-" for c in cells)
                    + " |"
                )
        g = r["goals"]
        conv = pct(g["converged_scratch_acc"])
        lines += [
            "",
            f"Scratch controller trained to convergence on each cell's train split: {conv} (macro over cells).",
        ]
        if "gap_closed" in g:
            lines.append(
                f"Goal (K={g['shots']}, <= 20 steps, close >= 80% of the zero-shot-to-converged gap): meta zero-shot "
                f"{pct(g['meta_zero_shot_acc'])}, best within 20 steps {pct(g['meta_best_acc_within_20'])}, gap "
                f"{100 * g['gap_points']:.1f} points, closed {100 * g['gap_closed']:.0f}%."
            )
        if "meta_minus_multitask_at_10" in g:
            lines.append(
                f"Goal (meta >= multitask + 2 points at 10 steps): {100 * g['meta_minus_multitask_at_10']:+.1f} points."
            )
        if r.get("pareto"):
            lines += [
                "",
                "| method | family | budget | FLOPs | UPOS | DEPREL | UPOS F1 | DEPREL F1 | target UPOS "
                "| target DEPREL | target FLOPs |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for p in r["pareto"]:
                lines.append(
                    f"| {p['method']} | {p['family']} | {p['budget']} | {p['flops']:.3f} | "
                    f"{pct(p['upos_macro_cells'])} | {pct(p['deprel_macro_cells'])} | {pct(p['upos_f1'])} | "
                    f"{pct(p['deprel_f1'])} | {pct(p['target_upos_macro_cells'])} | "
                    f"{pct(p['target_deprel_macro_cells'])} | {p['target_flops']:.3f} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def run(cfg: TransferBenchConfig, out_dir: Path) -> dict:
    """Run the benchmark into ``cfg.out`` (or ``out_dir``); returns what ``transfer.json`` holds."""
    from metasparse.meta.load import load_run

    t0 = time.time()
    if cfg.quick:
        _apply_quick(cfg)
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
