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
from typing import Dict, List, Optional  # noqa: UP035

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
        _require(self.model_type in ("unigram", "bpe"), "tokenizer.model_type", "unigram, bpe", self.model_type)
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
    split: str = "dev"

    # Why dev: the backbone was trained for several epochs on the source cells' train split and has
    # nearly memorised it (query loss ~0.01 there), so episodes from it teach a controller that every
    # input is easy. Dev sentences are unseen by the backbone, like the target cells' sentences.

    def __post_init__(self) -> None:
        _require(self.shots >= 1, "episodes.shots", ">= 1", self.shots)
        _require(self.queries >= 1, "episodes.queries", ">= 1", self.queries)
        _require(self.on_small in ON_SMALL, "episodes.on_small", ", ".join(ON_SMALL), self.on_small)
        _require(len(self.tasks) >= 1, "episodes.tasks", "a non-empty list of task names", self.tasks)
        _require(self.split in ("train", "dev"), "episodes.split", "train, dev", self.split)


@dataclass
class DomainConfig:
    """A held-out domain: every cell of it becomes a target (``+domain=<name>``)."""

    name: str = MISSING


@dataclass
class LanguageConfig:
    """A held-out language: every cell of it becomes a target (``+language=<code>``).

    Attributes:
        code: the language held out.
        also: further languages held out with it (``+language=fi '+language.also=[el,hr]'``), so one
            backbone serves a transfer benchmark over several unseen languages.
    """

    code: str = MISSING
    also: List[str] = field(default_factory=list)  # noqa: UP006


@dataclass
class PatternConfig:
    """One codebook entry: fractions of heads, FFN groups and tokens, and top-k (see PatternSpec)."""

    heads: float = 1.0
    ffn: float = 1.0
    tokens: float = 1.0
    topk: Optional[int] = None  # noqa: UP045


def _default_codebook() -> list:
    return [
        PatternConfig(0.0, 0.0),
        PatternConfig(0.25, 0.25),
        PatternConfig(0.5, 0.5),
        PatternConfig(0.75, 0.75),
        PatternConfig(1.0, 1.0),
    ]


@dataclass
class ModelConfig:
    """Encoder architecture (``conf/model/*.yaml``)."""

    name: str = "small"
    layers: int = 4
    d_model: int = 256
    heads: int = 8
    d_ffn: int = 1024
    ffn_groups: int = 8
    dropout: float = 0.1
    max_positions: int = 256
    suffix_buckets: int = 32768
    codebook: List[PatternConfig] = field(default_factory=_default_codebook)  # noqa: UP006

    def __post_init__(self) -> None:
        for key in ("layers", "d_model", "heads", "d_ffn", "ffn_groups", "max_positions", "suffix_buckets"):
            _require(getattr(self, key) >= 1, f"model.{key}", ">= 1", getattr(self, key))
        _require(self.d_model % self.heads == 0, "model.heads", f"a divisor of d_model={self.d_model}", self.heads)
        _require(
            self.d_ffn % self.ffn_groups == 0,
            "model.ffn_groups",
            f"a divisor of d_ffn={self.d_ffn}",
            self.ffn_groups,
        )
        _require(0.0 <= self.dropout < 1.0, "model.dropout", "[0, 1)", self.dropout)


@dataclass
class PretrainOptimConfig:
    """Sparsity-aware pretraining of the backbone.

    Attributes:
        epochs: passes over the source train split (the learning-rate schedule spans them).
        max_words: padded words per batch.
        lr, warmup, weight_decay, grad_clip: AdamW with linear warmup and linear decay.
        sparse_weight: weight of the loss under a random pattern per layer, added every step to the
            dense loss so narrower prefixes keep working (0 trains dense only).
        eval_every: steps between dev evaluations (0: only at the end).
        checkpoint_every: steps between resumable checkpoints.
        max_minutes: stop early (with a warning) past this wall-clock time; the cache is still written.
        threads: torch threads (null: leave torch's default).
        word_dropout: share of word-form buckets replaced by the unknown id per training step, so the
            model also learns from subwords and suffixes (it otherwise nearly memorises its train split).
    """

    epochs: float = 6.0
    max_words: int = 2048
    lr: float = 2e-3
    warmup: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    sparse_weight: float = 1.0
    eval_every: int = 0
    checkpoint_every: int = 500
    max_minutes: float = 30.0
    threads: Optional[int] = None  # noqa: UP045
    word_dropout: float = 0.25

    def __post_init__(self) -> None:
        _require(self.epochs > 0, "pretrain.epochs", "> 0", self.epochs)
        _require(self.max_words >= 256, "pretrain.max_words", ">= 256", self.max_words)
        _require(self.lr > 0, "pretrain.lr", "> 0", self.lr)
        _require(0 <= self.warmup < 1, "pretrain.warmup", "[0, 1)", self.warmup)
        _require(self.sparse_weight >= 0, "pretrain.sparse_weight", ">= 0", self.sparse_weight)
        _require(self.max_minutes > 0, "pretrain.max_minutes", "> 0", self.max_minutes)
        _require(self.checkpoint_every >= 1, "pretrain.checkpoint_every", ">= 1", self.checkpoint_every)
        _require(0 <= self.word_dropout < 1, "pretrain.word_dropout", "[0, 1)", self.word_dropout)


@dataclass
class PretrainConfig:
    """Schema of ``conf/pretrain.yaml``."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainOptimConfig = field(default_factory=PretrainOptimConfig)
    tasks: List[str] = field(default_factory=lambda: ["upos", "deprel"])  # noqa: UP006
    domain: Optional[DomainConfig] = None  # noqa: UP045
    language: Optional[LanguageConfig] = None  # noqa: UP045


@dataclass
class SpeedBenchOptions:
    """What ``metasparse.bench.speed`` measures.

    Attributes:
        batches: batch sizes.
        targets: FLOPs targets (fractions of dense, controller included).
        repeats: timed rounds per (batch, target), dense and gated interleaved.
        sentences: sentences timed per round at batch 1; batch > 1 uses ``sentences`` rows too.
        controller_steps: controller training steps per target (frozen backbone).
        threads: torch threads for timing.
        int8: add a row with int8 dynamic quantization of the sliced linears at target 0.5.
    """

    batches: List[int] = field(default_factory=lambda: [1, 32])  # noqa: UP006
    targets: List[float] = field(default_factory=lambda: [0.75, 0.5, 0.25])  # noqa: UP006
    repeats: int = 15
    sentences: int = 64
    controller_steps: int = 150
    threads: int = 2
    int8: bool = True
    placement: str = "per_layer"

    def __post_init__(self) -> None:
        _require(all(0 < t <= 1 for t in self.targets), "bench.targets", "fractions in (0, 1]", self.targets)
        _require(all(b >= 1 for b in self.batches), "bench.batches", "sizes >= 1", self.batches)
        _require(self.repeats >= 3, "bench.repeats", ">= 3", self.repeats)


@dataclass
class SpeedBenchConfig(PretrainConfig):
    """Schema of ``conf/bench_speed.yaml``: the backbone's config plus what to measure."""

    quick: bool = False
    out: Optional[str] = None  # noqa: UP045
    bench: SpeedBenchOptions = field(default_factory=SpeedBenchOptions)


@dataclass
class ControllerConfig:
    """Per-layer controllers (see :class:`metasparse.control.controller.ControllerSpec`)."""

    hidden: int = 64
    uncertainty_task: Optional[str] = "upos"  # noqa: UP045
    token_router: bool = True
    placement: str = "per_layer"

    def __post_init__(self) -> None:
        _require(self.hidden >= 1, "controller.hidden", ">= 1", self.hidden)
        _require(
            self.placement in ("per_layer", "upfront"), "controller.placement", "per_layer, upfront", self.placement
        )


ALGORITHMS = ("maml", "fomaml", "anil", "metasgd", "reptile")
ADAPT_SETS = ("controller", "controller+head", "controller+head+norm")


@dataclass
class MetaConfig:
    """The outer loop.

    Attributes:
        algorithm: maml (second order), fomaml, anil (inner loop on the controller's output layers only),
            metasgd (learned inner rates), reptile.
        adapt: what the inner loop changes: ``controller``, ``controller+head``, ``controller+head+norm``.
        steps: outer steps.
        meta_batch: episodes per outer step.
        inner_steps: inner steps per episode.
        inner_lr: inner learning rate.
        outer_lr: Adam learning rate of the outer loop.
        val_fraction: share of source cells held out for validation (never meta-trained on).
        val_every: outer steps between validations (0: only at the end).
        val_episodes: episodes per validation.
        restore_margin: if validation accuracy falls this much below the best, restore the best state.
        restore_lr_factor: and multiply the outer learning rate by this.
        checkpoint_every: outer steps between checkpoints.
        stability_weight: weight of the term that rewards the same pathways for similar inputs.
        tau_start, tau_end: Gumbel temperature schedule over the outer steps.
        max_nonfinite: outer steps with a NaN or infinite loss or gradient that are skipped (the last good
            state kept) before the run stops with an error.
    """

    algorithm: str = "fomaml"
    adapt: str = "controller"
    steps: int = 150
    meta_batch: int = 4
    inner_steps: int = 3
    inner_lr: float = 0.5
    outer_lr: float = 3e-3
    val_fraction: float = 0.15
    val_every: int = 25
    val_episodes: int = 12
    restore_margin: float = 0.02
    restore_lr_factor: float = 0.5
    checkpoint_every: int = 25
    stability_weight: float = 0.1
    tau_start: float = 2.0
    tau_end: float = 0.3
    max_nonfinite: int = 10

    def __post_init__(self) -> None:
        _require(self.max_nonfinite >= 0, "meta.max_nonfinite", ">= 0", self.max_nonfinite)
        _require(self.algorithm in ALGORITHMS, "meta.algorithm", ", ".join(ALGORITHMS), self.algorithm)
        _require(self.adapt in ADAPT_SETS, "meta.adapt", ", ".join(ADAPT_SETS), self.adapt)
        for key in ("steps", "meta_batch", "inner_steps", "val_episodes", "checkpoint_every"):
            _require(getattr(self, key) >= 1, f"meta.{key}", ">= 1", getattr(self, key))
        _require(
            self.inner_lr > 0 and self.outer_lr > 0,
            "meta.inner_lr/outer_lr",
            "> 0",
            (self.inner_lr, self.outer_lr),
        )
        _require(0 < self.val_fraction < 1, "meta.val_fraction", "(0, 1)", self.val_fraction)
        _require(self.val_every >= 0, "meta.val_every", ">= 0", self.val_every)
        _require(0 < self.restore_lr_factor <= 1, "meta.restore_lr_factor", "(0, 1]", self.restore_lr_factor)


@dataclass
class BudgetConfig:
    """Compute budget: target FLOPs fraction (controller included), weight, and the dense-to-target schedule."""

    target: float = 0.5
    weight: float = 20.0
    warmup: float = 0.3
    calibrate: bool = True

    def __post_init__(self) -> None:
        _require(0 < self.target <= 1, "budget.target", "(0, 1]", self.target)
        _require(self.weight >= 0, "budget.weight", ">= 0", self.weight)
        _require(0 <= self.warmup <= 1, "budget.warmup", "[0, 1]", self.warmup)


@dataclass
class AdaptConfig:
    """Few-step adaptation on each target cell: ``steps`` inner steps on ``shots`` support sentences."""

    steps: int = 20
    shots: int = 16
    lr: Optional[float] = None  # noqa: UP045  (null: meta.inner_lr)
    max_test_sentences: Optional[int] = None  # noqa: UP045
    calibrate: bool = True  # after adapting, shift the bias so hard decisions meet the budget on the support set

    def __post_init__(self) -> None:
        _require(self.steps >= 0, "adapt.steps", ">= 0", self.steps)
        _require(self.shots >= 1, "adapt.shots", ">= 1", self.shots)


@dataclass
class MetaTrainConfig(PretrainConfig):
    """Schema of ``conf/meta_train.yaml``: the backbone's config plus episodes, controller, outer loop."""

    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    resume: Optional[str] = None  # noqa: UP045
    max_source_test_sentences: Optional[int] = None  # noqa: UP045


@dataclass
class TargetDataConfig:
    """Data from outside the registry: a UD treebank folder (or file), one language and one domain."""

    path: str = MISSING
    lang: str = MISSING
    domain: str = MISSING


@dataclass
class AdaptRunConfig:
    """Schema of ``conf/adapt.yaml``: adapt a meta-trained run to new data in a few steps."""

    run_dir: str = MISSING
    target: TargetDataConfig = field(default_factory=TargetDataConfig)
    steps: int = 20
    shots: int = 16
    seed: int = 0
    max_test_sentences: Optional[int] = None  # noqa: UP045

    def __post_init__(self) -> None:
        _require(self.steps >= 0, "steps", ">= 0", self.steps)
        _require(self.shots >= 1, "shots", ">= 1", self.shots)


@dataclass
class LatencyOptions:
    """Timing settings: batch sizes, sentences per round, timed rounds (all methods interleaved), threads."""

    batch_sizes: List[int] = field(default_factory=lambda: [1, 32])  # noqa: UP006
    sentences: int = 64
    repeats: int = 10
    threads: int = 2

    def __post_init__(self) -> None:
        _require(all(b >= 1 for b in self.batch_sizes), "latency.batch_sizes", "sizes >= 1", self.batch_sizes)
        _require(self.repeats >= 3, "latency.repeats", ">= 3", self.repeats)
        _require(self.sentences >= 1, "latency.sentences", ">= 1", self.sentences)


EVAL_METHODS = ("dense", "meta", "multitask", "importance", "l0", "teal", "random")


@dataclass
class EvaluateConfig:
    """Schema of ``conf/evaluate.yaml``: the evaluation protocol for one run and one or more methods.

    Attributes:
        run_dir: a finished meta_train run.
        methods: which methods (``all`` for every one).
        budget: FLOPs budget (null: the run's ``budget.target``).
        test_sentences: source test sentences scored (null: all).
        target_test_sentences: per target cell (null: all).
        stress_sentences: source test sentences the stress inputs are built from.
        consistency_sentences: sentences compared at batch 1 and batch 32.
        quick: a reduced protocol for tests.
        out: also write the JSON result here.
        seed: fixes sentence samples and baseline training.
    """

    run_dir: str = MISSING
    methods: List[str] = field(default_factory=lambda: ["meta"])  # noqa: UP006
    budget: Optional[float] = None  # noqa: UP045
    test_sentences: Optional[int] = 2000  # noqa: UP045
    target_test_sentences: Optional[int] = None  # noqa: UP045
    stress_sentences: int = 300
    consistency_sentences: int = 64
    latency: LatencyOptions = field(default_factory=LatencyOptions)
    quick: bool = False
    out: Optional[str] = None  # noqa: UP045
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in (*EVAL_METHODS, "all")]
        _require(not bad, "methods", f"a list of: {', '.join(EVAL_METHODS)}, or [all]", self.methods)
        _require(self.budget is None or 0 < self.budget <= 1, "budget", "(0, 1] or null", self.budget)
        _require(self.stress_sentences >= 1, "stress_sentences", ">= 1", self.stress_sentences)

    def method_names(self) -> list[str]:
        return list(EVAL_METHODS) if "all" in self.methods else list(dict.fromkeys(["dense", *self.methods]))


@dataclass
class TransferBenchConfig:
    """Schema of ``conf/bench_transfer.yaml``: adaptation curves and the accuracy-FLOPs front.

    Attributes:
        run_dirs: finished meta_train runs (e.g. one with ``+domain=legal``, one with held-out languages).
        methods: controllers compared in the curves: meta, multitask, scratch.
        steps: adaptation steps at which accuracy is read.
        shots: support sentences per target cell.
        seeds: support samples (and baseline training) per setting; intervals are over seeds.
        max_cells: target cells per run (largest first; null: all).
        test_sentences: test sentences per target cell (null: all).
        converge_steps: Adam steps of the scratch controller trained to convergence on a cell's train split.
        pareto_budgets: FLOPs budgets of the accuracy-FLOPs comparison.
        pareto_methods: methods in it (``all``: every one).
        pareto_runs: how many of ``run_dirs`` (from the first) get the accuracy-FLOPs comparison.
        quick: a reduced grid for tests.
        out: output folder (null: the Hydra run dir).
    """

    run_dirs: List[str] = MISSING  # noqa: UP006
    methods: List[str] = field(default_factory=lambda: ["meta", "multitask", "scratch"])  # noqa: UP006
    steps: List[int] = field(default_factory=lambda: [0, 1, 5, 10, 20, 50])  # noqa: UP006
    shots: List[int] = field(default_factory=lambda: [8, 16, 32])  # noqa: UP006
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])  # noqa: UP006
    max_cells: Optional[int] = None  # noqa: UP045
    test_sentences: Optional[int] = None  # noqa: UP045
    converge_steps: int = 300
    pareto_budgets: List[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])  # noqa: UP006
    pareto_methods: List[str] = field(default_factory=lambda: ["all"])  # noqa: UP006
    pareto_runs: int = 1
    quick: bool = False
    out: Optional[str] = None  # noqa: UP045

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in ("meta", "multitask", "scratch")]
        _require(not bad, "methods", "a list of: meta, multitask, scratch", self.methods)
        _require(all(s >= 0 for s in self.steps) and self.steps, "steps", "non-negative integers", self.steps)
        _require(all(k >= 1 for k in self.shots) and self.shots, "shots", "integers >= 1", self.shots)
        _require(len(self.seeds) >= 1, "seeds", "at least one seed", self.seeds)
        _require(
            all(0 < b <= 1 for b in self.pareto_budgets), "pareto_budgets", "fractions in (0, 1]", self.pareto_budgets
        )
        bad = [m for m in self.pareto_methods if m not in (*EVAL_METHODS, "all")]
        _require(not bad, "pareto_methods", f"a list of: {', '.join(EVAL_METHODS)}, or [all]", self.pareto_methods)
        _require(self.converge_steps >= 1, "converge_steps", ">= 1", self.converge_steps)


@dataclass
class DiagnoseConfig:
    """Schema of ``conf/diagnose.yaml``: shift between cells vs the pathways a run's controller chooses.

    Attributes:
        run_dir: a finished meta_train run.
        min_test_sentences: cells with fewer test sentences are left out (their pathways are noise).
        max_sentences: test sentences per cell the pathways are read from.
        permutations: Mantel permutations.
        bootstrap: bootstrap resamples of Spearman intervals.
        seed: fixes permutations and resamples.
    """

    run_dir: str = MISSING
    min_test_sentences: int = 20
    max_sentences: int = 200
    permutations: int = 999
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.min_test_sentences >= 1, "min_test_sentences", ">= 1", self.min_test_sentences)
        _require(self.max_sentences >= 1, "max_sentences", ">= 1", self.max_sentences)
        _require(self.permutations >= 9, "permutations", ">= 9", self.permutations)
        _require(self.bootstrap >= 1, "bootstrap", ">= 1", self.bootstrap)


@dataclass
class MonitorConfig:
    """Schema of ``conf/monitor.yaml``: drift of incoming text against a run's training reference.

    Attributes:
        run_dir: a finished meta_train run.
        input: a UD folder or ``.conllu`` file, or plain text (one sentence a line, words split on spaces).
        lang: language code stored for UD input (only a label here).
        max_sentences: incoming sentences read.
        reference_sentences: source test sentences in the reference.
        margin: a measure drifts when it exceeds ``margin`` x the largest value any source cell shows.
        thresholds: explicit per-measure thresholds that replace the automatic ones.
        out: where ``monitor.json`` goes (null: the Hydra run dir).
    """

    run_dir: str = MISSING
    input: str = MISSING
    lang: str = "xx"
    max_sentences: int = 1000
    reference_sentences: int = 2000
    margin: float = 1.25
    thresholds: Dict[str, float] = field(default_factory=dict)  # noqa: UP006
    out: Optional[str] = None  # noqa: UP045

    def __post_init__(self) -> None:
        _require(self.max_sentences >= 1, "max_sentences", ">= 1", self.max_sentences)
        _require(self.margin > 0, "margin", "> 0", self.margin)


def register_configs() -> None:
    """Store the schemas under the names the YAML defaults lists use."""
    cs = ConfigStore.instance()
    cs.store(name="meta_train_schema", node=MetaTrainConfig)
    cs.store(name="pretrain_schema", node=PretrainConfig)
    cs.store(name="bench_speed_schema", node=SpeedBenchConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="bench_transfer_schema", node=TransferBenchConfig)
    cs.store(name="diagnose_schema", node=DiagnoseConfig)
    cs.store(name="monitor_schema", node=MonitorConfig)
    cs.store(name="adapt_schema", node=AdaptRunConfig)
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="domain", name="schema", node=DomainConfig)
    cs.store(group="language", name="schema", node=LanguageConfig)


register_configs()
