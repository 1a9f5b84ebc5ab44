"""The figure an evaluate run draws: accuracy against measured wall-clock, per method, at each batch size
(the front a user picks a method from; FLOPs alone would misplace the per-input methods)."""

from __future__ import annotations

from pathlib import Path

from metasparse.io import atomic_write

MARKERS = {"dense": "*", "per-input": "o", "static": "s", "training-free": "^", "peer": "D"}


def accuracy_wall_front(result: dict, path: Path, tasks: tuple[str, ...] = ("upos", "deprel")) -> Path | None:
    """One panel per task: macro-cells source accuracy (y) against the measured wall ratio to dense (x),
    one marker per method and batch size (filled: batch 1, hollow: the largest batch). Written atomically
    as a PNG; None when the result has no speed table."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed = result.get("speed") or []
    if not speed:
        return None
    batches = sorted({r["batch"] for r in speed})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for i, (name, m) in enumerate(result["methods"].items()):
            acc = 100 * m["source_test"]["macro_cells"].get(task, float("nan"))
            color = f"C{i}"
            for b in (batches[0], batches[-1]):
                row = next((r for r in speed if r["method"] == name and r["batch"] == b), None)
                if row is None:
                    continue
                filled = b == batches[0]
                ax.scatter(
                    row["wall_ratio"],
                    acc,
                    marker=MARKERS.get(m.get("family", ""), "o"),
                    s=46,
                    color=color if filled else "none",
                    edgecolors=color,
                    label=name if filled else None,
                )
        ax.set_xlabel(f"wall-clock / dense (filled: batch {batches[0]}, hollow: batch {batches[-1]})", fontsize=8)
        ax.set_ylabel(f"{task.upper()} accuracy, macro over cells (%)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"accuracy against measured wall-clock, budget {result.get('budget')}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())
