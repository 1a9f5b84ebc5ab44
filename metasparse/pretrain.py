"""Pretrain the sparsity-aware backbone (cached; later entry points reuse it).

python -m metasparse.pretrain                      # all cells, default small model
python -m metasparse.pretrain +domain=legal        # the backbone for a `+domain=legal` run
python -m metasparse.pretrain model=tiny pretrain.epochs=1
python -m metasparse.pretrain +domain=legal joint.steps=300   # then co-train backbone and controller
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.cli import one_line_errors
from metasparse.config import PretrainConfig
from metasparse.data.prepare import prepare
from metasparse.distributed import is_main, main_first, rank_and_size, shared_run_dir
from metasparse.errors import ConfigValueError
from metasparse.io import atomic_write
from metasparse.protocol.learned_vs_random import (
    format_comparison,
    frozen_backbone_comparison,
    learned_vs_random,
    source_corpora,
)
from metasparse.tracking import job_tracking, log_scalars
from metasparse.train.joint import backbone_with_controller
from metasparse.train.pretraining import format_report, pretrain

log = logging.getLogger(__name__)


def run(cfg: PretrainConfig, out_dir: Path) -> dict:
    """Train or load the backbone (and, with ``joint.steps > 0``, co-train it with a controller and compare
    learned with random per-input decisions on it); write ``metrics.json`` and ``report.md`` into ``out_dir``."""
    if rank_and_size()[1] > 1 and cfg.joint.steps > 0:
        raise ConfigValueError(
            "joint.steps>0 under torchrun: allowed: joint.steps=0 (pretrain data-parallel, then run the joint phase "
            "in one process with the same config; the pretrained backbone is cached and reused)"
        )
    with main_first():  # rank 0 trains the tokenizer and fills the data caches; the others read them
        bundle = prepare(cfg)
    model, metrics, folder, ctrl = backbone_with_controller(cfg, bundle)
    if not is_main():
        return metrics
    report = format_report(metrics)
    if ctrl is not None:  # learned vs random on the co-trained backbone, and on the backbone before it
        train, calib, test = source_corpora(bundle, model.spec.suffix_buckets, seed=cfg.seed)
        j = metrics["joint"]
        j["comparison"] = learned_vs_random(model, ctrl, calib, test, cfg.joint.target, cfg.seed)
        pretrained, _, _ = pretrain(cfg, bundle)  # a cache hit
        j["comparison_before"] = frozen_backbone_comparison(
            pretrained, cfg.controller, train, calib, test, cfg.joint.target, cfg.seed
        )
        report += "\n" + format_comparison(j["comparison"], "Co-trained backbone (joint phase): learned vs random")
        report += "\n" + format_comparison(
            j["comparison_before"],
            "Backbone before the joint phase, controller trained on it frozen: learned vs random",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    log_scalars("backbone", {f"{t}_dense": m["dense"] for t, m in metrics["macro"].items()}, metrics.get("steps", 0))
    atomic_write(out_dir / "metrics.json", json.dumps({**metrics, "checkpoint": str(folder)}, indent=2))
    atomic_write(out_dir / "report.md", report)
    log.info("backbone at %s\n%s", folder, report)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="pretrain")
@one_line_errors
def main(cfg: DictConfig) -> float:
    config = OmegaConf.to_object(cfg)
    out_dir = shared_run_dir(Path(HydraConfig.get().runtime.output_dir))  # torchrun: rank 0's, for every rank
    with job_tracking(config, out_dir, "pretrain", enabled=is_main()):
        metrics = run(config, out_dir)
    if not is_main():
        return 0.0
    return float(metrics["macro"]["upos"]["dense"]) if "upos" in metrics["macro"] else 0.0


if __name__ == "__main__":
    main()
