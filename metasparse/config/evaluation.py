"""Schemas of the measuring jobs: ``evaluate``, ``bench.speed`` and ``bench.transfer``."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from metasparse.config.training import PretrainConfig
from metasparse.errors import require
from metasparse.model.spec import EXIT_CRITERIA
from metasparse.tracking import LoggerConfig

# Every method ``evaluate`` and ``bench.transfer`` know, in report order (dense first).
METHODS = ("dense", "meta", "joint", "multitask", "importance", "l0", "latency", "latency_mix", "teal", "random")
# Peers: other taggers a user would pick instead, scored on the same sentences (not ways of running the backbone).
PEERS = ("udpipe",)
# The starting points bench.transfer adapts from (metasparse.baselines.finetune builds them).
FT_METHODS = ("meta", "multitask-ft", "dense-ft", "static-ft", "scratch")


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
        placement: where the controller decides (``upfront``, the default: one decision per forward, or
            ``per_layer``).
        uncertainty_task: the task whose head gives the controller its uncertainty feature (None, the
            default: pooled states only; at batch 1 the feature's ops are half an upfront controller's time,
            and it bought no accuracy in bench.speed).
        calib_sentences: source dev sentences the controller's bias is calibrated on.
        test_sentences: source test sentences scored (timing batches are drawn from them).
        batched_rounds: at batch > 1 a timed round holds ``max(sentences, batch) * batched_rounds`` rows.
        unit: what the targets are fractions of: ``flops`` or ``latency`` (predicted by the backbone's cost
            table at batch ``cost_batch``; the controllers train and calibrate against it).
        cost_batch: the batch size a latency target prices.
    """

    batches: list[int] = field(default_factory=lambda: [1, 32])
    targets: list[float] = field(default_factory=lambda: [0.75, 0.5, 0.25])
    repeats: int = 15
    sentences: int = 64
    controller_steps: int = 150
    threads: int = 2
    int8: bool = True
    placement: str = "upfront"
    uncertainty_task: str | None = None
    calib_sentences: int = 1500
    test_sentences: int = 4000
    batched_rounds: int = 4
    unit: str = "flops"
    cost_batch: int = 1

    def __post_init__(self) -> None:
        require(self.unit in ("flops", "latency"), "bench.unit", "flops, latency", self.unit)
        require(self.cost_batch >= 1, "bench.cost_batch", ">= 1", self.cost_batch)
        require(self.calib_sentences >= 1, "bench.calib_sentences", ">= 1", self.calib_sentences)
        require(self.test_sentences >= 1, "bench.test_sentences", ">= 1", self.test_sentences)
        require(self.batched_rounds >= 1, "bench.batched_rounds", ">= 1", self.batched_rounds)
        require(all(0 < t <= 1 for t in self.targets), "bench.targets", "fractions in (0, 1]", self.targets)
        require(all(b >= 1 for b in self.batches), "bench.batches", "sizes >= 1", self.batches)
        require(self.repeats >= 3, "bench.repeats", ">= 3", self.repeats)


@dataclass
class SpeedBenchConfig(PretrainConfig):
    """Schema of ``conf/bench_speed.yaml``: the backbone's config plus what to measure."""

    out: str | None = None
    bench: SpeedBenchOptions = field(default_factory=SpeedBenchOptions)


@dataclass
class CostBenchOptions:
    """What ``metasparse.bench.costs`` measures and how it checks the table.

    Attributes:
        threads: torch threads (the table is stored per thread count).
        rounds: timed rounds of the table (every cell once per round, in a new random order).
        remeasure: measure even when a matching table is stored (it is replaced).
        check_batches: batch sizes at which predictions are checked against timed forwards.
        check_plans: random static plans (one pattern per layer) checked, besides dense.
        check_sentences: real test sentences per timed round (batch 1); at batch > 1, ``batch * 2`` rows.
        check_repeats: timed rounds of the check (dense and every plan interleaved).
    """

    threads: int = 2
    rounds: int = 7
    remeasure: bool = False
    check_batches: list[int] = field(default_factory=lambda: [1, 32])
    check_plans: int = 6
    check_sentences: int = 64
    check_repeats: int = 7

    def __post_init__(self) -> None:
        require(self.threads >= 1, "costs.threads", ">= 1", self.threads)
        require(self.rounds >= 1, "costs.rounds", ">= 1", self.rounds)
        require(all(b >= 1 for b in self.check_batches), "costs.check_batches", "sizes >= 1", self.check_batches)
        require(self.check_plans >= 0, "costs.check_plans", ">= 0", self.check_plans)
        require(self.check_sentences >= 1, "costs.check_sentences", ">= 1", self.check_sentences)
        require(self.check_repeats >= 3, "costs.check_repeats", ">= 3", self.check_repeats)


@dataclass
class CostBenchConfig(PretrainConfig):
    """Schema of ``conf/bench_costs.yaml``: the backbone's config plus the cost table's protocol."""

    out: str | None = None
    costs: CostBenchOptions = field(default_factory=CostBenchOptions)


@dataclass
class ExitBenchOptions:
    """What ``metasparse.bench.exits`` measures.

    Attributes:
        thresholds: exit thresholds on the normalised entropy (one plan each).
        criterion: whose entropy (:data:`metasparse.model.spec.EXIT_CRITERIA`: ``upos``, or ``all`` task
            heads, the largest); None: the backbone's own (``model.exit_criterion``). It sets the criterion for
            this benchmark only; a backbone whose codebook trains no exit pattern keeps its cache key either way.
        batch_sizes: batch sizes timed.
        sentences: sentences timed per round (at batch > 1, at least two batches).
        repeats: timed rounds (dense and every threshold interleaved).
        threads: torch threads.
        test_sentences: source test sentences scored (timing batches are drawn from them).
    """

    thresholds: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1])
    criterion: str | None = None
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    sentences: int = 64
    repeats: int = 10
    threads: int = 2
    test_sentences: int = 2000

    def __post_init__(self) -> None:
        require(all(0 <= t <= 1 for t in self.thresholds), "exits.thresholds", "values in [0, 1]", self.thresholds)
        require(all(b >= 1 for b in self.batch_sizes), "exits.batch_sizes", "sizes >= 1", self.batch_sizes)
        require(self.repeats >= 3, "exits.repeats", ">= 3", self.repeats)
        allowed = ", ".join(EXIT_CRITERIA)
        require(self.criterion in (None, *EXIT_CRITERIA), "exits.criterion", f"{allowed} or null", self.criterion)
        require(self.sentences >= 1 and self.test_sentences >= 1, "exits.sentences", ">= 1", self.sentences)


@dataclass
class ExitBenchConfig(PretrainConfig):
    """Schema of ``conf/bench_exits.yaml``: the backbone's config plus the early-exit protocol."""

    out: str | None = None
    exits: ExitBenchOptions = field(default_factory=ExitBenchOptions)


@dataclass
class LatencyOptions:
    """Timing settings: batch sizes, sentences per round, timed rounds (all methods interleaved), threads,
    and whether to report the cost table's prediction beside each measured ratio."""

    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    sentences: int = 64
    repeats: int = 10
    threads: int = 2
    predict: bool = True  # also the wall ratio the backbone's cost table predicts (measured first if missing)

    def __post_init__(self) -> None:
        require(all(b >= 1 for b in self.batch_sizes), "latency.batch_sizes", "sizes >= 1", self.batch_sizes)
        require(self.repeats >= 3, "latency.repeats", ">= 3", self.repeats)
        require(self.sentences >= 1, "latency.sentences", ">= 1", self.sentences)


@dataclass
class UdpipeOptions:
    """The UDPipe 1 peer: one tagger per language on the run's source train split (cached).

    Attributes:
        iterations: UDPipe's tagger training iterations (its default: 20).
        max_train_sentences: per language, the first this many train sentences (null: all of them).
        workers: languages trained at once (UDPipe trains on one core), in processes.
    """

    iterations: int = 20
    max_train_sentences: int | None = None
    workers: int = 2

    def __post_init__(self) -> None:
        require(self.iterations >= 1, "udpipe.iterations", ">= 1", self.iterations)
        require(self.workers >= 1, "udpipe.workers", ">= 1", self.workers)
        m = self.max_train_sentences
        require(m is None or m >= 1, "udpipe.max_train_sentences", ">= 1 or null", m)


@dataclass
class EvaluateConfig:
    """Schema of ``conf/evaluate.yaml``: the evaluation protocol for one run and one or more methods.

    Attributes:
        run_dir: a finished meta_train run.
        methods: which methods (``all`` for every one, peers included).
        budget: FLOPs budget (null: the run's ``budget.target``).
        test_sentences: source test sentences scored (null: all).
        target_test_sentences: per target cell (null: all).
        stress_sentences: source test sentences the stress inputs are built from.
        consistency_sentences: sentences compared at batch 1 and batch 32.
        calib_sentences: source dev sentences every method is calibrated to the budget on.
        baseline_steps: training steps of the trained baselines (multitask controller, L0 gates).
        out: also write the JSON result here.
        seed: fixes sentence samples and baseline training.
    """

    run_dir: str = MISSING
    methods: list[str] = field(default_factory=lambda: ["meta"])
    budget: float | None = None
    test_sentences: int | None = 2000
    target_test_sentences: int | None = None
    stress_sentences: int = 300
    consistency_sentences: int = 64
    calib_sentences: int = 1500
    baseline_steps: int = 300
    latency: LatencyOptions = field(default_factory=LatencyOptions)
    udpipe: UdpipeOptions = field(default_factory=UdpipeOptions)
    out: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in (*METHODS, *PEERS, "all")]
        require(not bad, "methods", f"a list of: {', '.join(METHODS + PEERS)}, or [all]", self.methods)
        require(self.budget is None or 0 < self.budget <= 1, "budget", "(0, 1] or null", self.budget)
        require(self.stress_sentences >= 1, "stress_sentences", ">= 1", self.stress_sentences)
        require(self.calib_sentences >= 1, "calib_sentences", ">= 1", self.calib_sentences)
        require(self.baseline_steps >= 1, "baseline_steps", ">= 1", self.baseline_steps)

    def method_names(self) -> list[str]:
        """The ways of running the backbone to evaluate (dense always)."""
        if "all" in self.methods:
            return list(METHODS)
        return list(dict.fromkeys(["dense", *(m for m in self.methods if m in METHODS)]))

    def peer_names(self) -> list[str]:
        """The peer taggers to score beside them."""
        return list(PEERS) if "all" in self.methods else [m for m in self.methods if m in PEERS]


@dataclass
class TransferBenchConfig:
    """Schema of ``conf/bench_transfer.yaml``: adaptation curves and the accuracy-FLOPs front.

    Attributes:
        run_dirs: finished meta_train runs (e.g. one with ``+domain=legal``, one with held-out languages).
        methods: starting points compared in the curves: meta, multitask-ft, dense-ft, static-ft, scratch
            (see metasparse.baselines.finetune); each adapts the run's ``meta.adapt`` parameter set.
        lr_grid: multiples of the run's inner rates tried per method on source validation episodes.
        lr_episodes: validation episodes per multiple.
        steps: adaptation steps at which accuracy is read.
        shots: support sentences per target cell.
        seeds: support samples (and baseline training) per setting; intervals are over seeds.
        max_cells: target cells per run (largest first; null: all).
        test_sentences: test sentences per target cell (null: all).
        converge_steps: Adam steps of the scratch controller trained to convergence on a cell's train split
            (0: skip that ceiling).
        pareto_budgets: FLOPs budgets of the accuracy-FLOPs comparison.
        pareto_methods: methods in it (``all``: every one).
        pareto_runs: how many of ``run_dirs`` (from the first) get the accuracy-FLOPs comparison.
        pareto_test_sentences: source test sentences of the accuracy-FLOPs comparison.
        calib_sentences: source dev sentences every method is calibrated to its budget on.
        baseline_steps: training steps of the trained baselines (multitask controller, L0 gates).
        out: output folder (null: the Hydra run dir).
        logger: where the curves go besides the files (``logger=tensorboard|mlflow|none``).
    """

    run_dirs: list[str] = MISSING
    methods: list[str] = field(default_factory=lambda: list(FT_METHODS))
    lr_grid: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    lr_episodes: int = 6
    steps: list[int] = field(default_factory=lambda: [0, 1, 5, 10, 20, 50])
    shots: list[int] = field(default_factory=lambda: [8, 16, 32])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    max_cells: int | None = None
    test_sentences: int | None = None
    converge_steps: int = 300
    pareto_budgets: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    pareto_methods: list[str] = field(default_factory=lambda: ["all"])
    pareto_runs: int = 1
    pareto_test_sentences: int = 2000
    calib_sentences: int = 1500
    baseline_steps: int = 300
    out: str | None = None
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in FT_METHODS]
        require(not bad and self.methods, "methods", f"a list of: {', '.join(FT_METHODS)}", self.methods)
        require(all(g > 0 for g in self.lr_grid) and self.lr_grid, "lr_grid", "positive multiples", self.lr_grid)
        require(self.lr_episodes >= 1, "lr_episodes", ">= 1", self.lr_episodes)
        require(all(s >= 0 for s in self.steps) and self.steps, "steps", "non-negative integers", self.steps)
        require(all(k >= 1 for k in self.shots) and self.shots, "shots", "integers >= 1", self.shots)
        require(len(self.seeds) >= 1, "seeds", "at least one seed", self.seeds)
        require(
            all(0 < b <= 1 for b in self.pareto_budgets), "pareto_budgets", "fractions in (0, 1]", self.pareto_budgets
        )
        bad = [m for m in self.pareto_methods if m not in (*METHODS, "all")]
        require(not bad, "pareto_methods", f"a list of: {', '.join(METHODS)}, or [all]", self.pareto_methods)
        require(
            self.converge_steps >= 0, "converge_steps", ">= 0 (0: no converged-scratch ceiling)", self.converge_steps
        )


@dataclass
class HeadroomConfig:
    """Schema of ``conf/bench_headroom.yaml``: what per-input choices could gain over the static structure.

    Attributes:
        run_dir: a finished meta_train run (its backbone, cost table and controller).
        target: average predicted latency at batch 1, as a fraction of dense, every row meets.
        budgets: the static structures scored (latency budgets), besides ``target`` and ``pair``.
        pair: the lean and broad structure the sentences are split between (lean < target < broad).
        test_sentences: source test sentences scored (null: all).
        calib_sentences: source dev sentences the structures' latency is fitted on.
        select_per_cell: other source dev sentences per cell a per-cell structure is chosen on.
        out: also write the JSON result here.
        seed: fixes the sentence samples and the random split.
    """

    run_dir: str = MISSING
    target: float = 0.5
    budgets: list[float] = field(default_factory=lambda: [0.25, 0.3, 0.35, 0.4, 0.6, 0.65, 0.7, 0.75])
    pair: list[float] = field(default_factory=lambda: [0.35, 0.65])
    test_sentences: int | None = 2000
    calib_sentences: int = 1500
    select_per_cell: int = 40
    out: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.select_per_cell >= 1, "select_per_cell", ">= 1", self.select_per_cell)
        require(0 < self.target <= 1, "target", "(0, 1]", self.target)
        require(all(0 < b <= 1 for b in self.budgets), "budgets", "values in (0, 1]", self.budgets)
        ok = len(self.pair) == 2 and 0 < self.pair[0] < self.target < self.pair[1] <= 1
        require(ok, "pair", "[lean, broad] with 0 < lean < target < broad <= 1", self.pair)
        require(self.test_sentences is None or self.test_sentences >= 1, "test_sentences", ">= 1", self.test_sentences)
