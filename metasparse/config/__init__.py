"""Typed configuration: the job schemas, registered in Hydra's ConfigStore.

Each component keeps its own config beside it (``DataConfig`` and the held-out ``DomainConfig`` /
``LanguageConfig`` in :mod:`metasparse.data.prepare`, ``TokenizerConfig`` in :mod:`metasparse.data.tokenizer`,
``EpisodeConfig`` in :mod:`metasparse.data.episodes`, ``ModelConfig`` and the codebook's ``PatternSpec`` in
:mod:`metasparse.model`, ``ControllerSpec`` in :mod:`metasparse.control.controller`); the job schemas here are
composed from them. YAML files under ``conf/`` extend these dataclasses, so a misspelt key or a wrong type
fails when the config is composed, and ``__post_init__`` refuses out-of-range values with the key and the
allowed range. ``domain`` and ``language`` are optional and absent from every defaults list, so that users
append them with ``+domain=legal`` / ``+language=fi``.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore

from metasparse.config.analysis import DiagnoseConfig, MonitorConfig, PredictConfig, RecalibrateConfig
from metasparse.config.evaluation import (
    METHODS,
    CostBenchConfig,
    CostBenchOptions,
    EvaluateConfig,
    ExitBenchConfig,
    ExitBenchOptions,
    HeadroomConfig,
    LatencyOptions,
    SpeedBenchConfig,
    SpeedBenchOptions,
    TransferBenchConfig,
)
from metasparse.config.joint import JointConfig
from metasparse.config.training import (
    ADAPT_PARTS,
    ALGORITHMS,
    AdaptConfig,
    AdaptRunConfig,
    BudgetConfig,
    MetaConfig,
    MetaTrainConfig,
    PretrainConfig,
    PretrainOptimConfig,
    TargetDataConfig,
    adapt_parts,
)
from metasparse.control.controller import ControllerSpec
from metasparse.data.episodes import EpisodeConfig
from metasparse.data.prepare import DataConfig, DomainConfig, LanguageConfig
from metasparse.data.tokenizer import TokenizerConfig
from metasparse.model.encoder import ModelConfig

CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf"

__all__ = [
    "ADAPT_PARTS",
    "adapt_parts",
    "ALGORITHMS",
    "CONF_DIR",
    "AdaptConfig",
    "AdaptRunConfig",
    "BudgetConfig",
    "ControllerSpec",
    "CostBenchConfig",
    "CostBenchOptions",
    "ExitBenchConfig",
    "ExitBenchOptions",
    "HeadroomConfig",
    "DataConfig",
    "DiagnoseConfig",
    "DomainConfig",
    "EpisodeConfig",
    "EvaluateConfig",
    "JointConfig",
    "LanguageConfig",
    "LatencyOptions",
    "METHODS",
    "MetaConfig",
    "MetaTrainConfig",
    "ModelConfig",
    "MonitorConfig",
    "PredictConfig",
    "PretrainConfig",
    "RecalibrateConfig",
    "PretrainOptimConfig",
    "SpeedBenchConfig",
    "SpeedBenchOptions",
    "TargetDataConfig",
    "TokenizerConfig",
    "TransferBenchConfig",
    "register_configs",
]


def register_configs() -> None:
    """Store the schemas under the names the YAML defaults lists use."""
    cs = ConfigStore.instance()
    cs.store(name="meta_train_schema", node=MetaTrainConfig)
    cs.store(name="pretrain_schema", node=PretrainConfig)
    cs.store(name="bench_speed_schema", node=SpeedBenchConfig)
    cs.store(name="bench_costs_schema", node=CostBenchConfig)
    cs.store(name="bench_exits_schema", node=ExitBenchConfig)
    cs.store(name="bench_headroom_schema", node=HeadroomConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="bench_transfer_schema", node=TransferBenchConfig)
    cs.store(name="diagnose_schema", node=DiagnoseConfig)
    cs.store(name="monitor_schema", node=MonitorConfig)
    cs.store(name="adapt_schema", node=AdaptRunConfig)
    cs.store(name="predict_schema", node=PredictConfig)
    cs.store(name="recalibrate_schema", node=RecalibrateConfig)
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="domain", name="schema", node=DomainConfig)
    cs.store(group="language", name="schema", node=LanguageConfig)


register_configs()
