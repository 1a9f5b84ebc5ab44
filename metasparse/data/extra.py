"""Treebanks from outside the registry (``data.extra``): a user's own UD folders as cells of a run.

Each entry names a folder (or one ``.conllu`` file), its language and its domain; its sentences are read
and validated like ``data check`` reads them (errors name ``file:line``), split by the same hash rule as
the registry's, and join the run's cells as sources, or as targets when ``+domain=`` / ``+language=``
holds their domain or language out. Their content is fingerprinted (sha256 of every file), so a backbone
trained with them is cached under its own key and a changed file is never served a stale backbone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
from omegaconf import MISSING

from metasparse.data.validate import conllu_files
from metasparse.errors import ConfigValueError, PathError, require
from metasparse.io import sha256_file


@dataclass
class ExtraTreebank:
    """One treebank outside the registry.

    Attributes:
        path: a UD folder (searched recursively for ``.conllu`` files) or one ``.conllu`` file.
        lang: language code of every sentence (an existing code joins that language's cells).
        domain: domain of every sentence (``legal`` joins the legal cells as one more treebank).
        name: treebank name in cell names (``<lang>/<domain>/<name>``); null: the folder's name.
    """

    path: str = MISSING
    lang: str = MISSING
    domain: str = MISSING
    name: str | None = None

    def __post_init__(self) -> None:
        require(bool(self.lang) and "/" not in self.lang, "data.extra[].lang", "a language code", self.lang)
        require(bool(self.domain) and "/" not in self.domain, "data.extra[].domain", "a domain name", self.domain)

    @property
    def treebank(self) -> str:
        p = Path(self.path)
        return self.name or (p.name if p.is_dir() else p.parent.name)


def check_extra(extra: list[ExtraTreebank], registry_names: list[str]) -> None:
    """Refuse missing paths and names that clash with the registry or with each other, naming the entry.

    Raises:
        PathError: ``data.extra[i].path`` does not exist or holds no ``.conllu`` file.
        ConfigValueError: a duplicate treebank name.
    """
    seen = {n.removeprefix("UD_") for n in registry_names}
    for i, e in enumerate(extra):
        if not Path(e.path).exists():
            raise PathError(f"data.extra[{i}].path={e.path}: no such file or folder")
        try:
            conllu_files(e.path)
        except PathError as exc:
            raise PathError(f"data.extra[{i}].path={e.path}: {exc}") from None
        name = e.treebank.removeprefix("UD_")
        if name in seen:
            raise ConfigValueError(
                f"data.extra[{i}].name={e.treebank!r} is already a treebank of this run; allowed: a name not in "
                "the registry or elsewhere in data.extra (set data.extra[].name)"
            )
        seen.add(name)


def fingerprint(extra: list[ExtraTreebank]) -> str:
    """sha256 over each entry's settings and its files' contents (what a backbone trained on them depends on)."""
    spec = []
    for e in extra:
        files = conllu_files(e.path)
        root = Path(e.path) if Path(e.path).is_dir() else Path(e.path).parent
        spec.append(
            {
                "name": e.treebank,
                "lang": e.lang,
                "domain": e.domain,
                "files": {str(f.relative_to(root)): sha256_file(f) for f in files},
            }
        )
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def with_extra(
    ds: datasets.Dataset, extra: list[ExtraTreebank], *, split_seed: int, fractions: tuple[float, float, float]
) -> datasets.Dataset:
    """``ds`` (the registry's sentences) with the extra treebanks appended, checked first."""
    if not extra:
        return ds
    from metasparse.data.registry import load_registry

    check_extra(extra, load_registry().names)
    return datasets.concatenate_datasets([ds, load_extra(extra, split_seed=split_seed, fractions=fractions)])


def load_extra(
    extra: list[ExtraTreebank], *, split_seed: int, fractions: tuple[float, float, float]
) -> datasets.Dataset:
    """All extra treebanks as one dataset with the registry's columns, split by the same hash rule."""
    from metasparse.data.ud import load_folder

    parts = [
        load_folder(
            e.path, lang=e.lang, domain=e.domain, treebank=e.treebank, split_seed=split_seed, fractions=fractions
        )
        for e in extra
    ]
    return datasets.concatenate_datasets(parts)
