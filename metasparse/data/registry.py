"""The package's own pinned registry of UD treebanks: files, hashes, commits and domain rules.

The registry ships inside the package (``metasparse/data/registry/*.tsv``) so that a user with no
local copy of the data gets exactly the same files, by download at the pinned commits.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

DEFAULT_URL_TEMPLATE = "https://raw.githubusercontent.com/UniversalDependencies/{treebank}/{commit}/{name}"


@dataclass(frozen=True)
class DomainRule:
    """One regular expression that assigns sentences of a treebank to a domain.

    Attributes:
        treebank: UD treebank name, e.g. ``UD_Finnish-TDT``.
        field: ``sent_id`` or ``newdoc`` (the latest ``# newdoc id`` in the file).
        pattern: compiled regular expression, applied with ``re.search``.
        domain: domain label, e.g. ``legal``.
        sentences: number of sentences the rule matches in the pinned files.
        tokens: number of syntactic words in those sentences.
    """

    treebank: str
    field: str
    pattern: re.Pattern[str]
    domain: str
    sentences: int
    tokens: int


@dataclass(frozen=True)
class RegistryFile:
    """One pinned ``.conllu`` file.

    Attributes:
        treebank: UD treebank name.
        name: file name inside the treebank repository.
        split: the original UD split named in the file name (train, dev or test).
        sentences: sentence count, for checking.
        tokens: syntactic-word count, for checking.
        sha256: expected hex digest.
    """

    treebank: str
    name: str
    split: str
    sentences: int
    tokens: int
    sha256: str

    @property
    def relpath(self) -> str:
        """Path relative to the data dir: ``<treebank>/<name>``."""
        return f"{self.treebank}/{self.name}"


@dataclass(frozen=True)
class Treebank:
    """One pinned UD treebank with its language facts and source commit."""

    name: str
    lang: str
    language: str
    family: str
    script: str
    commit: str
    ud_release: str
    license: str
    files: tuple[RegistryFile, ...]
    rules: tuple[DomainRule, ...]

    def url(self, file: RegistryFile, template: str = DEFAULT_URL_TEMPLATE) -> str:
        """Download URL of ``file`` at the pinned commit."""
        return template.format(treebank=self.name, commit=self.commit, name=file.name)


@dataclass(frozen=True)
class Registry:
    """All pinned treebanks, in registry order."""

    treebanks: tuple[Treebank, ...]

    def __getitem__(self, name: str) -> Treebank:
        for tb in self.treebanks:
            if tb.name == name:
                return tb
        raise KeyError(f"unknown treebank {name!r}; available: {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [tb.name for tb in self.treebanks]

    @property
    def files(self) -> list[RegistryFile]:
        return [f for tb in self.treebanks for f in tb.files]

    @property
    def languages(self) -> list[str]:
        """Sorted ISO codes of all languages."""
        return sorted({tb.lang for tb in self.treebanks})

    @property
    def domains(self) -> list[str]:
        """Sorted domain labels that occur in at least one treebank."""
        return sorted({r.domain for tb in self.treebanks for r in tb.rules})

    def fingerprint(self) -> str:
        """A short hash of every pinned file hash and rule: changes whenever the data would."""
        h = hashlib.sha256()
        for tb in self.treebanks:
            for f in tb.files:
                h.update(f"{f.relpath}:{f.sha256}\n".encode())
            for r in tb.rules:
                h.update(f"{tb.name}:{r.field}:{r.pattern.pattern}:{r.domain}\n".encode())
        return h.hexdigest()[:16]


def _read_tsv(name: str) -> list[dict[str, str]]:
    text = resources.files("metasparse.data").joinpath("registry").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


@cache
def load_registry() -> Registry:
    """Load the registry shipped with the package (cached: it never changes at run time)."""
    files: dict[str, list[RegistryFile]] = {}
    for row in _read_tsv("files.tsv"):
        files.setdefault(row["treebank"], []).append(
            RegistryFile(
                row["treebank"],
                row["name"],
                row["split"],
                int(row["sentences"]),
                int(row["tokens"]),
                row["sha256"],
            )
        )
    rules: dict[str, list[DomainRule]] = {}
    for row in _read_tsv("domains.tsv"):
        rules.setdefault(row["treebank"], []).append(
            DomainRule(
                row["treebank"],
                row["field"],
                re.compile(row["rule"]),
                row["domain"],
                int(row["sentences"]),
                int(row["tokens"]),
            )
        )
    treebanks = tuple(
        Treebank(
            row["treebank"],
            row["lang"],
            row["language"],
            row["family"],
            row["script"],
            row["commit"],
            row["ud_release"],
            row["license"],
            tuple(files[row["treebank"]]),
            tuple(rules[row["treebank"]]),
        )
        for row in _read_tsv("treebanks.tsv")
    )
    return Registry(treebanks)
