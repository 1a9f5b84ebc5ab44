"""Read UD CoNLL-U files into a Hugging Face ``datasets.Dataset`` of sentences.

One row per sentence: ``sent_id, treebank, lang, domain, split, ud_split, words, upos, deprel,
n_words``. Only syntactic words are kept (multiword-token ranges and empty nodes are dropped);
``deprel`` holds the universal base (``obl:tmod`` -> ``obl``). The parsed registry data is cached
on disk (Arrow, no pickles) under a key made from the pinned hashes and the split settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import conllu
import datasets

from metasparse.data.domains import DomainAssigner
from metasparse.data.fetch import cache_dir, fetch
from metasparse.data.labels import deprel_base
from metasparse.data.registry import load_registry
from metasparse.data.splits import assign_split, check_fractions
from metasparse.data.validate import conllu_files, read_text, validate_text
from metasparse.io import atomic_folder

log = logging.getLogger(__name__)

# Bump when the rows this module produces change, so old caches are not reused.
READER_VERSION = 1

FEATURES = datasets.Features(
    {
        "sent_id": datasets.Value("string"),
        "treebank": datasets.Value("string"),
        "lang": datasets.Value("string"),
        "domain": datasets.Value("string"),
        "split": datasets.Value("string"),
        "ud_split": datasets.Value("string"),
        "words": datasets.Sequence(datasets.Value("string")),
        "upos": datasets.Sequence(datasets.Value("string")),
        "deprel": datasets.Sequence(datasets.Value("string")),
        "n_words": datasets.Value("int32"),
    }
)

DomainOf = Callable[[str, "str | None", str], str]


def block_start_lines(text: str) -> list[int]:
    """1-based line numbers where each blank-line-separated block starts (conllu yields one per block)."""
    starts, in_block = [], False
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            if not in_block:
                starts.append(lineno)
            in_block = True
        else:
            in_block = False
    return starts


def read_conllu(
    path: str | Path,
    *,
    treebank: str,
    lang: str,
    domain_of: DomainOf,
    ud_split: str = "",
    split_seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> list[dict]:
    """Validate and read one CoNLL-U file.

    Args:
        path: the file.
        treebank: treebank name stored in each row (and part of the split hash).
        lang: ISO language code.
        domain_of: ``(sent_id, newdoc_id, "file:line") -> domain``; raises on no or several matches.
        ud_split: the original UD split of the file, kept for reference.
        split_seed: seed of the hash split.
        fractions: train/dev/test shares.

    Returns:
        One dict per sentence with the columns of :data:`FEATURES`.

    Raises:
        ConlluFormatError: the file breaks the format (``file:line: reason``).
        DomainRuleError: a sentence has no domain or several.
    """
    text = read_text(path)
    validate_text(text, path)
    rows, newdoc = [], None
    for start, sent in zip(block_start_lines(text), conllu.parse(text), strict=True):
        meta = sent.metadata
        newdoc = meta.get("newdoc id", newdoc)
        sent_id = meta.get("sent_id") or f"{Path(path).name}#{len(rows) + 1}"
        toks = [t for t in sent if isinstance(t["id"], int)]
        rows.append(
            {
                "sent_id": sent_id,
                "treebank": treebank,
                "lang": lang,
                "domain": domain_of(sent_id, newdoc, f"{path}:{start}"),
                "split": assign_split(treebank, sent_id, fractions, split_seed),
                "ud_split": ud_split,
                "words": [t["form"] for t in toks],
                "upos": [t["upos"] for t in toks],
                "deprel": [deprel_base(t["deprel"]) for t in toks],
                "n_words": len(toks),
            }
        )
    return rows


def _cache_key(treebanks: list[str], split_seed: int, fractions: tuple[float, float, float]) -> str:
    spec = {
        "v": READER_VERSION,
        "registry": load_registry().fingerprint(),
        "treebanks": treebanks,
        "seed": split_seed,
        "fractions": list(fractions),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def save_dataset_atomic(ds: datasets.Dataset, target: Path) -> None:
    """Write ``ds`` with ``save_to_disk`` into a temporary sibling, then rename it into place."""
    with atomic_folder(target, replace=False) as tmp:  # another process may win the race: keep its copy
        ds.save_to_disk(str(tmp))


def load_ud(
    treebanks: Iterable[str] | None = None,
    *,
    root: Path | None = None,
    split_seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    offline: bool | None = None,
    use_cache: bool = True,
) -> datasets.Dataset:
    """Load the registry treebanks as one sentence-level dataset (fetching and caching as needed).

    Args:
        treebanks: names to load; None loads all 21.
        root: data directory (default: ``$METASPARSE_DATA_DIR`` or the download cache).
        split_seed: seed of the hash split.
        fractions: train/dev/test shares.
        offline: forbid downloads (default: ``$METASPARSE_OFFLINE``).
        use_cache: reuse and write the parsed Arrow cache.
    """
    reg = load_registry()
    names = reg.names if treebanks is None else [reg[n].name for n in treebanks]
    fractions = tuple(fractions)  # type: ignore[assignment]
    check_fractions(fractions)
    paths = fetch(names, root=root, offline=offline)  # verifies every hash, also for a cache hit
    target = cache_dir() / "datasets" / f"ud-{_cache_key(names, split_seed, fractions)}"
    if use_cache and target.exists():
        return datasets.load_from_disk(str(target))
    rows: list[dict] = []
    for name in names:
        tb = reg[name]
        assigner = DomainAssigner(tb.rules)
        for f in tb.files:
            rows += read_conllu(
                paths[f.relpath],
                treebank=tb.name,
                lang=tb.lang,
                domain_of=assigner.assign,
                ud_split=f.split,
                split_seed=split_seed,
                fractions=fractions,
            )
    ds = datasets.Dataset.from_list(rows, features=FEATURES)
    if use_cache:
        save_dataset_atomic(ds, target)
        ds = datasets.load_from_disk(str(target))  # memory-mapped, like a cache hit
    return ds


def load_folder(
    path: str | Path,
    *,
    lang: str,
    domain: str,
    treebank: str | None = None,
    split_seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> datasets.Dataset:
    """Read a UD treebank folder (or one file) from outside the registry, all of it in one domain.

    Args:
        path: a ``.conllu`` file or a folder searched recursively.
        lang: ISO language code for every sentence.
        domain: domain label for every sentence.
        treebank: name stored in the rows; defaults to the folder's name.
        split_seed: seed of the hash split.
        fractions: train/dev/test shares.
    """
    check_fractions(tuple(fractions))  # type: ignore[arg-type]
    p = Path(path)
    name = treebank or (p.name if p.is_dir() else p.parent.name)
    rows: list[dict] = []
    for f in conllu_files(p):
        ud_split = next((s for s in ("train", "dev", "test") if f"-{s}" in f.stem), "")
        rows += read_conllu(
            f,
            treebank=name,
            lang=lang,
            domain_of=lambda *_: domain,
            ud_split=ud_split,
            split_seed=split_seed,
            fractions=tuple(fractions),
        )
    return datasets.Dataset.from_list(rows, features=FEATURES)
