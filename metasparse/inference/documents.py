"""What ``predict`` reads and writes: plain text or CoNLL-U in, CoNLL-U with UPOS and DEPREL out.

Plain text is one sentence a line, words split on whitespace (the package does not tokenise raw text;
pre-tokenise with your tokenizer of choice). CoNLL-U input is validated like ``data check`` and written
back with every column kept except the predicted ones (multiword-token ranges and empty nodes untouched).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import conllu

from metasparse.data.ud import block_start_lines
from metasparse.data.validate import read_text, validate_text
from metasparse.errors import InputError, decode_utf8
from metasparse.io import atomic_write

MAX_WORDS = 1000  # a "sentence" longer than this is almost surely a whole paragraph or a broken file


@dataclass
class Document:
    """Sentences to tag.

    Attributes:
        sentences: the words of each sentence.
        lines: the input line each sentence starts on (for errors and ``# source_line``).
        parsed: the CoNLL-U sentences (their word tokens align with ``sentences``), or None for plain text.
    """

    sentences: list[list[str]]
    lines: list[int]
    parsed: list[conllu.TokenList] | None = None


def read_document(path: str | Path, key: str | None = None, max_words: int | None = MAX_WORDS) -> Document:
    """Read ``path`` as CoNLL-U (``.conllu``) or plain text.

    Args:
        key: the config key the path came from, named in errors (``input=<path>: ...``).
        max_words: refuse a longer sentence (None: any length; the monitor reads long sentences as they are).

    Raises:
        InputError: not UTF-8 (names the byte), no sentence, or a sentence over :data:`MAX_WORDS` words.
        ConlluFormatError: CoNLL-U that breaks the format (``file:line: reason``).
    """
    path = Path(path)
    where = f"{key}={path}" if key else str(path)
    if path.suffix == ".conllu":
        text = read_text(path)
        validate_text(text, path)
        parsed = conllu.parse(text)
        sentences = [[t["form"] for t in s if isinstance(t["id"], int)] for s in parsed]
        doc = Document(sentences, block_start_lines(text), parsed)
    else:
        sentences, lines = [], []
        for i, raw in enumerate(decode_utf8(path.read_bytes(), where).splitlines(), start=1):
            if words := raw.split():
                sentences.append(words)
                lines.append(i)
        doc = Document(sentences, lines)
    if not doc.sentences:
        raise InputError(f"{where}: no sentence in it (plain text: one sentence a line; or a .conllu file)")
    for words, line in zip(doc.sentences, doc.lines, strict=True):
        if max_words is not None and len(words) > max_words:
            raise InputError(f"{where}:{line}: {len(words)} words in one sentence; at most {max_words} (one a line?)")
    return doc


def write_conllu(doc: Document, labels: dict[str, list[list[str]]], path: str | Path) -> Path:
    """Write ``doc`` with the predicted ``labels`` (``upos``/``deprel`` -> per sentence, per word) atomically.

    Plain-text input gets ID, FORM and the predictions, ``_`` elsewhere (HEAD is not predicted: the model
    labels each word's relation type, not the tree).
    """
    out: list[str] = []
    for i, words in enumerate(doc.sentences):
        if doc.parsed is not None:
            sent = doc.parsed[i]
            word_tokens = [t for t in sent if isinstance(t["id"], int)]
            for j, tok in enumerate(word_tokens):
                for task, column in (("upos", "upos"), ("deprel", "deprel")):
                    if task in labels:
                        tok[column] = labels[task][i][j]
            out.append(sent.serialize())
            continue
        rows = [f"# sent_id = {i + 1}", f"# source_line = {doc.lines[i]}", f"# text = {' '.join(words)}"]
        for j, w in enumerate(words):
            upos = labels["upos"][i][j] if "upos" in labels else "_"
            deprel = labels["deprel"][i][j] if "deprel" in labels else "_"
            rows.append(f"{j + 1}\t{w}\t_\t{upos}\t_\t_\t_\t{deprel}\t_\t_")
        out.append("\n".join(rows) + "\n\n")
    return atomic_write(path, "".join(out))
