"""Meta-learn the sparsity controllers, then adapt and evaluate on the held-out cells.

python -m metasparse.meta_train +domain=legal          # every legal cell is a target
python -m metasparse.meta_train +language=fi           # every Finnish cell is a target
python -m metasparse.meta_train experiment=smoke +domain=legal
python -m metasparse.meta_train +domain=legal resume=outputs/2026-11-28/10-00-00
torchrun --nproc_per_node=2 -m metasparse.meta_train +domain=legal hydra.run.dir=outputs/legal_ddp
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.cli import one_line_errors
from metasparse.config import MetaTrainConfig
from metasparse.distributed import is_main, shared_run_dir
from metasparse.meta.run import run
from metasparse.tracking import job_tracking

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="meta_train")
@one_line_errors
def main(cfg: DictConfig) -> float:
    out_dir = shared_run_dir(Path(HydraConfig.get().runtime.output_dir))  # torchrun: rank 0's, for every rank
    config = OmegaConf.to_object(cfg)
    with job_tracking(config, out_dir, "meta_train", enabled=is_main()):
        metrics = run(config, out_dir)
    return float(metrics.get("objective", float("nan")))


__all__ = ["MetaTrainConfig", "main", "run"]

if __name__ == "__main__":
    main()
