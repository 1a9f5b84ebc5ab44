"""Typed configuration schema, registered in Hydra's ConfigStore.

YAML files under ``conf/`` extend these dataclasses, so a misspelt key or a wrong type fails when the
config is composed, and ``__post_init__`` refuses out-of-range values with the key and allowed range.
``domain`` and ``language`` are optional and absent from every defaults list, so that users append
them with ``+domain=legal`` / ``+language=fi``.

OmegaConf reads ``typing.List``/``Optional`` annotations, hence the older spelling in this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional  # noqa: UP035

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from metasparse.data.episodes import ON_SMALL
from metasparse.data.tokenizer import TokenizerSettings
from metasparse.errors import ConfigValueError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def _require(ok: bool, key: str, allowed: str, value: object) -> None:
    if not ok:
        raise ConfigValueError(f"{key}={value!r} is out of range; allowed: {allowed}")


@dataclass
class DataConfig:
    """Which treebanks, where, and how sentences are split.

    Attributes:
        root: data directory; null means ``$METASPARSE_DATA_DIR`` or the download cache.
        treebanks: registry treebanks to use; null means all.
        split_seed: seed of the hash split.
        split_fractions: train, dev, test shares.
        offline: forbid downloads; null means ``$METASPARSE_OFFLINE``.
    """

    root: Optional[str] = None  # noqa: UP045
    treebanks: Optional[List[str]] = None  # noqa: UP006, UP045
    split_seed: int = 0
    split_fractions: List[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])  # noqa: UP006
    offline: Optional[bool] = None  # noqa: UP045

    def __post_init__(self) -> None:
        f = list(self.split_fractions)
        _require(
            len(f) == 3 and min(f) >= 0 and abs(sum(f) - 1) < 1e-6,
            "data.split_fractions",
            "three non-negative numbers summing to 1",
            f,
        )


@dataclass
class TokenizerConfig:
    """Subword tokenizer settings (see :class:`metasparse.data.tokenizer.TokenizerSettings`)."""

    vocab_size: int = 8000
    model_type: str = "unigram"
    sentences_per_language: int = 1500
    character_coverage: float = 0.9995
    byte_fallback: bool = True
    hash_buckets: int = 65536

    def __post_init__(self) -> None:
        _require(self.vocab_size >= 300, "tokenizer.vocab_size", ">= 300", self.vocab_size)
        _require(
            self.model_type in ("unigram", "bpe"), "tokenizer.model_type", "unigram, bpe", self.model_type
        )
        _require(
            self.sentences_per_language >= 1,
            "tokenizer.sentences_per_language",
            ">= 1",
            self.sentences_per_language,
        )
        _require(
            0.9 <= self.character_coverage <= 1.0,
            "tokenizer.character_coverage",
            "[0.9, 1.0]",
            self.character_coverage,
        )
        _require(self.hash_buckets >= 2, "tokenizer.hash_buckets", ">= 2", self.hash_buckets)

    def settings(self, seed: int) -> TokenizerSettings:
        return TokenizerSettings(
            self.vocab_size,
            self.model_type,
            self.sentences_per_language,
            self.character_coverage,
            self.byte_fallback,
            self.hash_buckets,
            seed,
        )


@dataclass
class EpisodeConfig:
    """Episode shape.

    Attributes:
        tasks: task names from ``tasks/``.
        shots: support sentences per episode (K).
        queries: query sentences per episode (Q).
        on_small: what to do with cells smaller than K+Q: ``skip`` (warn) or ``error``.
    """

    tasks: List[str] = field(default_factory=lambda: ["upos"])  # noqa: UP006
    shots: int = 16
    queries: int = 16
    on_small: str = "skip"

    def __post_init__(self) -> None:
        _require(self.shots >= 1, "episodes.shots", ">= 1", self.shots)
        _require(self.queries >= 1, "episodes.queries", ">= 1", self.queries)
        _require(self.on_small in ON_SMALL, "episodes.on_small", ", ".join(ON_SMALL), self.on_small)
        _require(len(self.tasks) >= 1, "episodes.tasks", "a non-empty list of task names", self.tasks)


@dataclass
class DomainConfig:
    """A held-out domain: every cell of it becomes a target (``+domain=<name>``)."""

    name: str = MISSING


@dataclass
class LanguageConfig:
    """A held-out language: every cell of it becomes a target (``+language=<code>``)."""

    code: str = MISSING


@dataclass
class MetaTrainConfig:
    """Schema of ``conf/meta_train.yaml``."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    domain: Optional[DomainConfig] = None  # noqa: UP045
    language: Optional[LanguageConfig] = None  # noqa: UP045


def register_configs() -> None:
    """Store the schemas under the names the YAML defaults lists use."""
    cs = ConfigStore.instance()
    cs.store(name="meta_train_schema", node=MetaTrainConfig)
    cs.store(group="domain", name="schema", node=DomainConfig)
    cs.store(group="language", name="schema", node=LanguageConfig)


register_configs()
