"""Load a finished meta_train run: its config, data, backbone, calibrated controller and meta-learner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from metasparse.checkpoint import load_checkpoint
from metasparse.config import MetaTrainConfig
from metasparse.control.controller import Controller
from metasparse.data.prepare import DataBundle, prepare
from metasparse.meta.maml import MAML
from metasparse.meta.outer import build_algorithm
from metasparse.meta.system import GatedSystem


@dataclass
class LoadedRun:
    """Everything a run left behind, rebuilt.

    Attributes:
        run_dir: the run folder.
        cfg: its resolved config.
        bundle: its data (sources, targets, tokenizer).
        system: backbone + the run's final (calibrated) controller, in eval mode.
        algo: the meta-learner wrapped around ``system`` (for few-step adaptation).
    """

    run_dir: Path
    cfg: MetaTrainConfig
    bundle: DataBundle
    system: GatedSystem
    algo: MAML


def load_run_config(run_dir: Path) -> MetaTrainConfig:
    """The resolved config a meta_train run was started with (its ``.hydra/config.yaml``)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"run_dir={run_dir}: no {path.relative_to(run_dir)}; is this a meta_train run dir?")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(MetaTrainConfig), OmegaConf.load(path)))


def new_controller(backbone, cfg: MetaTrainConfig) -> Controller:
    """A fresh controller for ``backbone`` as the run's config describes it."""
    return Controller(backbone, cfg.controller)


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild a run from its folder (the backbone and tokenizer come from the cache, verified by hash)."""
    from metasparse.train.pretraining import pretrain

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    final = run_dir / "ckpt" / "final"
    if not (final / "state.json").exists():
        raise FileNotFoundError(f"run_dir={run_dir}: no finished controller at {final} (did the run complete?)")
    bundle = prepare(cfg)
    backbone, _, _ = pretrain(cfg, bundle)
    for p in backbone.parameters():
        p.requires_grad_(False)
    system = GatedSystem(backbone, new_controller(backbone, cfg))
    tensors, _ = load_checkpoint(final)
    params = dict(system.controller.named_parameters())
    with torch.no_grad():
        for k, v in tensors.items():
            params[k.removeprefix("param.")].copy_(v)
    algo = build_algorithm(system, cfg)
    return LoadedRun(run_dir, cfg, bundle, system.eval(), algo)
