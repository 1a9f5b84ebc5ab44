"""Relate the linguistic shift between cells to the pathways a run's controllers choose.

    python -m metasparse.diagnose run_dir=<meta_train run>

For every cell (language x domain) with enough test sentences: shift measures from the data
(:mod:`metasparse.diagnostics.shift`, typology from lang2vec's data where installed) and the pathways
of the run's calibrated controller on the cell's test sentences. Then Mantel tests between every shift
matrix and every pathway matrix, partial Mantel tests separating language from domain, and Spearman
correlations (bootstrap intervals) between each cell's shift from the source cells and the FLOPs it
gets, and for the target cells the adaptation gain. Writes CSVs, PNGs and ``diagnostics.md`` into
``<run_dir>/diagnostics/``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.config import DiagnoseConfig
from metasparse.io import atomic_write, csv_text

log = logging.getLogger(__name__)


def run(cfg: DiagnoseConfig, out_dir: Path) -> dict:
    """Compute the diagnostics of ``cfg.run_dir`` into ``out_dir``; returns the summary in ``diagnostics.json``."""
    from tqdm.auto import tqdm

    from metasparse.data.registry import load_registry
    from metasparse.diagnostics import figures
    from metasparse.diagnostics.pathways import cell_pathways, pathway_matrices
    from metasparse.diagnostics.relations import mantel, partial_mantel, spearman_bootstrap, upper
    from metasparse.diagnostics.shift import (
        design_matrices,
        js_divergence,
        profile_cell,
        shift_matrices,
    )
    from metasparse.diagnostics.typology import typology_matrix
    from metasparse.meta.load import load_run
    from metasparse.train.corpus import EncodedCorpus

    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_run(cfg.run_dir)
    b, idx = loaded.bundle, loaded.bundle.index
    model, ctrl = loaded.system.backbone, loaded.system.controller
    scripts = {tb.lang: tb.script for tb in load_registry().treebanks}
    targets = {c.name for c in b.targets}
    cells = [c for c in idx.cells if idx.sentences(c, "test") >= cfg.min_test_sentences]
    if len(cells) < 3:
        raise ValueError(f"only {len(cells)} cells have >= min_test_sentences={cfg.min_test_sentences} test sentences")
    names = [c.name for c in cells]
    cols = b.dataset.select_columns(["words", "upos", "deprel"])

    profiles, paths = [], []
    for c in tqdm(cells, desc="cells", mininterval=5.0):
        rows = sorted(int(r) for s in ("train", "dev", "test") for r in idx.rows(c, s))
        sub = cols.select(rows).to_dict()
        profiles.append(
            profile_cell(
                c.name,
                c.lang,
                c.domain,
                scripts.get(c.lang, "?"),
                sub["words"],
                sub["upos"],
                sub["deprel"],
                b.tokenizer,
            )
        )
        test = [int(r) for r in idx.rows(c, "test")][: cfg.max_sentences]
        corpus = EncodedCorpus.build(b.dataset, test, b.tokenizer, b.tasks, model.spec.suffix_buckets)
        paths.append(cell_pathways(model, ctrl, corpus))

    shift = shift_matrices(profiles)
    design = design_matrices(profiles)
    typo, typo_note = typology_matrix([p.lang for p in profiles])
    if typo is not None:
        shift["typology"] = typo
    pathm = pathway_matrices(paths)

    relations = []
    for sname, sm in {**shift, **design}.items():
        for pname, pm in pathm.items():
            r = mantel(sm, pm, permutations=cfg.permutations, seed=cfg.seed)
            relations.append(
                {
                    "test": "mantel",
                    "shift": sname,
                    "pathway": pname,
                    "controls": "",
                    "r": r.r,
                    "p": r.p,
                    "permutations": r.permutations,
                    "cells": r.n_cells,
                }
            )
    for pname, pm in pathm.items():
        for x, z in (
            ("language_differs", "domain_differs"),
            ("domain_differs", "language_differs"),
            ("word_js", "language_differs"),
            ("word_js", "domain_differs"),
        ):
            xm = design[x] if x in design else shift[x]
            r = partial_mantel(xm, pm, design[z], permutations=cfg.permutations, seed=cfg.seed)
            relations.append(
                {
                    "test": "partial_mantel",
                    "shift": x,
                    "pathway": pname,
                    "controls": z,
                    "r": r.r,
                    "p": r.p,
                    "permutations": r.permutations,
                    "cells": r.n_cells,
                }
            )

    # Each cell's shift from the pooled source cells, against the compute it gets.
    source_words = sum((p.words for p in profiles if p.name not in targets), Counter())
    cell_rows = []
    for p, pw in zip(profiles, paths, strict=True):
        cell_rows.append(
            {
                **p.scalars(),
                "role": "target" if p.name in targets else "source",
                "word_js_to_sources": js_divergence(p.words, source_words),
                "flops_fraction": pw.flops_fraction,
                "flops_per_word": pw.flops_per_word,
                "decision_entropy": pw.decision_entropy,
                "controller_entropy": pw.controller_entropy,
                "skip_rate": float(pw.skip_rate.mean()),
                "head_use": float(pw.head_use.mean()),
                "group_use": float(pw.group_use.mean()),
                "flops_vs_uncertainty_rho": pw.uncertainty_spearman[0],
            }
        )
    spearman = []

    def add(name: str, a, bb, n_note: str) -> None:
        try:
            s = spearman_bootstrap(a, bb, resamples=cfg.bootstrap, seed=cfg.seed)
        except ValueError as e:
            log.warning("%s: %s", name, e)
            return
        spearman.append(
            {
                "relation": name,
                "rho": s.rho,
                "p": s.p,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
                "n": s.n,
                "unit": n_note,
            }
        )

    for measure in ("word_js_to_sources", "fertility", "unknown_char_rate", "ttr", "mean_length"):
        add(
            f"{measure} vs flops_fraction",
            [r[measure] for r in cell_rows],
            [r["flops_fraction"] for r in cell_rows],
            "cells",
        )
    all_f = [f for pw in paths for f in pw.sentence_flops]
    all_u = [u for pw in paths for u in pw.sentence_uncertainty]
    add("sentence uncertainty vs sentence flops", all_u, all_f, "sentences")
    metrics_path = Path(cfg.run_dir) / "metrics.json"
    if metrics_path.exists():
        m = json.loads(metrics_path.read_text())
        t_rows = [r for r in cell_rows if r["cell"] in m.get("targets", {})]
        gains = [m["targets"][r["cell"]]["adapted_acc"] - m["targets"][r["cell"]]["zero_shot_acc"] for r in t_rows]
        add(
            "target word_js_to_sources vs adaptation gain",
            [r["word_js_to_sources"] for r in t_rows],
            gains,
            "target cells",
        )
        add(
            "target word_js_to_sources vs zero-shot flops",
            [r["word_js_to_sources"] for r in t_rows],
            [m["targets"][r["cell"]]["zero_shot_flops"] for r in t_rows],
            "target cells",
        )

    pairs = []
    iu = np.triu_indices(len(names), 1)
    for i, j in zip(*iu, strict=True):
        pairs.append(
            {
                "cell_a": names[i],
                "cell_b": names[j],
                **{k: float(v[i, j]) for k, v in {**shift, **design, **pathm}.items()},
            }
        )
    L = model.spec.layers
    by_domain = defaultdict(list)
    for p, pw in zip(profiles, paths, strict=True):
        by_domain[p.domain].append(pw.usage_vector())
    usage = {d: np.mean(v, axis=0) for d, v in by_domain.items()}
    layer_rows = [
        {"domain": d, "layer": li, "head_use": float(u[li]), "group_use": float(u[L + li])}
        for d, u in sorted(usage.items())
        for li in range(L)
    ]

    order = sorted(range(len(names)), key=lambda i: (profiles[i].lang, profiles[i].domain))
    ordered = [names[i] for i in order]
    figures.heatmap(
        pathm["pattern_js"][np.ix_(order, order)],
        ordered,
        "pathway distance (pattern JS)",
        out_dir / "heatmap_pathways.png",
    )
    figures.heatmap(
        shift["word_js"][np.ix_(order, order)],
        ordered,
        "word unigram JS divergence",
        out_dir / "heatmap_shift_word_js.png",
    )
    best = max(
        (r for r in relations if r["test"] == "mantel" and r["shift"] in shift),
        key=lambda r: r["r"] if r["r"] == r["r"] else -1,
    )
    figures.scatter_fit(
        upper(shift["word_js"]),
        upper(pathm["pattern_js"]),
        "word JS divergence",
        "pathway distance (pattern JS)",
        "cell pairs: shift vs pathway distance",
        out_dir / "scatter_shift_vs_pathways.png",
    )
    figures.usage_by_domain(usage, L, out_dir / "usage_by_domain.png")
    figures.compute_vs_uncertainty(all_f, all_u, out_dir / "compute_vs_uncertainty.png")

    atomic_write(out_dir / "cells.csv", csv_text(cell_rows))
    atomic_write(out_dir / "pairs.csv", csv_text(pairs))
    atomic_write(out_dir / "relations.csv", csv_text(relations))
    atomic_write(out_dir / "spearman.csv", csv_text(spearman))
    atomic_write(out_dir / "layer_usage.csv", csv_text(layer_rows))
    summary = {
        "run_dir": str(cfg.run_dir),
        "cells": names,
        "typology": typo_note,
        "relations": relations,
        "spearman": spearman,
        "strongest_mantel": best,
    }
    atomic_write(out_dir / "diagnostics.json", json.dumps(summary, indent=2))
    md = findings(summary, cell_rows, usage, L)
    atomic_write(out_dir / "diagnostics.md", md)
    print(md)
    return summary


def findings(s: dict, cells: list[dict], usage: dict, layers: int) -> str:
    """The findings in sentences with their numbers."""
    rel = {(r["test"], r["shift"], r["pathway"], r["controls"]): r for r in s["relations"]}
    sig = lambda p: "significant at 0.05" if p < 0.05 else "not significant at 0.05"  # noqa: E731
    n = len(s["cells"])
    lines = [
        f"# Diagnostics: shift vs pathways ({s['run_dir']})",
        "",
        f"{n} cells with enough test sentences; {n * (n - 1) // 2} cell pairs. Typology: {s['typology']}.",
        "",
    ]
    lines.append("## Mantel tests (pathway distance = mean JS divergence of the per-layer pattern distributions)")
    lines.append("")
    for r in sorted(
        (r for r in s["relations"] if r["test"] == "mantel" and r["pathway"] == "pattern_js"),
        key=lambda r: -abs(r["r"]) if r["r"] == r["r"] else 0,
    ):
        lines.append(
            f"- {r['shift']}: r = {r['r']:.3f}, p = {r['p']:.3f} ({r['permutations']} permutations), {sig(r['p'])}."
        )
    lines += ["", "## Language or domain?", ""]
    for x, z in (
        ("language_differs", "domain_differs"),
        ("domain_differs", "language_differs"),
        ("word_js", "language_differs"),
        ("word_js", "domain_differs"),
    ):
        r = rel.get(("partial_mantel", x, "pattern_js", z))
        if r:
            lines.append(
                f"- {x} vs pathway distance with {z} held fixed: partial r = {r['r']:.3f}, "
                f"p = {r['p']:.3f}, {sig(r['p'])}."
            )
    lines += ["", "## Compute against shift and uncertainty (Spearman, 95% bootstrap interval)", ""]
    for r in s["spearman"]:
        lines.append(
            f"- {r['relation']} ({r['n']} {r['unit']}): rho = {r['rho']:.3f} "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}], p = {r['p']:.3g}."
        )
    lines += ["", "## Pathways by domain (mean share of heads / FFN groups used, per layer)", ""]
    for d, u in sorted(usage.items()):
        lines.append(
            f"- {d}: heads "
            + " ".join(f"{x:.2f}" for x in u[:layers])
            + "; groups "
            + " ".join(f"{x:.2f}" for x in u[layers:])
        )
    hi = sorted(cells, key=lambda r: -r["flops_fraction"])
    top = ", ".join(f"{r['cell']} ({r['flops_fraction']:.3f})" for r in hi[:3])
    bottom = ", ".join(f"{r['cell']} ({r['flops_fraction']:.3f})" for r in hi[-3:])
    lines += ["", f"Most compute: {top}; least: {bottom}.", ""]
    lines.append(
        "These are the first published numbers of their kind for this setting; they are reported whatever they are."
    )
    return "\n".join(lines) + "\n"


@hydra.main(version_base="1.3", config_path="../conf", config_name="diagnose")
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
