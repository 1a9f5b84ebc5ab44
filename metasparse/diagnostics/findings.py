"""The diagnostics' findings written out in sentences, each with its numbers."""

from __future__ import annotations

from metasparse.diagnostics.relations import PARTIAL


def _p(r: dict) -> str:
    """Raw and adjusted p as a reader needs both (no adjusted p for a relation too small to test)."""
    if r["p_adjusted"] != r["p_adjusted"]:
        return f"p = {r['p']:.3g}"
    return f"p = {r['p']:.3g} (adjusted {r['p_adjusted']:.3g})"


def findings(s: dict, cells: list[dict], usage: dict, layers: int) -> str:
    """The findings in sentences with their numbers."""
    rel = {(r["test"], r["shift"], r["pathway"], r["controls"]): r for r in s["relations"]}
    adj = s["adjustment"]
    n = len(s["cells"])
    family = sum(1 for r in [*s["relations"], *s["spearman"]] if r["tested"])
    lines = [
        f"# Diagnostics: shift vs pathways ({s['run_dir']})",
        "",
        f"{n} cells with enough test sentences; {n * (n - 1) // 2} cell pairs. Typology: {s['typology']}.",
        "",
        f"All {family} tests of this report are one family: p-values are {adj['method']}-adjusted "
        f"({'Holm, family-wise' if adj['method'] == 'holm' else 'Benjamini-Hochberg, false discovery rate'}) "
        f"and significance is read at {adj['alpha']} from the adjusted p; a relation over fewer than "
        f"{adj['min_cells']} cells is not tested.",
        "",
    ]
    lines += _permutation_floor_lines(adj, family)
    lines.append("## Mantel tests (pathway distance = mean JS divergence of the per-layer pattern distributions)")
    lines.append("")
    for r in sorted(
        (r for r in s["relations"] if r["test"] == "mantel" and r["pathway"] == "pattern_js"),
        key=lambda r: -abs(r["r"]) if r["r"] == r["r"] else 0,
    ):
        lines.append(f"- {r['shift']}: r = {r['r']:.3f}, {_p(r)} ({r['permutations']} permutations), {r['status']}.")
    lines += ["", "## Language or domain?", ""]
    for x, z in PARTIAL:
        r = rel.get(("partial_mantel", x, "pattern_js", z))
        if r:
            lines.append(
                f"- {x} vs pathway distance with {z} held fixed: partial r = {r['r']:.3f}, {_p(r)}, {r['status']}."
            )
    lines += ["", "## Compute against shift and uncertainty (Spearman, 95% bootstrap interval)", ""]
    for r in s["spearman"]:
        lines.append(
            f"- {r['relation']} ({r['n']} {r['unit']}): rho = {r['rho']:.3f} "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}], {_p(r)}, {r['status']}."
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
    lines += words_and_units_lines(s)
    lines.append(
        "These are the first published numbers of their kind for this setting; they are reported whatever they are."
    )
    return "\n".join(lines) + "\n"


def _permutation_floor_lines(adj: dict, family: int) -> list[str]:
    """A warning when the smallest attainable Mantel p, adjusted over the family, cannot pass ``alpha``."""
    if family / (adj.get("permutations", 9999) + 1) < adj["alpha"]:
        return []
    return [
        f"**Warning**: with {adj['permutations']} permutations the smallest Mantel p is "
        f"{1 / (adj['permutations'] + 1):.2g}; adjusted over {family} tests it cannot fall under "
        f"{adj['alpha']}: no Mantel relation can be significant. Raise `permutations`.",
        "",
    ]


def _tag(t: dict) -> str:
    n = t["languages"]
    return f"{t['tag']} {t['relative']:.3f} ({n} language{'' if n == 1 else 's'})"


def words_and_units_lines(s: dict) -> list[str]:
    """Which tags get compute and which units each adaptation changed most, in sentences."""
    lines = []
    tags = s.get("compute_by_tag") or []
    if tags:
        fmt = ", ".join
        lines += [
            "## Which words get compute (a tag's mean word compute over its language's mean, averaged over "
            "languages; compute_by_tag.csv, compute_by_tag.png)",
            "",
            "- most: " + fmt(_tag(t) for t in tags[:3]),
            "- least: " + fmt(_tag(t) for t in tags[-3:]),
            "",
        ]
    units = s.get("adapted_units") or {}
    if units:
        lines += ["## Units each adaptation changed most (share of the target's summed unit deltas)", ""]
        for target, top in units.items():
            what = ", ".join(
                f"layer {r['layer']} {'head' if r['kind'] == 'head' else 'FFN group'} {r['unit']} ({r['share']:.3f})"
                for r in top
            )
            lines.append(f"- {target}: {what}")
        lines.append("")
    return lines
