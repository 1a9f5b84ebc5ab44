"""Schemas of the analysis jobs: ``diagnose`` and ``monitor``."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from metasparse.errors import require


@dataclass
class DiagnoseConfig:
    """Schema of ``conf/diagnose.yaml``: shift between cells vs the pathways a run's controller chooses.

    Attributes:
        run_dir: a finished meta_train run.
        run_dirs: several finished runs instead (e.g. seeds): each is diagnosed, then the relations are
            pooled and only those that replicate in every run are findings.
        min_test_sentences: cells with fewer test sentences are left out (their pathways are noise).
        max_sentences: test sentences per cell the pathways are read from.
        permutations: Mantel permutations.
        bootstrap: bootstrap resamples of Spearman intervals.
        seed: fixes permutations and resamples.
        adjust: multiple-comparison adjustment over the report's tests: ``holm`` (family-wise error) or
            ``bh`` (Benjamini-Hochberg, false discovery rate).
        alpha: significance level, read from the adjusted p.
        min_cells: a relation over fewer cells is reported as too few cells to test, never as a finding.
    """

    run_dir: str | None = None
    run_dirs: list[str] = field(default_factory=list)
    min_test_sentences: int = 20
    max_sentences: int = 200
    permutations: int = 9999
    bootstrap: int = 2000
    seed: int = 0
    adjust: str = "holm"
    alpha: float = 0.05
    min_cells: int = 10

    def __post_init__(self) -> None:
        require(self.min_test_sentences >= 1, "min_test_sentences", ">= 1", self.min_test_sentences)
        require(self.max_sentences >= 1, "max_sentences", ">= 1", self.max_sentences)
        require(self.permutations >= 9, "permutations", ">= 9", self.permutations)
        require(self.bootstrap >= 1, "bootstrap", ">= 1", self.bootstrap)
        require(self.adjust in ("holm", "bh"), "adjust", "holm | bh", self.adjust)
        require(
            (self.run_dir is None) != (not self.run_dirs),
            "run_dir/run_dirs",
            "exactly one: run_dir=<run> or 'run_dirs=[<run>,<run>]'",
            (self.run_dir, self.run_dirs),
        )
        require(0 < self.alpha < 1, "alpha", "(0, 1)", self.alpha)
        require(self.min_cells >= 3, "min_cells", ">= 3", self.min_cells)


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
        noise_resamples: bootstrap samples of the reference (each as many sentences as the input) that
            measure each measure's sampling noise; the automatic threshold is at least its noise floor.
        noise_quantile: the noise floor is this quantile of the resampled values (0.99: a drift-free input
            of the same size crosses it about once in a hundred, per measure).
        out: where ``monitor.json`` goes (null: the Hydra run dir).
    """

    run_dir: str = MISSING
    input: str = MISSING
    lang: str = "xx"
    max_sentences: int = 1000
    reference_sentences: int = 2000
    margin: float = 1.25
    thresholds: dict[str, float] = field(default_factory=dict)
    noise_resamples: int = 100
    noise_quantile: float = 0.99
    out: str | None = None

    def __post_init__(self) -> None:
        require(self.max_sentences >= 1, "max_sentences", ">= 1", self.max_sentences)
        require(self.margin > 0, "margin", "> 0", self.margin)
        require(self.noise_resamples >= 1, "noise_resamples", ">= 1", self.noise_resamples)
        require(0 < self.noise_quantile < 1, "noise_quantile", "(0, 1)", self.noise_quantile)


@dataclass
class PredictConfig:
    """Schema of ``conf/predict.yaml``: tag text with a run's gated (and optionally adapted) model.

    Attributes:
        run_dir: a finished meta_train run.
        target: an adapted target saved under ``<run_dir>/adapted/`` (null: the meta-learned model).
        calibration: a label-free recalibration under ``<run_dir>/calibrations/`` (``metasparse.recalibrate``)
            whose decision biases replace the run's (null: the run's own).
        input: plain text (one sentence a line, words split on whitespace) or a ``.conllu`` file.
        out: the CoNLL-U file written (UPOS and DEPREL filled; other columns kept from CoNLL-U input).
        batch_size: sentences per forward (sorted by length so that a batch pads little).
        threads: torch CPU threads (null: torch's default).
        lang: the text's language (a code the run was trained on, e.g. ``fi``) for a backbone with a tag
            lexicon (``model.tag_lexicon``), which then reads that language's tables; null: the tables
            pooled over languages. Other backbones do not read it.
    """

    run_dir: str = MISSING
    target: str | None = None
    calibration: str | None = None
    input: str = MISSING
    out: str = MISSING
    batch_size: int = 32
    threads: int | None = None
    lang: str | None = None

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require(self.threads is None or self.threads >= 1, "threads", ">= 1 or null", self.threads)


@dataclass
class RecalibrateConfig:
    """Schema of ``conf/recalibrate.yaml``: re-meet a run's budget on unlabelled text, without labels.

    Attributes:
        run_dir: a finished meta_train run.
        input: unlabelled text (one sentence a line) or a ``.conllu`` file (its labels are never read).
        name: the new calibration's name (null: ``<input stem>-<first 8 hex of its sha256>``).
        budget: the cost fraction to meet (null: the run's ``budget.target``).
        max_sentences: input sentences used (the first ones).
        holdout_every: every n-th sentence is left out of the calibration and reports whether the budget
            holds on text it did not see (0: none held out).
    """

    run_dir: str = MISSING
    input: str = MISSING
    name: str | None = None
    budget: float | None = None
    max_sentences: int = 2000
    holdout_every: int = 5

    def __post_init__(self) -> None:
        require(self.budget is None or 0 < self.budget <= 1, "budget", "(0, 1] or null", self.budget)
        require(self.max_sentences >= 1, "max_sentences", ">= 1", self.max_sentences)
        require(self.holdout_every == 0 or self.holdout_every >= 2, "holdout_every", "0 or >= 2", self.holdout_every)
