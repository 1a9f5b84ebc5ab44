"""The diagnose job's named steps: observe every cell, relate shift to pathways, write tables, figures and
findings. ``metasparse.diagnose`` is the thin entry point over :func:`diagnose`."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from metasparse.config import DiagnoseConfig
from metasparse.data.labels import UPOS_TAGS
from metasparse.data.registry import load_registry
from metasparse.diagnostics import figures
from metasparse.diagnostics.adapted_units import adapted_unit_rows, top_units
from metasparse.diagnostics.findings import findings
from metasparse.diagnostics.multiple import judge_family
from metasparse.diagnostics.pathways import CellPathways, cell_pathways, pathway_matrices
from metasparse.diagnostics.relations import PARTIAL, mantel, partial_mantel, spearman_bootstrap, upper
from metasparse.diagnostics.shift import (
    CellProfile,
    PairwiseJS,
    design_matrices,
    profile_cell,
    shift_matrices,
)
from metasparse.diagnostics.token_pathways import tag_compute_rows, tag_matrix, tag_spread
from metasparse.diagnostics.typology import typology_matrix
from metasparse.io import atomic_write, csv_text
from metasparse.model.corpus import EncodedCorpus

log = logging.getLogger(__name__)


def observe_cells(loaded, cfg: DiagnoseConfig) -> tuple[list[CellProfile], list[CellPathways]]:
    """Per cell with at least ``min_test_sentences`` test sentences: its data profile (all splits) and the
    pathways the run's controller takes on its test sentences."""
    b, idx = loaded.bundle, loaded.bundle.index
    model, ctrl = loaded.system.backbone, loaded.system.controller
    scripts = {tb.lang: tb.script for tb in load_registry().treebanks}
    cells = [c for c in idx.cells if idx.sentences(c, "test") >= cfg.min_test_sentences]
    if len(cells) < 3:
        raise ValueError(f"only {len(cells)} cells have >= min_test_sentences={cfg.min_test_sentences} test sentences")
    cols = b.dataset.select_columns(["words", "upos", "deprel"])
    profiles, paths = [], []
    for c in tqdm(cells, desc="cells", mininterval=5.0):
        rows = sorted(int(r) for s in ("train", "dev", "test") for r in idx.rows(c, s))
        sub = cols.select(rows).to_dict()
        script = scripts.get(c.lang, "?")
        profiles.append(
            profile_cell(c.name, c.lang, c.domain, script, sub["words"], sub["upos"], sub["deprel"], b.tokenizer)
        )
        test = [int(r) for r in idx.rows(c, "test")][: cfg.max_sentences]
        corpus = EncodedCorpus.build(b.dataset, test, b.tokenizer, b.tasks, model.spec.suffix_buckets)
        paths.append(cell_pathways(model, ctrl, corpus))
    return profiles, paths


def _relation(test: str, shift: str, pathway: str, controls: str, r) -> dict:
    return {
        "test": test,
        "shift": shift,
        "pathway": pathway,
        "controls": controls,
        "r": r.r,
        "p": r.p,
        "permutations": r.permutations,
        "cells": r.n_cells,
        "n": r.n_cells,
        "unit": "cells",
    }


def mantel_relations(shift: dict, design: dict, pathm: dict, cfg: DiagnoseConfig) -> list[dict]:
    """Mantel tests of every shift (and design) matrix against every pathway matrix, then the partial ones."""
    out = []
    for sname, sm in {**shift, **design}.items():
        for pname, pm in pathm.items():
            r = mantel(sm, pm, permutations=cfg.permutations, seed=cfg.seed)
            out.append(_relation("mantel", sname, pname, "", r))
    for pname, pm in pathm.items():
        for x, z in PARTIAL:
            xm = design[x] if x in design else shift[x]
            r = partial_mantel(xm, pm, design[z], permutations=cfg.permutations, seed=cfg.seed)
            out.append(_relation("partial_mantel", x, pname, z, r))
    return out


def cell_rows(profiles: list[CellProfile], paths: list[CellPathways], targets: set[str]) -> list[dict]:
    """One row per cell: its data profile, its shift from the pooled source cells, the compute it gets."""
    source_words: Counter = Counter()
    for p in profiles:
        if p.name not in targets:
            source_words.update(p.words)
    to_sources = PairwiseJS([*(p.words for p in profiles), source_words])  # the vocabulary ranked once
    return [
        {
            **p.scalars(),
            "role": "target" if p.name in targets else "source",
            "word_js_to_sources": to_sources(i, len(profiles)),
            "flops_fraction": pw.flops_fraction,
            "flops_per_word": pw.flops_per_word,
            "decision_entropy": pw.decision_entropy,
            "controller_entropy": pw.controller_entropy,
            "skip_rate": float(pw.skip_rate.mean()),
            "head_use": float(pw.head_use.mean()),
            "group_use": float(pw.group_use.mean()),
            "flops_vs_uncertainty_rho": pw.uncertainty_spearman[0],
        }
        for i, (p, pw) in enumerate(zip(profiles, paths, strict=True))
    ]


def spearman_relations(cells: list[dict], paths: list[CellPathways], run_metrics: dict, cfg: DiagnoseConfig):
    """Spearman correlations with bootstrap intervals: each cell's shift against its compute, sentence
    uncertainty against sentence compute, and for target cells shift against adaptation gain."""
    out = []

    def add(name: str, a, b, unit: str) -> None:
        try:
            s = spearman_bootstrap(a, b, resamples=cfg.bootstrap, seed=cfg.seed)
        except ValueError as e:
            log.warning("%s: %s", name, e)
            return
        out.append(
            {"relation": name, "rho": s.rho, "p": s.p, "ci_low": s.ci_low, "ci_high": s.ci_high, "n": s.n, "unit": unit}
        )

    flops = [r["flops_fraction"] for r in cells]
    for measure in ("word_js_to_sources", "fertility", "unknown_char_rate", "ttr", "mean_length"):
        add(f"{measure} vs flops_fraction", [r[measure] for r in cells], flops, "cells")
    all_f = [f for pw in paths for f in pw.sentence_flops]
    all_u = [u for pw in paths for u in pw.sentence_uncertainty]
    add("sentence uncertainty vs sentence flops", all_u, all_f, "sentences")
    targets = run_metrics.get("targets", {})
    t_rows = [r for r in cells if r["cell"] in targets]
    if t_rows:
        js = [r["word_js_to_sources"] for r in t_rows]
        gains = [targets[r["cell"]]["adapted_acc"] - targets[r["cell"]]["zero_shot_acc"] for r in t_rows]
        add("target word_js_to_sources vs adaptation gain", js, gains, "target cells")
        zero = [targets[r["cell"]]["zero_shot_flops"] for r in t_rows]
        add("target word_js_to_sources vs zero-shot flops", js, zero, "target cells")
    return out


def usage_by_domain(profiles: list[CellProfile], paths: list[CellPathways], layers: int):
    """Mean heads / FFN groups used per layer in each domain, as vectors and as CSV rows."""
    by_domain = defaultdict(list)
    for p, pw in zip(profiles, paths, strict=True):
        by_domain[p.domain].append(pw.usage_vector())
    usage = {d: np.mean(v, axis=0) for d, v in by_domain.items()}
    rows = [
        {"domain": d, "layer": li, "head_use": float(u[li]), "group_use": float(u[layers + li])}
        for d, u in sorted(usage.items())
        for li in range(layers)
    ]
    return usage, rows


def heads_and_groups_apart(model) -> bool:
    """Whether some codebook pattern runs a different share of heads than of FFN groups."""
    s = model.spec
    return any(abs(p.n_heads / s.heads - p.n_groups / s.ffn_groups) > 1e-9 for p in model.codebook)


def draw(out_dir: Path, profiles, paths, shift: dict, pathm: dict, usage: dict, layers: int, apart: bool) -> None:
    """Heatmaps of pathway and word-shift distances, the shift-vs-pathway scatter, usage and compute plots."""
    names = [p.name for p in profiles]
    order = sorted(range(len(names)), key=lambda i: (profiles[i].lang, profiles[i].domain))
    ordered, ix = [names[i] for i in order], np.ix_(order, order)
    figures.heatmap(pathm["pattern_js"][ix], ordered, "pathway distance (pattern JS)", out_dir / "heatmap_pathways.png")
    figures.heatmap(shift["word_js"][ix], ordered, "word unigram JS divergence", out_dir / "heatmap_shift_word_js.png")
    figures.scatter_fit(
        upper(shift["word_js"]),
        upper(pathm["pattern_js"]),
        "word JS divergence",
        "pathway distance (pattern JS)",
        "cell pairs: shift vs pathway distance",
        out_dir / "scatter_shift_vs_pathways.png",
    )
    figures.usage_by_domain(usage, layers, out_dir / "usage_by_domain.png", apart)
    all_f = [f for pw in paths for f in pw.sentence_flops]
    all_u = [u for pw in paths for u in pw.sentence_uncertainty]
    figures.compute_vs_uncertainty(all_f, all_u, out_dir / "compute_vs_uncertainty.png")


def words_and_units(loaded, cfg: DiagnoseConfig, profiles, paths, out_dir: Path) -> dict:
    """Which words get compute (by UPOS tag and language) and which units each saved adaptation changed
    most: ``compute_by_tag.csv``/``.png`` and ``adapted_units.csv``/``.png``; their summaries for the report."""
    tag_rows = tag_compute_rows([p.lang for p in profiles], [pw.words for pw in paths], UPOS_TAGS)
    langs, tags, m = tag_matrix(tag_rows)
    if tag_rows:
        title = "compute by UPOS tag: a tag's mean word compute / its language's mean"
        figures.matrix(m, langs, tags, title, out_dir / "compute_by_tag.png", center=1.0)
    spec = loaded.system.backbone.spec
    unit_rows = adapted_unit_rows(cfg.run_dir, loaded.system, spec.layers, spec.heads, spec.ffn_groups)
    if unit_rows:
        targets = sorted({r["target"] for r in unit_rows})
        cols = sorted(
            {(r["layer"], r["kind"], r["unit"]) for r in unit_rows}, key=lambda c: (c[0], c[1] != "head", c[2])
        )
        grid = np.zeros((len(targets), len(cols)))
        for r in unit_rows:
            grid[targets.index(r["target"]), cols.index((r["layer"], r["kind"], r["unit"]))] = r["share"]
        names = [f"L{li} {'h' if k == 'head' else 'g'}{u}" for li, k, u in cols]
        title = "share of each target's adaptation per unit (h: head, g: FFN group)"
        figures.matrix(grid, targets, names, title, out_dir / "adapted_units.png")
    atomic_write(out_dir / "compute_by_tag.csv", csv_text(tag_rows))
    atomic_write(out_dir / "adapted_units.csv", csv_text(unit_rows))
    return {"compute_by_tag": tag_spread(tag_rows), "adapted_units": top_units(unit_rows)}


def diagnose(loaded, cfg: DiagnoseConfig, out_dir: Path) -> dict:
    """Every step for one loaded run; writes CSVs, PNGs, ``diagnostics.json`` and ``diagnostics.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    profiles, paths = observe_cells(loaded, cfg)
    names = [p.name for p in profiles]
    shift, design = shift_matrices(profiles), design_matrices(profiles)
    typo, typo_note = typology_matrix([p.lang for p in profiles])
    if typo is not None:
        shift["typology"] = typo
    pathm = pathway_matrices(paths)
    relations = mantel_relations(shift, design, pathm, cfg)
    cells = cell_rows(profiles, paths, {c.name for c in loaded.bundle.targets})
    metrics_path = Path(cfg.run_dir) / "metrics.json"
    run_metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    spearman = spearman_relations(cells, paths, run_metrics, cfg)
    # one report, one family: every Mantel, partial Mantel and Spearman test adjusted together
    judge_family(
        [*relations, *spearman], p_key="p", n_key="n", method=cfg.adjust, alpha=cfg.alpha, min_cells=cfg.min_cells
    )
    matrices = {**shift, **design, **pathm}
    pairs = [
        {"cell_a": names[i], "cell_b": names[j], **{k: float(v[i, j]) for k, v in matrices.items()}}
        for i, j in zip(*np.triu_indices(len(names), 1), strict=True)
    ]
    layers = loaded.system.backbone.spec.layers
    usage, layer_rows = usage_by_domain(profiles, paths, layers)
    draw(out_dir, profiles, paths, shift, pathm, usage, layers, heads_and_groups_apart(loaded.system.backbone))
    words_units = words_and_units(loaded, cfg, profiles, paths, out_dir)
    for name, rows in (
        ("cells", cells),
        ("pairs", pairs),
        ("relations", relations),
        ("spearman", spearman),
        ("layer_usage", layer_rows),
    ):
        atomic_write(out_dir / f"{name}.csv", csv_text(rows))
    best = max(
        (r for r in relations if r["test"] == "mantel" and r["shift"] in shift),
        key=lambda r: r["r"] if r["r"] == r["r"] else -1,
    )
    summary = {
        "run_dir": str(cfg.run_dir),
        "cells": names,
        "typology": typo_note,
        "relations": relations,
        "spearman": spearman,
        "strongest_mantel": best,
        "adjustment": {
            "method": cfg.adjust,
            "alpha": cfg.alpha,
            "min_cells": cfg.min_cells,
            "permutations": cfg.permutations,
        },
        **words_units,
    }
    atomic_write(out_dir / "diagnostics.json", json.dumps(summary, indent=2))
    md = findings(summary, cells, usage, layers)
    atomic_write(out_dir / "diagnostics.md", md)
    return summary
