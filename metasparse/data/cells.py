"""Cells (treebank, language, domain), their sizes, and the source/target partition."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import datasets
import numpy as np

from metasparse.errors import ConfigValueError


def cell_name(lang: str, domain: str, treebank: str) -> str:
    """The readable unique name of a cell, e.g. ``fi/legal/Finnish-TDT``: how every report and table keys it."""
    return f"{lang}/{domain}/{treebank.removeprefix('UD_')}"


@dataclass(frozen=True, order=True)
class Cell:
    """One group of sentences: a language, a domain and the treebank they come from, in that field order
    (cells sort by language, then domain)."""

    lang: str
    domain: str
    treebank: str

    @property
    def name(self) -> str:
        """Readable unique name, e.g. ``fi/legal/Finnish-TDT``."""
        return cell_name(self.lang, self.domain, self.treebank)

    def __str__(self) -> str:
        return self.name


class CellIndex:
    """Row indices of a sentence dataset grouped by cell and split.

    Args:
        ds: a dataset with ``treebank, lang, domain, split, n_words`` columns.
    """

    def __init__(self, ds: datasets.Dataset) -> None:
        cols = ds.select_columns(["treebank", "lang", "domain", "split", "n_words"]).to_dict()
        rows: dict[Cell, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        words: dict[Cell, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for i, (tb, lang, dom, split, n) in enumerate(
            zip(cols["treebank"], cols["lang"], cols["domain"], cols["split"], cols["n_words"], strict=True)
        ):
            cell = Cell(lang, dom, tb)
            rows[cell][split].append(i)
            words[cell][split] += n
        self.cells: list[Cell] = sorted(rows)
        self._rows = {c: {s: np.asarray(v, dtype=np.int64) for s, v in d.items()} for c, d in rows.items()}
        self._words = {c: dict(d) for c, d in words.items()}

    def rows(self, cell: Cell, split: str | None = None) -> np.ndarray:
        """Dataset row indices of ``cell`` in ``split`` (all splits when None), ascending."""
        parts = self._rows[cell]
        if split is None:
            return np.sort(np.concatenate(list(parts.values())))
        return parts.get(split, np.zeros(0, dtype=np.int64))

    def sentences(self, cell: Cell, split: str | None = None) -> int:
        return len(self.rows(cell, split))

    def words(self, cell: Cell, split: str | None = None) -> int:
        d = self._words[cell]
        return sum(d.values()) if split is None else d.get(split, 0)

    @property
    def languages(self) -> list[str]:
        return sorted({c.lang for c in self.cells})

    @property
    def domains(self) -> list[str]:
        return sorted({c.domain for c in self.cells})


def partition_cells(
    cells: Sequence[Cell], domains: Iterable[str] = (), languages: Iterable[str] = ()
) -> tuple[list[Cell], list[Cell]]:
    """Split cells into sources and targets.

    A cell is a target if its domain is in ``domains`` or its language in ``languages`` (``+domain=legal
    +language=fi`` holds out every legal cell and every Finnish cell); every other cell is a source.

    Raises:
        ConfigValueError: a named domain or language has no cell; the message lists the available ones.
    """
    domains, languages = list(domains), list(languages)
    have_domains = sorted({c.domain for c in cells})
    have_langs = sorted({c.lang for c in cells})
    for d in domains:
        if d not in have_domains:
            raise ConfigValueError(f"domain.name={d!r} is not in the data; available: {', '.join(have_domains)}")
    for lang in languages:
        if lang not in have_langs:
            raise ConfigValueError(f"language.code={lang!r} is not in the data; available: {', '.join(have_langs)}")
    targets = [c for c in cells if c.domain in domains or c.lang in languages]
    sources = [c for c in cells if c not in set(targets)]
    return sources, targets
