"""Relate the linguistic shift between cells to the pathways a run's controllers choose.

    python -m metasparse.diagnose run_dir=<meta_train run>
    python -m metasparse.diagnose 'run_dirs=[<run seed 0>,<run seed 1>,<run seed 2>]'

For every cell (language x domain) with enough test sentences: shift measures from the data
(:mod:`metasparse.diagnostics.shift`, typology from lang2vec's data where installed) and the pathways
of the run's calibrated controller on the cell's test sentences. Then Mantel tests between every shift
matrix and every pathway matrix, partial Mantel tests separating language from domain, and Spearman
correlations (bootstrap intervals) between each cell's shift from the source cells and the FLOPs it
gets, and for the target cells the adaptation gain. Writes CSVs, PNGs and ``diagnostics.md`` into
``<run_dir>/diagnostics/``. With ``run_dirs``: each run's report in ``run<i>/`` and the pooled relations,
findings only what replicates in every run (:mod:`metasparse.diagnostics.replication`).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.cli import check_paths, one_line_errors
from metasparse.config import DiagnoseConfig


def run(cfg: DiagnoseConfig, out_dir: Path) -> dict:
    """Compute the diagnostics of ``cfg.run_dir`` (or of each of ``cfg.run_dirs``, pooled) into ``out_dir``;
    returns the summary in ``diagnostics.json``."""
    from metasparse.diagnostics.report import diagnose
    from metasparse.meta.load import load_run

    check_paths({f"run_dirs[{i}]": (d, "folder") for i, d in enumerate(cfg.run_dirs)})
    if cfg.run_dir is not None:
        check_paths({"run_dir": (cfg.run_dir, "folder")})
        summary = diagnose(load_run(cfg.run_dir), cfg, out_dir)
    else:
        summary = diagnose_runs(cfg, out_dir)
    print((out_dir / "diagnostics.md").read_text())
    return summary


def diagnose_runs(cfg: DiagnoseConfig, out_dir: Path) -> dict:
    """Each run into ``out_dir/run<i>/``, then the pooled relations and the replication report."""
    import dataclasses
    import json

    from metasparse.diagnostics.replication import pool, replication_report
    from metasparse.diagnostics.report import diagnose
    from metasparse.io import atomic_write, csv_text
    from metasparse.meta.load import load_run

    runs = []
    for i, d in enumerate(cfg.run_dirs):
        one = dataclasses.replace(cfg, run_dir=d, run_dirs=[])
        runs.append(diagnose(load_run(d), one, out_dir / f"run{i}"))
    relations, spearman = pool(runs, "relations"), pool(runs, "spearman")
    adjustment = runs[0]["adjustment"]
    atomic_write(out_dir / "relations.csv", csv_text(relations))
    atomic_write(out_dir / "spearman.csv", csv_text(spearman))
    atomic_write(out_dir / "diagnostics.md", replication_report(cfg.run_dirs, relations, spearman, adjustment, runs))
    summary = {"run_dirs": list(cfg.run_dirs), "relations": relations, "spearman": spearman, "adjustment": adjustment}
    atomic_write(out_dir / "diagnostics.json", json.dumps(summary, indent=2))
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="diagnose")
@one_line_errors
def main(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "run_dir") and cfg.run_dirs:
        cfg.run_dir = None  # several runs: the single-run key stays unset
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
