"""The diagnostics' findings written out in sentences, each with its numbers."""

from __future__ import annotations

from metasparse.diagnostics.relations import PARTIAL


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
    for x, z in PARTIAL:
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
