"""Pretrain the sparsity-aware backbone (cached; later entry points reuse it).

python -m metasparse.pretrain                      # all cells, default small model
python -m metasparse.pretrain +domain=legal        # the backbone for a `+domain=legal` run
python -m metasparse.pretrain model=tiny pretrain.epochs=1
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.config import PretrainConfig
from metasparse.data.prepare import prepare
from metasparse.io import atomic_write
from metasparse.train.pretraining import format_report, pretrain

log = logging.getLogger(__name__)


def run(cfg: PretrainConfig, out_dir: Path) -> dict:
    """Train or load the backbone; write ``metrics.json`` and ``report.md`` into ``out_dir``."""
    bundle = prepare(cfg)
    _, metrics, folder = pretrain(cfg, bundle)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "metrics.json", json.dumps({**metrics, "checkpoint": str(folder)}, indent=2))
    report = format_report(metrics)
    atomic_write(out_dir / "report.md", report)
    log.info("backbone at %s\n%s", folder, report)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="pretrain")
def main(cfg: DictConfig) -> float:
    metrics = run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))
    return float(metrics["macro"]["upos"]["dense"]) if "upos" in metrics["macro"] else 0.0


if __name__ == "__main__":
    main()
