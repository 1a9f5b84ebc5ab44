"""Re-meet a run's budget on a new domain's text without labels, as a new calibration beside the run.

    python -m metasparse.recalibrate run_dir=<meta_train run> input=contracts.txt
    python -m metasparse.predict run_dir=<run> calibration=contracts-1a2b3c4d input=... out=...

What ``monitor`` advises when the data looks familiar but the controllers spend differently on it. The
controllers' decision biases are shifted (bisection) until their hard decisions on the input's sentences
cost ``budget`` of dense, in the run's budget unit; every ``holdout_every``-th sentence is left out and
shows whether the budget holds on text the calibration did not see. The run's own calibration is never
touched: the new one goes to ``<run_dir>/calibrations/<name>/``, and an existing name is refused.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.cli import check_paths, one_line_errors, run_dir_first
from metasparse.config import RecalibrateConfig
from metasparse.io import atomic_write, sha256_file

log = logging.getLogger(__name__)


def default_name(path: str | Path) -> str:
    """``<stem>-<first 8 hex of the file's sha256>``: the same text gets the same name (and is refused)."""
    return f"{Path(path).stem}-{sha256_file(path)[:8]}"


def run(cfg: RecalibrateConfig, out_dir: Path) -> dict:
    """Calibrate and store; returns (and writes to ``recalibrate.json``) the before/after costs."""
    from metasparse.control.train import calibrate_bias, corpus_fraction
    from metasparse.inference.documents import read_document
    from metasparse.meta.calibrations import calibration_dir, refuse_existing, save_calibration
    from metasparse.meta.load import load_run
    from metasparse.model.corpus import EncodedCorpus

    check_paths({"run_dir": (cfg.run_dir, "folder"), "input": (cfg.input, "file")})
    name = cfg.name or default_name(cfg.input)
    folder = calibration_dir(cfg.run_dir, name)
    refuse_existing(folder)  # before the model loads
    sentences = read_document(cfg.input, key="input").sentences[: cfg.max_sentences]
    loaded = load_run(cfg.run_dir)
    base = loaded.system.eval()
    system = copy.deepcopy(base)
    model, budget = system.backbone, cfg.budget or loaded.cfg.budget.target
    held = [s for i, s in enumerate(sentences) if cfg.holdout_every and i % cfg.holdout_every == cfg.holdout_every - 1]
    fit = [
        s for i, s in enumerate(sentences) if not (cfg.holdout_every and i % cfg.holdout_every == cfg.holdout_every - 1)
    ]

    def corpus(words):
        return EncodedCorpus.unlabelled(words, loaded.bundle.tokenizer, model.spec.suffix_buckets)

    def cost_on(sys, words) -> float | None:
        return corpus_fraction(model, sys.controller, corpus(words), sys.cost) if words else None

    before = {"fit": cost_on(base, fit), "held_out": cost_on(base, held)}
    shift = calibrate_bias(model, system.controller, corpus(fit), budget, cost=system.cost)
    after = {"fit": cost_on(system, fit), "held_out": cost_on(system, held)}
    unit = system.cost.unit if system.cost is not None else "flops"
    result = {
        "name": name,
        "folder": str(folder),
        "input": str(cfg.input),
        "input_sha256": sha256_file(cfg.input),
        "sentences": {"fit": len(fit), "held_out": len(held)},
        "budget": budget,
        "unit": unit,
        "shift": shift,
        "before": before,
        "after": after,
    }
    save_calibration(folder, system, result)
    atomic_write(out_dir / "recalibrate.json", json.dumps(result, indent=2))
    print(report(result))
    return result


def report(r: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    return "\n".join(
        [
            f"calibration {r['name']} -> {r['folder']}",
            f"budget {r['budget']} of dense ({r['unit']}); {r['sentences']['fit']} sentences fitted, "
            f"{r['sentences']['held_out']} held out",
            "| sentences | before | after |",
            "|---|---:|---:|",
            f"| fitted | {fmt(r['before']['fit'])} | {fmt(r['after']['fit'])} |",
            f"| held out | {fmt(r['before']['held_out'])} | {fmt(r['after']['held_out'])} |",
            f"use it: python -m metasparse.predict run_dir=<run> calibration={r['name']} input=... out=...",
        ]
    )


@run_dir_first
@hydra.main(version_base="1.3", config_path="../conf", config_name="recalibrate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
