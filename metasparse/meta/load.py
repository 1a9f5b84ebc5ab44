"""Load a finished meta_train run: its config, data, backbone, calibrated controller and meta-learner."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from metasparse.checkpoint import load_checkpoint
from metasparse.config import MetaTrainConfig, adapt_parts
from metasparse.config.training import outer_seed
from metasparse.control.budget import CostModel, budget_cost
from metasparse.control.controller import Controller
from metasparse.data.prepare import DataBundle, prepare
from metasparse.distributed import main_first
from metasparse.errors import PathError
from metasparse.meta.maml import MAML
from metasparse.meta.outer import build_algorithm
from metasparse.meta.system import GatedSystem
from metasparse.model.adapters import attach_adapters
from metasparse.model.encoder import GatedEncoder


@dataclass
class LoadedRun:
    """Everything a run left behind, rebuilt.

    Attributes:
        run_dir: the run folder.
        cfg: its resolved config.
        bundle: its data (sources, targets, tokenizer).
        system: backbone + the run's final (calibrated) controller, in eval mode.
        algo: the meta-learner wrapped around ``system`` (for few-step adaptation).
        pretrained: the backbone as pretrained, without the run's meta-learned heads, norms or adapters
            (where the baselines start).
        backbone_dir: the cached backbone's folder (its cost tables live there).
        joint_controller: the joint phase's controller, where meta-training started (None: the backbone had
            no joint phase, ``joint.steps=0``); ``evaluate``'s ``joint`` method, meta-training's ablation.
    """

    run_dir: Path
    cfg: MetaTrainConfig
    bundle: DataBundle
    system: GatedSystem
    algo: MAML
    pretrained: GatedEncoder
    backbone_dir: Path | None = None
    joint_controller: Controller | None = None


def load_run_config(run_dir: Path) -> MetaTrainConfig:
    """The resolved config a meta_train run was started with (its ``.hydra/config.yaml``)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        raise PathError(f"run_dir={run_dir}: no {path.relative_to(run_dir)}; is this a meta_train run dir?")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(MetaTrainConfig), OmegaConf.load(path)))


def new_controller(backbone, cfg: MetaTrainConfig) -> Controller:
    """A fresh controller for ``backbone`` as the run's config describes it."""
    return Controller(backbone, cfg.controller)


def uses_adapters(cfg: MetaTrainConfig) -> bool:
    """Whether the run's adapt set includes pathway adapters (and their kind is not ``none``)."""
    return "adapters" in adapt_parts(cfg.meta.adapt) and cfg.adapters.kind != "none"


def attach_initial_adapters(backbone: GatedEncoder, cfg: MetaTrainConfig, seed: int) -> GatedEncoder:
    """Attach the run's pathway adapters at their initial values (if its adapt set uses any), seeded apart
    from everything else by ``seed``; returns ``backbone``."""
    if uses_adapters(cfg):
        torch.manual_seed(seed * 1_000_003 + 7)
        attach_adapters(backbone, cfg.adapters)
    return backbone


def system_cost(backbone: GatedEncoder, cfg: MetaTrainConfig, backbone_dir: Path | None) -> CostModel | None:
    """How the run's budget prices decisions: None for FLOPs (analytic), else the backbone's latency table
    for this machine (measured and stored beside the backbone on first use; re-measured when stale)."""
    b = cfg.budget
    if b.unit == "flops":
        return None
    with main_first():  # under torchrun rank 0 measures; the others read its table
        return budget_cost(
            b.unit,
            backbone,
            backbone_dir,
            batch=b.batch,
            threads=b.threads,
            rounds=b.cost_rounds,
            controller=cfg.controller,
        )


def new_system(
    backbone: GatedEncoder,
    cfg: MetaTrainConfig,
    backbone_dir: Path | None = None,
    *,
    cost: CostModel | None = None,
) -> GatedSystem:
    """A fresh controller (seeded by ``meta.seed``, else ``cfg.seed``) on ``backbone``, with pathway
    adapters at their initial values attached when the adapt set includes them (seeded apart, so the
    controller's initialisation is the same with or without adapters), and the budget's cost model:
    ``cost`` if given, else the run's (``backbone_dir``: where a latency table lives).

    The cost model is built after the adapters are attached: a latency table times the architecture that
    runs, and pathway adapters add small matmuls to every unit (priced without them, a run met its
    0.5 budget on paper and ran at 0.55 of dense at batch 1). Measuring or loading a table leaves the
    global random state as it found it, so a run does not depend on whether its table was cached.
    """
    torch.manual_seed(outer_seed(cfg))
    system = GatedSystem(backbone, new_controller(backbone, cfg))
    attach_initial_adapters(backbone, cfg, outer_seed(cfg))
    with torch.random.fork_rng():
        system.cost = cost if cost is not None else system_cost(backbone, cfg, backbone_dir)
    return system


def load_system_state(system: GatedSystem, tensors: dict[str, torch.Tensor]) -> None:
    """Write a final checkpoint's ``param.<name>`` tensors into ``system`` (names relative to the system;
    older runs saved the controller's alone, relative to the controller)."""
    params = dict(system.named_parameters())
    with torch.no_grad():
        for k, v in tensors.items():
            name = k.removeprefix("param.")
            name = name if name in params else f"controller.{name}"
            if name not in params:
                raise KeyError(f"checkpoint tensor {k!r} matches no parameter of the run's system")
            params[name].copy_(v)


def load_algorithm_state(algo: MAML, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Write the algorithm's own meta-parameters (``algo.<name>``: learned inner rates, mask scores) back."""
    params = {n: p for n, p in algo.named_parameters() if not n.startswith("module.")}
    with torch.no_grad():
        for k, v in tensors.items():
            name = k.removeprefix("algo.")
            if name not in params:
                raise KeyError(f"{source}: tensor {k!r} matches no meta-parameter of meta.algorithm's learner")
            params[name].copy_(v)


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild a run from its folder (the backbone and tokenizer come from the cache, verified by hash)."""
    from metasparse.train.joint import backbone_with_controller

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    final = run_dir / "ckpt" / "final"
    if not (final / "state.json").exists():
        raise PathError(f"run_dir={run_dir}: no finished controller at {final} (did the run complete?)")
    bundle = prepare(cfg)
    backbone, _, backbone_dir, joint_controller = backbone_with_controller(cfg, bundle)
    for p in backbone.parameters():
        p.requires_grad_(False)
    pretrained = copy.deepcopy(backbone).eval()
    system = new_system(backbone, cfg, backbone_dir)
    tensors, _ = load_checkpoint(final)
    load_system_state(system, {k: v for k, v in tensors.items() if not k.startswith("algo.")})
    algo = build_algorithm(system, cfg)
    load_algorithm_state(algo, {k: v for k, v in tensors.items() if k.startswith("algo.")}, final)
    return LoadedRun(run_dir, cfg, bundle, system.eval(), algo, pretrained, backbone_dir, joint_controller)
