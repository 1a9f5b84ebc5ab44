"""Schemas of the training jobs: ``pretrain``, ``meta_train`` and ``adapt``, composed from the components'
own configs (data, tokenizer, model, episodes, controller)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from metasparse.config.joint import JointConfig
from metasparse.control.controller import ControllerSpec
from metasparse.data.episodes import EpisodeConfig
from metasparse.data.prepare import DataConfig, DomainConfig, LanguageConfig
from metasparse.data.tokenizer import TokenizerConfig
from metasparse.errors import require
from metasparse.model.adapters import AdapterConfig
from metasparse.model.encoder import ModelConfig
from metasparse.model.precision import PRECISIONS
from metasparse.tracking import LoggerConfig

ALGORITHMS = ("maml", "fomaml", "anil", "metasgd", "sparse_maml", "reptile")
# What the inner loop can adapt; ``meta.adapt`` joins them with "+" ("light": every one of them).
ADAPT_PARTS = ("controller", "adapters", "heads", "norms", "embeddings")
ADAPT_ALIASES = {"light": "+".join(ADAPT_PARTS), "head": "heads", "norm": "norms"}


def adapt_parts(adapt: str) -> list[str]:
    """The parts an adapt set names, e.g. ``controller+adapters`` -> [controller, adapters]; ``light`` is all.

    Raises:
        ConfigValueError: an unknown part (the message lists the allowed ones).
    """
    parts: list[str] = []
    for word in adapt.split("+"):
        for p in ADAPT_ALIASES.get(word, word).split("+"):
            require(p in ADAPT_PARTS, "meta.adapt", f"parts joined by '+': {', '.join(ADAPT_PARTS)}, or light", adapt)
            parts += [] if p in parts else [p]
    return parts


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
        word_dropout_alpha: frequency-aware word dropout on top of ``word_dropout`` (0: off): a form seen
            ``c`` times in the source train split is also replaced by the unknown id with probability
            ``alpha / (alpha + c)``; needs the word vocabulary (``tokenizer.word_min_count >= 1``).
        max_nonfinite: steps with a NaN or infinite gradient skipped (the last good state kept) before the
            run stops.
        language_alpha: each epoch draws its sentences so that a language's share is proportional to its
            sentence count to this power (1: every sentence once, as they come; below 1 small treebanks are
            seen more often and large ones less, the exponent sampling of multilingual models).
        precision: ``fp32`` or ``bf16``: the training passes under bfloat16 autocast
            (:func:`metasparse.model.precision.training_autocast`; weights, optimiser state, losses and the
            saved backbone in fp32, inference unchanged), for more steps a minute on a CPU with bf16
            instructions.
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
    threads: int | None = None
    word_dropout: float = 0.25
    word_dropout_alpha: float = 1.0
    max_nonfinite: int = 10
    language_alpha: float = 1.0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        require(self.epochs > 0, "pretrain.epochs", "> 0", self.epochs)
        require(self.max_words >= 256, "pretrain.max_words", ">= 256", self.max_words)
        require(self.lr > 0, "pretrain.lr", "> 0", self.lr)
        require(0 <= self.warmup < 1, "pretrain.warmup", "[0, 1)", self.warmup)
        require(self.sparse_weight >= 0, "pretrain.sparse_weight", ">= 0", self.sparse_weight)
        require(self.max_minutes > 0, "pretrain.max_minutes", "> 0", self.max_minutes)
        require(self.checkpoint_every >= 1, "pretrain.checkpoint_every", ">= 1", self.checkpoint_every)
        require(0 <= self.word_dropout < 1, "pretrain.word_dropout", "[0, 1)", self.word_dropout)
        require(self.word_dropout_alpha >= 0, "pretrain.word_dropout_alpha", ">= 0", self.word_dropout_alpha)
        require(0 < self.language_alpha <= 1, "pretrain.language_alpha", "(0, 1]", self.language_alpha)
        require(self.precision in PRECISIONS, "pretrain.precision", " | ".join(PRECISIONS), self.precision)


@dataclass
class PretrainConfig:
    """Schema of ``conf/pretrain.yaml``."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainOptimConfig = field(default_factory=PretrainOptimConfig)
    joint: JointConfig = field(default_factory=JointConfig)
    controller: ControllerSpec = field(default_factory=ControllerSpec)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    tasks: list[str] = field(default_factory=lambda: ["upos", "deprel"])
    domain: DomainConfig | None = None
    language: LanguageConfig | None = None


@dataclass
class MetaConfig:
    """The outer loop.

    Attributes:
        algorithm: maml (second order), fomaml, anil (inner loop on the controller's output layers only),
            metasgd (learned inner rates), sparse_maml (first order, with a learned mask over which
            elements the inner loop may change: von Oswald et al. 2021), reptile.
        adapt: what the inner loop changes: parts joined by "+" from controller, adapters (pathway
            adapters), heads (task heads), norms (layer norms), embeddings (the rows of the subword,
            word-form and suffix tables the support set uses); ``light`` is all of them. Embeddings adapt
            from the backbone's values; every other part's initialisation is meta-learned.
        inner_lr_scale: the inner rate of each part, as a multiple of ``inner_lr``.
        inner_optimizer: ``sgd`` or ``adam`` (per-element steps; the rates are then Adam step sizes).
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
        best_budget_slack: a validation whose hard decisions cost more than ``(1 + this)`` times its budget
            target (in the budget's unit) is neither a best nor a dip: over budget, accuracy is compute.
        checkpoint_every: outer steps between checkpoints.
        stability_weight: weight of the term that rewards the same pathways for similar inputs.
        tau_start, tau_end: Gumbel temperature schedule over the outer steps.
        mask_init: sparse_maml's initial mask score (> 0: every element adapts at first).
        max_nonfinite: outer steps with a NaN or infinite loss or gradient that are skipped (the last good
            state kept) before the run stops with an error.
        seed: the outer loop's own random state (training episodes, Gumbel noise, a fresh controller's and
            adapters' initialisation); None: the run's ``seed``. Why: the run's seed also keys the cached
            backbone and fixes the data splits, validation and scoring, so repeating meta-training on one
            backbone to see its spread needs a seed of its own.
    """

    algorithm: str = "fomaml"
    adapt: str = "light"
    inner_lr_scale: dict[str, float] = field(
        default_factory=lambda: {"controller": 1.0, "adapters": 0.1, "heads": 0.1, "norms": 0.1, "embeddings": 0.1}
    )
    inner_optimizer: str = "sgd"
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
    best_budget_slack: float = 0.25
    checkpoint_every: int = 25
    stability_weight: float = 0.1
    tau_start: float = 2.0
    tau_end: float = 0.3
    mask_init: float = 0.01
    max_nonfinite: int = 10
    seed: int | None = None

    def __post_init__(self) -> None:
        require(self.mask_init > 0, "meta.mask_init", "> 0", self.mask_init)
        require(self.max_nonfinite >= 0, "meta.max_nonfinite", ">= 0", self.max_nonfinite)
        require(self.algorithm in ALGORITHMS, "meta.algorithm", ", ".join(ALGORITHMS), self.algorithm)
        adapt_parts(self.adapt)
        require(self.inner_optimizer in ("sgd", "adam"), "meta.inner_optimizer", "sgd, adam", self.inner_optimizer)
        bad = {k: v for k, v in self.inner_lr_scale.items() if k not in ADAPT_PARTS or v <= 0}
        require(not bad, "meta.inner_lr_scale", f"positive multipliers for {', '.join(ADAPT_PARTS)}", bad)
        for key in ("steps", "meta_batch", "inner_steps", "val_episodes", "checkpoint_every"):
            require(getattr(self, key) >= 1, f"meta.{key}", ">= 1", getattr(self, key))
        require(
            self.inner_lr > 0 and self.outer_lr > 0,
            "meta.inner_lr/outer_lr",
            "> 0",
            (self.inner_lr, self.outer_lr),
        )
        require(0 < self.val_fraction < 1, "meta.val_fraction", "(0, 1)", self.val_fraction)
        require(self.val_every >= 0, "meta.val_every", ">= 0", self.val_every)
        require(0 < self.restore_lr_factor <= 1, "meta.restore_lr_factor", "(0, 1]", self.restore_lr_factor)
        require(self.best_budget_slack >= 0, "meta.best_budget_slack", ">= 0", self.best_budget_slack)


@dataclass
class BudgetConfig:
    """Compute budget: target fraction of dense cost (controller included), weight, and the dense-to-target
    schedule.

    Attributes:
        unit: ``flops`` (analytic) or ``latency`` (milliseconds predicted by the backbone's cost table for
            this machine and thread count, measured on first use and stored beside the backbone).
        batch: the batch size whose latency the budget prices (the table's nearest bucket).
        threads: threads the latency is measured with (null: torch's current setting).
        cost_rounds: timed rounds when the cost table has to be measured.
    """

    target: float = 0.5
    weight: float = 20.0
    warmup: float = 0.3
    calibrate: bool = True
    unit: str = "flops"
    batch: int = 1
    threads: int | None = None
    cost_rounds: int = 7

    def __post_init__(self) -> None:
        require(self.unit in ("flops", "latency"), "budget.unit", "flops, latency", self.unit)
        require(self.batch >= 1, "budget.batch", ">= 1", self.batch)
        require(self.threads is None or self.threads >= 1, "budget.threads", "null or >= 1", self.threads)
        require(self.cost_rounds >= 1, "budget.cost_rounds", ">= 1", self.cost_rounds)
        require(0 < self.target <= 1, "budget.target", "(0, 1]", self.target)
        require(self.weight >= 0, "budget.weight", ">= 0", self.weight)
        require(0 <= self.warmup <= 1, "budget.warmup", "[0, 1]", self.warmup)


@dataclass
class AdaptConfig:
    """Few-step adaptation on each target cell: ``steps`` inner steps on ``shots`` support sentences."""

    steps: int = 20
    shots: int = 16
    lr: float | None = None  # null: meta.inner_lr
    max_test_sentences: int | None = None
    calibrate: bool = True  # after adapting, shift the bias so hard decisions meet the budget
    # and meet it on the support set plus this many of the target's train sentences, unlabelled (their labels
    # are never read): 16 sentences alone leave the adapted model leaner than the budget on new text
    calibrate_sentences: int = 200

    def __post_init__(self) -> None:
        require(self.calibrate_sentences >= 0, "adapt.calibrate_sentences", ">= 0", self.calibrate_sentences)
        require(self.steps >= 0, "adapt.steps", ">= 0", self.steps)
        require(self.shots >= 1, "adapt.shots", ">= 1", self.shots)


@dataclass
class MetaTrainConfig(PretrainConfig):
    """Schema of ``conf/meta_train.yaml``: the backbone's config plus episodes, controller, outer loop."""

    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    adapters: AdapterConfig = field(default_factory=AdapterConfig)
    resume: str | None = None
    max_source_test_sentences: int | None = None


def outer_seed(cfg: MetaTrainConfig) -> int:
    """The seed of everything meta-training draws (``meta.seed``, else the run's ``seed``)."""
    return cfg.seed if cfg.meta.seed is None else cfg.meta.seed


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
    max_test_sentences: int | None = None
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def __post_init__(self) -> None:
        require(self.steps >= 0, "steps", ">= 0", self.steps)
        require(self.shots >= 1, "shots", ">= 1", self.shots)
