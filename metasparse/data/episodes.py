"""Episodes (task, cell, support, query) drawn deterministically from source or target cells.

Episode ``i`` is a pure function of ``(seed, i)``: a resumed run redraws exactly the episodes it
would have seen, whatever happened before. A cell with fewer than ``shots + queries`` sentences in
the split is skipped with one warning (``on_small="skip"``) or refused (``on_small="error"``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from metasparse.data.cells import Cell, CellIndex
from metasparse.errors import CellTooSmallError, ConfigValueError, require

log = logging.getLogger(__name__)

ON_SMALL = ("skip", "error")


@dataclass
class EpisodeConfig:
    """Episode shape.

    Attributes:
        tasks: task names from ``tasks/``.
        joint: every episode trains on all ``tasks`` at once (the loss summed over them, as the final
            adaptation does); false draws one task per episode.
        shots: support sentences per episode (K).
        queries: query sentences per episode (Q).
        on_small: what to do with cells smaller than K+Q: ``skip`` (warn) or ``error``.
    """

    tasks: list[str] = field(default_factory=lambda: ["upos", "deprel"])
    joint: bool = True
    shots: int = 16
    queries: int = 16
    on_small: str = "skip"
    split: str = "dev"

    # Why dev: the backbone was trained for several epochs on the source cells' train split and has
    # nearly memorised it (query loss ~0.01 there), so episodes from it teach a controller that every
    # input is easy. Dev sentences are unseen by the backbone, like the target cells' sentences.

    def __post_init__(self) -> None:
        require(self.shots >= 1, "episodes.shots", ">= 1", self.shots)
        require(self.queries >= 1, "episodes.queries", ">= 1", self.queries)
        require(self.on_small in ON_SMALL, "episodes.on_small", ", ".join(ON_SMALL), self.on_small)
        require(len(self.tasks) >= 1, "episodes.tasks", "a non-empty list of task names", self.tasks)
        require(self.split in ("train", "dev"), "episodes.split", "train, dev", self.split)


@dataclass(frozen=True)
class Episode:
    """One few-shot task instance.

    Attributes:
        index: position in the sampler's sequence.
        task: task name (``upos`` or ``deprel``), or a tuple of them for a joint episode.
        cell: the cell both sets come from.
        support: dataset row indices of the K support sentences.
        query: dataset row indices of the Q query sentences (disjoint from support).
    """

    index: int
    task: str | tuple[str, ...]
    cell: Cell
    support: tuple[int, ...]
    query: tuple[int, ...]


class EpisodeSampler:
    """Draw episodes from a fixed list of cells.

    Args:
        index: row indices per cell and split.
        cells: the cells to draw from (e.g. the sources of a ``+domain=legal`` run).
        tasks: task names, drawn uniformly per episode.
        shots: support size K.
        queries: query size Q.
        split: split the sentences come from.
        seed: fixes every episode.
        on_small: ``skip`` (warn once, leave the cell out) or ``error``.

    Raises:
        CellTooSmallError: ``on_small="error"`` and a cell is too small.
        ConfigValueError: bad sizes, no tasks, or no cell left to draw from.
    """

    def __init__(
        self,
        index: CellIndex,
        cells: Sequence[Cell],
        tasks: Sequence[str],
        shots: int,
        queries: int,
        *,
        split: str = "train",
        seed: int = 0,
        on_small: str = "skip",
        joint: bool = False,
    ) -> None:
        if shots < 1 or queries < 1:
            raise ConfigValueError(f"episodes.shots and episodes.queries must be >= 1, got {shots} and {queries}")
        if not tasks:
            raise ConfigValueError("episodes.tasks is empty; give at least one of: upos, deprel")
        if on_small not in ON_SMALL:
            raise ConfigValueError(f"episodes.on_small={on_small!r}; allowed: {', '.join(ON_SMALL)}")
        need = shots + queries
        small = [c for c in cells if index.sentences(c, split) < need]
        if small and on_small == "error":
            raise CellTooSmallError(
                f"{len(small)} cell(s) have fewer than shots+queries={need} {split} sentences: "
                + ", ".join(f"{c} ({index.sentences(c, split)})" for c in small)
            )
        if small:
            log.warning(
                "skipping %d cell(s) with fewer than %d %s sentences: %s",
                len(small),
                need,
                split,
                ", ".join(f"{c} ({index.sentences(c, split)})" for c in small),
            )
        self.cells: list[Cell] = sorted(c for c in cells if c not in set(small))
        self.skipped: list[Cell] = sorted(small)
        if not self.cells:
            raise ConfigValueError(f"no cell has {need} {split} sentences; lower episodes.shots or episodes.queries")
        self.index, self.tasks = index, list(tasks)
        self.shots, self.queries, self.split, self.seed, self.joint = shots, queries, split, seed, joint

    def episode(self, i: int) -> Episode:
        """The ``i``-th episode (depends only on the seed, ``i`` and the sampler's settings)."""
        rng = np.random.default_rng([self.seed, i])
        cell = self.cells[int(rng.integers(len(self.cells)))]
        task = tuple(self.tasks) if self.joint else self.tasks[int(rng.integers(len(self.tasks)))]
        rows = self.index.rows(cell, self.split)
        pick = rows[rng.choice(len(rows), self.shots + self.queries, replace=False)]
        return Episode(
            i,
            task,
            cell,
            tuple(int(r) for r in pick[: self.shots]),
            tuple(int(r) for r in pick[self.shots :]),
        )

    def __iter__(self) -> Iterator[Episode]:
        i = 0
        while True:
            yield self.episode(i)
            i += 1

    def take(self, n: int, start: int = 0) -> list[Episode]:
        """Episodes ``start .. start+n-1``."""
        return [self.episode(i) for i in range(start, start + n)]
