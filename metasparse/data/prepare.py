"""From a config to everything a job needs from the data: sentences, cells, tokenizer, episodes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import datasets

from metasparse.config import MetaTrainConfig, PretrainConfig
from metasparse.data.cells import Cell, CellIndex, partition_cells
from metasparse.data.episodes import EpisodeSampler
from metasparse.data.tokenizer import SubwordTokenizer, train_tokenizer
from metasparse.data.ud import load_ud
from metasparse.tasks import Task, load_task

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """The prepared data of one run.

    Attributes:
        dataset: all sentences of the configured treebanks.
        index: row indices per cell and split.
        sources: cells used for (meta-)training.
        targets: held-out cells (empty when neither ``+domain`` nor ``+language`` is given).
        tasks: the configured tasks by name.
        tokenizer: subword tokenizer trained on the sources' train split.
        tokenizer_path: its cached model file.
    """

    dataset: datasets.Dataset
    index: CellIndex
    sources: list[Cell]
    targets: list[Cell]
    tasks: dict[str, Task]
    tokenizer: SubwordTokenizer
    tokenizer_path: Path

    def sampler(self, cells: list[Cell], cfg: MetaTrainConfig, *, validation: bool = False) -> EpisodeSampler:
        """The episodes meta-training draws from ``cells`` (``episodes.split``); validation episodes use
        their own seed and skip cells too small for an episode."""
        e = cfg.episodes
        return EpisodeSampler(
            self.index,
            cells,
            e.tasks,
            e.shots,
            e.queries,
            split=e.split,
            seed=cfg.seed + 1 if validation else cfg.seed,
            on_small="skip" if validation else e.on_small,
        )


def held_out(cfg: MetaTrainConfig | PretrainConfig) -> tuple[list[str], list[str]]:
    """Domains and languages the config holds out."""
    return ([cfg.domain.name] if cfg.domain else []), ([cfg.language.code, *cfg.language.also] if cfg.language else [])


def prepare(cfg: MetaTrainConfig | PretrainConfig) -> DataBundle:
    """Load sentences, partition cells into sources and targets, and train or load the tokenizer.

    The tokenizer sees only the train split of the source cells, so nothing of a held-out domain or
    language leaks into it.

    Args:
        cfg: a job config with ``data``, ``tokenizer``, ``seed``, ``domain`` and ``language``.
    """
    task_names = list(cfg.tasks)
    d = cfg.data
    ds = load_ud(
        d.treebanks,
        root=Path(d.root) if d.root else None,
        split_seed=d.split_seed,
        fractions=tuple(d.split_fractions),
        offline=d.offline,
    )
    index = CellIndex(ds)
    domains, languages = held_out(cfg)
    sources, targets = partition_cells(index.cells, domains, languages)
    tasks = {name: load_task(name) for name in task_names}
    by_lang: dict[str, list[list[str]]] = {}
    words = ds["words"]
    for cell in sources:
        by_lang.setdefault(cell.lang, []).extend(words[i] for i in index.rows(cell, "train"))
    tokenizer, path = train_tokenizer(by_lang, cfg.tokenizer.settings(cfg.seed))
    log.info("%d source cells, %d target cells; tokenizer %s", len(sources), len(targets), path.name)
    return DataBundle(ds, index, sources, targets, tasks, tokenizer, path)
