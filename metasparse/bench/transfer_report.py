"""Plots and the Markdown report of ``bench.transfer``'s results."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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


def _curve_tables(r: dict, pct) -> list[str]:
    """One table per task (and one of FLOPs): method x K rows, a column per step, mean ± interval."""
    agg = r["aggregate"]
    steps = sorted({a["step"] for a in agg})
    table = {(a["method"], a["shots"], a["step"]): a for a in agg}
    rates = r.get("inner_rates", {})
    lines = []
    for key in [k for k in ("upos", "deprel") if agg and k in agg[0]] + ["flops"]:
        lines += [f"**{key.upper()}**", "", "| method | K | lr x | " + " | ".join(f"step {s}" for s in steps) + " |"]
        lines.append("|---|---:|---:|" + "---:|" * len(steps))
        for m in sorted({a["method"] for a in agg}):
            for k in sorted({a["shots"] for a in agg}):
                cells = [table.get((m, k, s)) for s in steps]
                scale = rates.get(m, {}).get("scale", "-")
                lines.append(
                    f"| {m} | {k} | {scale} | " + " | ".join(_cell(c, key, pct) if c else "-" for c in cells) + " |"
                )
        lines.append("")
    return lines


def _cell(c: dict, key: str, pct) -> str:
    return f"{c[key]:.3f}" if key == "flops" else f"{pct(c[key])} ± {100 * c[key + '_ci']:.1f}"


def _goal_lines(g: dict, pct) -> list[str]:
    lines = []
    if g.get("converged_scratch_acc") == g.get("converged_scratch_acc"):
        lines.append(f"Scratch controller trained to convergence per cell: {pct(g['converged_scratch_acc'])}.")
    if "meta_minus_dense_ft" in g:
        m, d = g["meta_at"], g["dense_ft_at"]
        parts = ", ".join(
            f"{t.upper()} {pct(m[t])} vs {pct(d[t])} ({100 * g['meta_minus_dense_ft'][t]:+.1f})"
            for t in g["meta_minus_dense_ft"]
        )
        lines.append(f"Goal (K={g['shots']}, step {m['step']}): meta at FLOPs {m['flops']:.3f} vs dense-ft: {parts}.")
    if "meta_minus_multitask_ft_at_10" in g:
        parts = ", ".join(
            f"{t.upper()} {100 * v:+.1f} (intervals apart: {g['intervals_apart_at_10'][t]})"
            for t, v in g["meta_minus_multitask_ft_at_10"].items()
        )
        lines.append(f"Goal (step 10): meta - multitask-ft: {parts}.")
    return lines + [""]


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
        lines += _curve_tables(r, pct)
        lines += _goal_lines(r["goals"], pct)
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
