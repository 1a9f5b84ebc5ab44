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

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.cli import one_line_errors
from metasparse.config import DiagnoseConfig


def run(cfg: DiagnoseConfig, out_dir: Path) -> dict:
    """Compute the diagnostics of ``cfg.run_dir`` into ``out_dir``; returns the summary in ``diagnostics.json``."""
    from metasparse.diagnostics.report import diagnose
    from metasparse.meta.load import load_run

    summary = diagnose(load_run(cfg.run_dir), cfg, out_dir)
    print((out_dir / "diagnostics.md").read_text())
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="diagnose")
@one_line_errors
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
