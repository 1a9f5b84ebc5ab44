"""Meta-learn the sparsity controllers, then adapt and evaluate on the held-out cells.

python -m metasparse.meta_train +domain=legal          # every legal cell is a target
python -m metasparse.meta_train +language=fi           # every Finnish cell is a target
python -m metasparse.meta_train experiment=smoke +domain=legal
python -m metasparse.meta_train +domain=legal resume=outputs/2026-11-28/10-00-00
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.config import MetaTrainConfig
from metasparse.meta.run import run

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="meta_train")
def main(cfg: DictConfig) -> float:
    metrics = run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))
    return float(metrics["objective"])


__all__ = ["MetaTrainConfig", "main", "run"]

if __name__ == "__main__":
    main()
