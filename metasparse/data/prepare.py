"""From a config to everything a job needs from the data: sentences, cells, tokenizer, episodes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import datasets
from omegaconf import MISSING

from metasparse.data.cells import Cell, CellIndex, partition_cells
from metasparse.data.episodes import EpisodeConfig, EpisodeSampler
from metasparse.data.extra import ExtraTreebank, fingerprint, with_extra
from metasparse.data.pretrained_tokenizer import PretrainedTokenizer, resolve_pretrained
from metasparse.data.tag_lexicon import LEXICON_COLUMN, TagLexicon
from metasparse.data.tokenizer import SubwordTokenizer, TokenizerConfig, train_tokenizer
from metasparse.data.ud import load_ud
from metasparse.data.word_vocabulary import WordVocabulary
from metasparse.errors import require
from metasparse.tasks import Task, load_task

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """Which treebanks, where, and how sentences are split.

    Attributes:
        root: data directory; null means ``$METASPARSE_DATA_DIR`` or the download cache.
        treebanks: registry treebanks to use; null means all.
        split_seed: seed of the hash split.
        split_fractions: train, dev, test shares.
        offline: forbid downloads; null means ``$METASPARSE_OFFLINE``.
        extra: treebanks outside the registry (:class:`ExtraTreebank`: path, lang, domain, name), read,
            validated and split like the registry's, as more cells of the run.
    """

    root: str | None = None
    treebanks: list[str] | None = None
    split_seed: int = 0
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    offline: bool | None = None
    extra: list[ExtraTreebank] = field(default_factory=list)

    def __post_init__(self) -> None:
        f = list(self.split_fractions)
        require(
            len(f) == 3 and min(f) >= 0 and abs(sum(f) - 1) < 1e-6,
            "data.split_fractions",
            "three non-negative numbers summing to 1",
            f,
        )


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
    also: list[str] = field(default_factory=list)


class DataJob(Protocol):
    """What :func:`prepare` reads of a job config (pretrain, meta_train, bench.speed ...): the data package
    never imports the job schemas, which are built from its configs."""

    seed: int
    data: DataConfig
    tokenizer: TokenizerConfig
    tasks: list[str]
    domain: DomainConfig | None
    language: LanguageConfig | None


@dataclass
class DataBundle:
    """The prepared data of one run.

    Attributes:
        dataset: all sentences of the configured treebanks.
        index: row indices per cell and split.
        sources: cells used for (meta-)training.
        targets: held-out cells (empty when neither ``+domain`` nor ``+language`` is given).
        tasks: the configured tasks by name.
        tokenizer: subword tokenizer trained on the sources' train split, or a pretrained encoder's own
            (``model.name_or_path``).
        tokenizer_path: its cached model file (the checkpoint folder for a pretrained one).
        extra_fingerprint: sha256 of the ``data.extra`` treebanks' settings and files (None without any).
    """

    dataset: datasets.Dataset
    index: CellIndex
    sources: list[Cell]
    targets: list[Cell]
    tasks: dict[str, Task]
    tokenizer: SubwordTokenizer | PretrainedTokenizer
    tokenizer_path: Path
    extra_fingerprint: str | None = None

    def sampler(self, cells: list[Cell], e: EpisodeConfig, seed: int, *, validation: bool = False) -> EpisodeSampler:
        """The episodes meta-training draws from ``cells`` (``e.split``); validation episodes use their own
        seed and skip cells too small for an episode."""
        return EpisodeSampler(
            self.index,
            cells,
            e.tasks,
            e.shots,
            e.queries,
            split=e.split,
            seed=seed + 1 if validation else seed,
            on_small="skip" if validation else e.on_small,
            joint=e.joint,
        )


def held_out(cfg: DataJob) -> tuple[list[str], list[str]]:
    """Domains and languages the config holds out."""
    return ([cfg.domain.name] if cfg.domain else []), ([cfg.language.code, *cfg.language.also] if cfg.language else [])


def _tag_lexicon(ds, index: CellIndex, sources, prefixes: int, shape: bool) -> TagLexicon:
    """The tag lexicon of the source cells' train split (rows in cell order), with ``prefixes`` prefix
    levels and a ``shape`` level."""
    rows = [r for cell in sources for r in index.rows(cell, "train")]
    data = ds.select(rows).select_columns(["words", LEXICON_COLUMN, "lang"]).to_dict()
    return TagLexicon.build(data["words"], data[LEXICON_COLUMN], data["lang"], rows, ds._fingerprint, prefixes, shape)


def prepare(cfg: DataJob) -> DataBundle:
    """Load sentences, partition cells into sources and targets, and train or load the tokenizer.

    The tokenizer sees only the train split of the source cells, so nothing of a held-out domain or
    language leaks into it.

    Args:
        cfg: a job config with ``data``, ``tokenizer``, ``seed``, ``domain`` and ``language``.
    """
    task_names = list(cfg.tasks)
    d = cfg.data
    # A pretrained encoder reads its own subword ids. The model config is read here because the ids are a
    # property of the data a job feeds the model (jobs without a model section train the package's own);
    # resolved first, so a wrong path fails before any treebank is read.
    name_or_path = getattr(getattr(cfg, "model", None), "name_or_path", None)
    pretrained = resolve_pretrained(name_or_path) if name_or_path else None
    ds = load_ud(
        d.treebanks,
        root=Path(d.root) if d.root else None,
        split_seed=d.split_seed,
        fractions=tuple(d.split_fractions),
        offline=d.offline,
    )
    ds = with_extra(ds, d.extra, split_seed=d.split_seed, fractions=tuple(d.split_fractions))  # type: ignore[arg-type]
    extra_fp = fingerprint(d.extra) if d.extra else None
    index = CellIndex(ds)
    domains, languages = held_out(cfg)
    sources, targets = partition_cells(index.cells, domains, languages)
    tasks = {name: load_task(name) for name in task_names}
    if pretrained is not None:
        path = pretrained
        tokenizer: SubwordTokenizer | PretrainedTokenizer = PretrainedTokenizer(path, cfg.tokenizer.hash_buckets)
    else:
        by_lang: dict[str, list[list[str]]] = {}
        words = ds["words"]
        for cell in sources:
            by_lang.setdefault(cell.lang, []).extend(words[i] for i in index.rows(cell, "train"))
        tokenizer, path = train_tokenizer(by_lang, cfg.tokenizer, seed=cfg.seed)
        if cfg.tokenizer.word_min_count > 0:  # built from the same train sentences: nothing held out leaks in
            sentences = (s for lang in sorted(by_lang) for s in by_lang[lang])
            tokenizer.use_words(WordVocabulary.build(sentences, cfg.tokenizer.word_min_count))
        model = getattr(cfg, "model", None)
        if getattr(model, "tag_lexicon", False):  # likewise the source train split only
            tokenizer.use_lexicon(_tag_lexicon(ds, index, sources, model.lexicon_prefixes, model.lexicon_shape))
    words = tokenizer.words
    log.info(
        "%d source cells, %d target cells; tokenizer %s; %s",
        len(sources),
        len(targets),
        path.name,
        f"{len(words)} word forms seen >= {words.min_count}x" if words else "hashed word forms",
    )
    return DataBundle(ds, index, sources, targets, tasks, tokenizer, path, extra_fp)
