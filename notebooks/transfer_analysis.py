# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Transfer analysis of a metasparse run
#
# This notebook reads one `meta_train` run folder and what the analysis commands wrote into it:
#
# ```bash
# python -m metasparse.meta_train +domain=legal                       # -> RUN
# python -m metasparse.diagnose run_dir=RUN                           # -> RUN/diagnostics/
# python -m metasparse.bench.transfer 'run_dirs=[RUN]' out=RUN/transfer
# ```
#
# It shows how the shift between cells (language x domain) relates to the pathways the controllers
# choose, the adaptation curves of meta-learned, multitask and scratch controllers, and accuracy
# against FLOPs for every method. Set `RUN_DIR` below (or the `METASPARSE_RUN_DIR` variable).

# %% tags=["parameters"]
import os
from pathlib import Path

RUN_DIR = Path(os.environ.get("METASPARSE_RUN_DIR", "../outputs/latest"))
TRANSFER_DIR = Path(os.environ.get("METASPARSE_TRANSFER_DIR", RUN_DIR / "transfer"))
# this run's diagnose output (a multi-run diagnose keeps each run's in its run<i>/)
DIAG_DIR = Path(os.environ.get("METASPARSE_DIAG_DIR", RUN_DIR / "diagnostics"))
# a multi-run diagnose (`diagnose 'run_dirs=[...]'`, e.g. three seeds) for the replicated findings
REPLICATION_DIR = Path(os.environ.get("METASPARSE_REPLICATION_DIR", RUN_DIR.parent / "diagnostics"))

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

if not (RUN_DIR / "metrics.json").exists():
    raise FileNotFoundError(f"{RUN_DIR} is not a finished meta_train run (no metrics.json); set RUN_DIR")
diag = DIAG_DIR
if not (diag / "relations.csv").exists():
    raise FileNotFoundError(f"no diagnostics in {diag}: run `python -m metasparse.diagnose run_dir={RUN_DIR}` first")
metrics = json.loads((RUN_DIR / "metrics.json").read_text())
cells = pd.read_csv(diag / "cells.csv")
pairs = pd.read_csv(diag / "pairs.csv")
relations = pd.read_csv(diag / "relations.csv")
spearman = pd.read_csv(diag / "spearman.csv")
usage = pd.read_csv(diag / "layer_usage.csv")
print(f"{len(cells)} cells, {len(pairs)} pairs; budget {metrics['budget']}, task {metrics['task']}")

# %% [markdown]
# ## The run at a glance

# %%
targets = pd.DataFrame(metrics["targets"]).T[
    ["dense_acc", "zero_shot_acc", "zero_shot_flops", "adapted_acc", "adapted_flops"]
]
targets.astype(float).round(3)

# %% [markdown]
# ## Shift and pathways, cell by cell
#
# Left: word unigram Jensen-Shannon divergence between cells. Right: distance between the pathways the
# controller chooses on them (mean JS divergence of the per-layer pattern distributions). Cells are
# ordered by language, then domain, so language blocks show on the diagonal.

# %%
names = sorted(cells["cell"])
index = {n: i for i, n in enumerate(names)}


def matrix(col: str) -> np.ndarray:
    m = np.zeros((len(names), len(names)))
    for a, b, v in zip(pairs["cell_a"], pairs["cell_b"], pairs[col], strict=True):
        m[index[a], index[b]] = m[index[b], index[a]] = v
    return m


fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
for ax, col, title in zip(axes, ["word_js", "pattern_js"], ["shift: word JS", "pathways: pattern JS"], strict=True):
    im = ax.imshow(matrix(col), cmap="viridis")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks(range(len(names)), names, fontsize=4)
    fig.colorbar(im, ax=ax, fraction=0.04)
fig.tight_layout()

# %% [markdown]
# ## Is shift related to pathway distance?
#
# Mantel tests correlate the two distance matrices and get p-values by permuting cells; the partial
# tests hold "the two cells differ in language" (or domain) fixed, which separates the two factors.
# All tests of the report are one family: `p_adjusted` (Holm by default) is what significance reads,
# and a relation over fewer than `min_cells` cells is "too few cells to test", never a finding.

# %%
mantel = relations[relations["pathway"] == "pattern_js"].sort_values("r", ascending=False)
mantel[["test", "shift", "controls", "r", "p", "p_adjusted", "cells", "status"]].round(3)

# %% [markdown]
# ## Findings that replicate across runs
#
# One run's significant relation can flip sign in the next seed. With a multi-run diagnose
# (`python -m metasparse.diagnose 'run_dirs=[RUN0,RUN1,RUN2]'`, its folder in `REPLICATION_DIR`), this
# shows only what is significant with the same sign in every run, then the rest with its numbers.

# %%
pooled_file = REPLICATION_DIR / "relations.csv"
if pooled_file.exists() and (REPLICATION_DIR / "run0").exists():
    pooled = pd.concat(
        [pd.read_csv(pooled_file).assign(kind="mantel"), pd.read_csv(REPLICATION_DIR / "spearman.csv")],
        ignore_index=True,
    )
    cols = [c for c in ("test", "shift", "pathway", "controls", "relation", "r_mean", "rho_mean") if c in pooled]
    view = pooled[cols + ["p_adjusted_per_run", "p_combined", "status"]]
    print(f"{int(pooled['replicated'].sum())} of {len(pooled)} relations replicate in every run")
    display = view[pooled["replicated"].astype(bool)]
    print(display.round(3).to_string() if len(display) else "none replicates")
else:
    print(f"no multi-run diagnose in {REPLICATION_DIR}: run python -m metasparse.diagnose 'run_dirs=[...]'")

# %%
fig, ax = plt.subplots(figsize=(5, 4))
x, y = pairs["word_js"].to_numpy(), pairs["pattern_js"].to_numpy()
same_lang = np.array(
    [a.split("/")[0] == b.split("/")[0] for a, b in zip(pairs["cell_a"], pairs["cell_b"], strict=True)]
)
ax.scatter(x[~same_lang], y[~same_lang], s=5, alpha=0.4, label="different language")
ax.scatter(x[same_lang], y[same_lang], s=8, alpha=0.8, label="same language")
if np.ptp(x) > 0:
    k, c = np.polyfit(x, y, 1)
    xs = np.linspace(x.min(), x.max(), 20)
    ax.plot(xs, k * xs + c, color="C3", label=f"fit {k:.3f} x + {c:.3f}")
ax.set_xlabel("word JS divergence")
ax.set_ylabel("pathway distance")
ax.legend(fontsize=7)

# %% [markdown]
# ## Where the compute goes

# %%
layers = usage["layer"].max() + 1
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for dom, g in usage.groupby("domain"):
    axes[0].plot(g["layer"], g["head_use"], marker="o", label=dom)
    axes[1].plot(g["layer"], g["group_use"], marker="o", label=dom)
axes[0].set_title("heads used per layer")
axes[1].set_title("FFN groups used per layer")
axes[1].legend(fontsize=7)
spearman.round(3)

# %% [markdown]
# ## Which words get compute
#
# Each word's share of the dense FLOPs it got (per-layer patterns, per-token exits and routing), by
# gold UPOS tag and language, relative to the language's mean word: red tags get more than the average
# word of their language, blue less. Blank: fewer than 20 words of the tag in that language.

# %%
by_tag = pd.read_csv(diag / "compute_by_tag.csv")
grid = by_tag[by_tag["words"] >= 20].pivot(index="lang", columns="tag", values="relative")
fig, ax = plt.subplots(figsize=(10, 0.35 * len(grid) + 1.5))
span = float(np.nanmax(np.abs(grid.to_numpy() - 1))) or 1.0
im = ax.imshow(grid.to_numpy(), cmap="RdBu_r", vmin=1 - span, vmax=1 + span, aspect="auto")
ax.set_xticks(range(len(grid.columns)), grid.columns, rotation=90, fontsize=7)
ax.set_yticks(range(len(grid.index)), grid.index, fontsize=7)
fig.colorbar(im, ax=ax, fraction=0.04)
grid.mean().sort_values(ascending=False).round(3)

# %% [markdown]
# ## Which units each adaptation changed
#
# The norm of each head's and FFN group's adapted delta (pathway adapters) per target, as a share of
# the target's total: the units a domain or language needed to change.

# %%
units_file = diag / "adapted_units.csv"
units = pd.read_csv(units_file) if units_file.exists() and units_file.stat().st_size else None
if units is None:
    print("no saved adaptations with pathway adapters in this run")
else:
    units["unit_name"] = [f"L{r.layer} {'h' if r.kind == 'head' else 'g'}{r.unit}" for r in units.itertuples()]
    top = units.sort_values("share", ascending=False).groupby("target").head(3)
    print(top[["target", "unit_name", "delta_norm", "share"]].round(4).to_string(index=False))
# %% [markdown]
# ## Adaptation curves and the accuracy-FLOPs front
#
# From `bench.transfer` (skipped when it has not been run into `TRANSFER_DIR`).

# %%
transfer_file = TRANSFER_DIR / "transfer.json"
transfer = json.loads(transfer_file.read_text()) if transfer_file.exists() else None
if transfer is None:
    print(f"no {transfer_file}: run python -m metasparse.bench.transfer 'run_dirs=[{RUN_DIR}]' out={TRANSFER_DIR}")
else:
    for name, r in transfer["runs"].items():
        agg = pd.DataFrame(r["aggregate"])
        shots = sorted(agg["shots"].unique())
        fig, axes = plt.subplots(1, len(shots), figsize=(4.5 * len(shots), 3.5), squeeze=False, sharey=True)
        for ax, k in zip(axes[0], shots, strict=True):
            for m, g in agg[agg["shots"] == k].groupby("method"):
                g = g.sort_values("step")
                ax.errorbar(g["step"], 100 * g["acc"], yerr=100 * g["acc_ci"], marker="o", capsize=3, label=m)
            ax.axhline(100 * r["goals"]["converged_scratch_acc"], ls="--", color="grey", label="converged scratch")
            ax.set_xscale("symlog", linthresh=1)
            ax.set_title(f"{name}, K={k}")
        axes[0][-1].legend(fontsize=7)
        if r["pareto"]:
            p = pd.DataFrame(r["pareto"])
            fig, ax = plt.subplots(figsize=(5, 4))
            for m, g in p.groupby("method"):
                g = g.sort_values("flops")
                ax.plot(g["flops"], 100 * g["upos_macro_cells"], marker="o", label=m)
            ax.set_xlabel("FLOPs / dense")
            ax.set_ylabel("UPOS (%), macro over source test cells")
            ax.legend(fontsize=7)

# %% [markdown]
# ## Interpretation
#
# How to read the numbers above: a positive, significant Mantel r for a shift measure means cell pairs
# that differ more in that respect also get more different pathways. If the partial test for language
# stays significant with domain held fixed while the one for domain does not, the controllers route by
# language (script, morphology) more than by domain. A positive Spearman between a cell's shift from the
# sources and its FLOPs means the controller spends more on unfamiliar input, which is what an adaptive
# model should do. The sentences below are generated from this run's numbers.


# %%
def strongest(df: pd.DataFrame) -> pd.Series:
    return df.loc[df["r"].abs().idxmax()]


plain = mantel[(mantel["test"] == "mantel") & ~mantel["shift"].isin(["language_differs", "domain_differs"])]
s = strongest(plain)
print(
    f"Strongest data shift measure: {s['shift']} (Mantel r = {s['r']:.3f}, p = {s['p']:.3f}, "
    f"adjusted {s['p_adjusted']:.3f}: {s['status']})."
)
part = relations[(relations["test"] == "partial_mantel") & (relations["pathway"] == "pattern_js")]
for _, row in part[part["shift"].isin(["language_differs", "domain_differs"])].iterrows():
    what = "matters" if row["significant"] else "adds nothing detectable (adjusted for the report's tests)"
    print(f"{row['shift']} with {row['controls']} held fixed: r = {row['r']:.3f}, p = {row['p']:.3f}: it {what}.")
rho = spearman[spearman["relation"] == "word_js_to_sources vs flops_fraction"]
if len(rho):
    r = rho.iloc[0]
    direction = "more" if r["rho"] > 0 else "less"
    print(
        f"Cells further from the source data get {direction} compute (rho = {r['rho']:.3f}, "
        f"95% CI [{r['ci_low']:.3f}, {r['ci_high']:.3f}])."
    )
