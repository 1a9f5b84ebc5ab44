"""The evaluation protocol for a meta_train run and one or more methods, side by side with dense.

    python -m metasparse.evaluate run_dir=<run> methods=[meta]
    python -m metasparse.evaluate run_dir=<run> methods=[all] budget=0.5
    python -m metasparse.evaluate run_dir=<run> methods=[meta,importance] experiment=quick out=/tmp/eval.json

For every method at the budget: UPOS and DEPREL accuracy and macro-F1 on the source test cells and on
the run's target cells (zero-shot), FLOPs per word, latency p50/p90/p99 at batch 1 and 32, words per
second and CPU time per 1,000 words (all methods timed in the same interleaved rounds), batch-size
consistency (batch 1 vs 32) and stress inputs (5% and 10% character noise, sentences concatenated up
to 512 subwords) with their drift against clean input. Writes ``evaluate.json``, ``evaluate.md`` and
``front.png`` (accuracy against measured wall-clock).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.cli import check_paths, one_line_errors, run_dir_first
from metasparse.config import EvaluateConfig
from metasparse.io import write_result


def run(cfg: EvaluateConfig, out_dir: Path) -> dict:
    """Run the protocol; writes ``evaluate.json`` and ``evaluate.md`` and returns the former's content."""
    from metasparse.protocol.figures import accuracy_wall_front
    from metasparse.protocol.suite import evaluate_run, format_report

    check_paths({"run_dir": (cfg.run_dir, "folder"), "out": (cfg.out, "output")})
    out = evaluate_run(cfg)
    write_result(out_dir, "evaluate", out, format_report(out), cfg.out)
    accuracy_wall_front(out, out_dir / "front.png")
    return out


@run_dir_first
@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
