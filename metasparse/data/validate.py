"""Line-level CoNLL-U validation with ``file:line: reason`` messages.

The ``conllu`` library parses; this module checks first, because a parser's error rarely says which
line of which file is wrong. The checks cover what breaks a tagging dataset silently: a wrong column
count, a malformed ID, an unknown UPOS tag or relation base, an empty sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from metasparse.data.labels import DEPREL_BASES, UPOS_TAGS, deprel_base
from metasparse.errors import ConlluFormatError, PathError

_UPOS = frozenset(UPOS_TAGS)
_DEPREL = frozenset(DEPREL_BASES)
_WORD_ID = re.compile(r"[1-9]\d*")
_RANGE_ID = re.compile(r"[1-9]\d*-[1-9]\d*")
_EMPTY_ID = re.compile(r"\d+\.[1-9]\d*")


def read_text(path: str | Path) -> str:
    """Read a file as UTF-8, turning a decoding failure into a ``file:line`` error."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConlluFormatError(str(path), line, f"not valid UTF-8 at byte {exc.start} ({exc.reason})") from None


def iter_errors(text: str, path: str | Path) -> Iterator[ConlluFormatError]:
    """Yield every format error in ``text`` (the contents of ``path``), in line order."""
    path = str(path)
    block_start: int | None = None  # line where the current sentence block began
    words = 0
    expected_id = 1
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, raw in enumerate(lines + [""], start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            if block_start is not None and words == 0:
                yield ConlluFormatError(path, block_start, "empty sentence: no word lines before the blank line")
            block_start, words, expected_id = None, 0, 1
            continue
        if block_start is None:
            block_start = lineno
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            yield ConlluFormatError(path, lineno, f"expected 10 tab-separated columns, found {len(cols)}")
            if _WORD_ID.fullmatch(cols[0]):  # keep the ID sequence so one bad line gives one error
                expected_id, words = int(cols[0]) + 1, words + 1
            continue
        tok_id, upos, head, deprel = cols[0], cols[3], cols[6], cols[7]
        if _RANGE_ID.fullmatch(tok_id) or _EMPTY_ID.fullmatch(tok_id):
            continue  # multiword-token ranges and empty nodes carry no word-level labels
        if not _WORD_ID.fullmatch(tok_id):
            yield ConlluFormatError(
                path, lineno, f"ID {tok_id!r} is not an integer, a range (3-4) or an empty node (3.1)"
            )
            continue
        if int(tok_id) != expected_id:
            yield ConlluFormatError(path, lineno, f"word ID {tok_id} out of sequence (expected {expected_id})")
        expected_id = int(tok_id) + 1
        words += 1
        if upos not in _UPOS:
            yield ConlluFormatError(path, lineno, f"unknown UPOS {upos!r}; allowed: {' '.join(UPOS_TAGS)}")
        if not head.isdigit():
            yield ConlluFormatError(path, lineno, f"HEAD {head!r} is not a non-negative integer")
        if (base := deprel_base(deprel)) not in _DEPREL:
            allowed = " ".join(DEPREL_BASES)
            yield ConlluFormatError(path, lineno, f"unknown DEPREL base {base!r} (from {deprel!r}); allowed: {allowed}")


def validate_text(text: str, path: str | Path) -> None:
    """Raise the first format error in ``text``, if any."""
    for err in iter_errors(text, path):
        raise err


def conllu_files(path: str | Path) -> list[Path]:
    """The ``.conllu`` files at ``path``: the file itself, or every one under a folder, sorted."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.rglob("*.conllu"))
        if not files:
            raise PathError(f"{p}: no .conllu files in this folder")
        return files
    if not p.exists():
        raise PathError(f"{p}: no such file or folder")
    return [p]
