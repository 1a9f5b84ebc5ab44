"""Figures of the diagnostics: cell-by-cell heatmaps, shift against pathway distance, usage by domain."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(m: np.ndarray, names: list[str], title: str, path: Path) -> None:
    plt = _plt()
    n = len(names)
    size = max(6.0, 0.16 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="viridis")
    ax.set_xticks(range(n), names, rotation=90, fontsize=5)
    ax.set_yticks(range(n), names, fontsize=5)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scatter_fit(x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    """Scatter of the cell pairs with the least-squares line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(x, y, s=6, alpha=0.4)
    if np.ptp(x) > 0:
        slope, icpt = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, slope * xs + icpt, color="C3", label=f"fit: {slope:.3f} x + {icpt:.3f}")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def usage_by_domain(usage: dict[str, np.ndarray], layers: int, path: Path, apart: bool = True) -> None:
    """Mean share of units used per layer, one line per domain: heads and FFN groups in two panels when the
    codebook lets the controller choose them apart (``apart``), else one panel (the two would be one curve)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if apart else 1, figsize=(9 if apart else 5, 3.6), sharey=True, squeeze=False)
    axes = axes[0]
    for dom, u in sorted(usage.items()):
        axes[0].plot(range(layers), u[:layers], marker="o", label=dom)
        if apart:
            axes[1].plot(range(layers), u[layers:], marker="o", label=dom)
    if apart:
        axes[0].set_title("attention heads used")
        axes[1].set_title("FFN groups used")
    else:
        axes[0].set_title("width used (heads and FFN groups switch together in this codebook)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("layer")
        ax.set_xticks(range(layers))
    axes[0].set_ylabel("share of units (mean over cells)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compute_vs_uncertainty(flops: list[float], unc: list[float], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(unc, flops, s=4, alpha=0.3)
    ax.set_xlabel("mean token uncertainty (normalised UPOS entropy)")
    ax.set_ylabel("FLOPs / dense of the sentence")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def matrix(
    m: np.ndarray, rows: list[str], cols: list[str], title: str, path: Path, *, center: float | None = None
) -> None:
    """A labelled rows-by-columns heatmap (NaN cells blank); ``center``: a diverging scale around it."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.3 * len(cols) + 2.5), max(3.0, 0.28 * len(rows) + 1.5)))
    kw = {"cmap": "viridis"}
    if center is not None and np.isfinite(m).any():
        span = float(np.nanmax(np.abs(m - center))) or 1.0
        kw = {"cmap": "RdBu_r", "vmin": center - span, "vmax": center + span}
    im = ax.imshow(np.ma.masked_invalid(m), aspect="auto", **kw)
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
