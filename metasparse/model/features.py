"""Turn sentences into padded model inputs: subwords with word alignment, hashed word forms and suffixes,
each word's characters and, with a tag lexicon, each word's tag distribution."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from metasparse.data.tokenizer import PAD_ID, SubwordTokenizer

# The affixes each word's hashed buckets stand for, as (kind, length), in column order: suffixes of 1-3
# characters were the first backbones' only ones, so they stay the first columns and a backbone reads the
# leading ``EncoderSpec.affixes`` of them. Longer suffixes and prefixes tell unseen inflected forms apart:
# case endings of 3-4 characters (Finnish -ssa/-lla, Turkish -ları), articles and conjunctions glued at the
# start (Arabic al-, wa-).
AFFIXES = (("s", 1), ("s", 2), ("s", 3), ("s", 4), ("p", 2), ("p", 3))
IGNORE_INDEX = -100
# Characters of a word for the character encoder: hashed (not a closed alphabet: 8 scripts, Hangul and
# CJK among them) into CHAR_BUCKETS ids, case kept (capitals tell proper nouns), framed by begin/end
# markers, at most MAX_CHARS ids a word. A longer word keeps its first CHAR_HEAD characters and its end:
# inflection sits at the end in most of these languages, prefixes (negation, articles) at the start.
CHAR_BUCKETS = 8192
MAX_CHARS = 16
CHAR_HEAD = 4
BOW, EOW = 1, 2


@dataclass
class Batch:
    """Padded inputs of B sentences with up to T words and S subwords.

    Attributes:
        input_ids: ``[B, S]`` subword ids (0 = padding).
        word_index: ``[B, S]`` word of each subword (-1 = padding).
        word_hash: ``[B, T]`` hashed word-form bucket (0 = padding).
        suffix_hash: ``[B, T, A]`` hashed affix buckets (0 = padding), one column per :data:`AFFIXES` entry.
        word_mask: ``[B, T]`` True for real words.
        labels: task name -> ``[B, T]`` label ids (-100 = padding).
        char_ids: ``[B, T, MAX_CHARS]`` character ids of each word (0 = padding), or None.
        unpadded: True when every row is known to have ``T`` real words (set where the lengths are Python
            ints anyway, as in :func:`pad`); False means padded or not known. Why: a controller pools over
            real words, and asking the mask whether it has padding (``bool(mask.all())``) costs a reduction
            and a sync, about 9 us, a tenth of a decision at batch 1.
        lexicon: ``[B, T, W]`` each word's tag-lexicon features
            (:meth:`metasparse.data.tag_lexicon.TagLexicon.features`; padding 0), or None.
    """

    input_ids: torch.Tensor
    word_index: torch.Tensor
    word_hash: torch.Tensor
    suffix_hash: torch.Tensor
    word_mask: torch.Tensor
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    char_ids: torch.Tensor | None = None
    unpadded: bool = False
    lexicon: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return self.word_mask.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        return self.word_mask.sum(1)

    def select(self, idx: torch.Tensor | Sequence[int]) -> Batch:
        """The sub-batch of rows ``idx`` (padding kept as is)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Batch(
            self.input_ids[idx],
            self.word_index[idx],
            self.word_hash[idx],
            self.suffix_hash[idx],
            self.word_mask[idx],
            {k: v[idx] for k, v in self.labels.items()},
            None if self.char_ids is None else self.char_ids[idx],
            self.unpadded,  # rows of an unpadded batch have no padding; of a padded one: not known
            None if self.lexicon is None else self.lexicon[idx],
        )


def suffix_buckets(word: str, buckets: int) -> list[int]:
    """Hashed buckets of the word's :data:`AFFIXES` (case-folded), in ``[1, buckets)``; a suffix hashes as
    in the first backbones (``"3\x1fssa"``), a prefix with its own mark (``"p2\x1fal"``)."""
    w = word.casefold()
    keys = (f"{n}\x1f{w[-n:]}" if kind == "s" else f"p{n}\x1f{w[:n]}" for kind, n in AFFIXES)
    return [zlib.crc32(k.encode()) % (buckets - 1) + 1 for k in keys]


@lru_cache(maxsize=1 << 16)
def _char_bucket(c: str) -> int:
    return zlib.crc32(c.encode("utf-8")) % (CHAR_BUCKETS - 3) + 3


def char_ids(word: str) -> list[int]:
    """The word's character ids for the character encoder: ``[BOW, c_1, ..., c_n, EOW]``, at most
    ``MAX_CHARS`` long (a longer word keeps its first ``CHAR_HEAD`` characters and its end)."""
    chars = [_char_bucket(c) for c in word]
    room = MAX_CHARS - 2
    if len(chars) > room:
        chars = chars[:CHAR_HEAD] + chars[len(chars) - (room - CHAR_HEAD) :]
    return [BOW, *chars, EOW]


@dataclass
class EncodedSentence:
    """Model inputs of one sentence before padding."""

    input_ids: list[int]
    word_index: list[int]
    word_hash: list[int]
    suffix_hash: list[list[int]]
    chars: list[list[int]] = field(default_factory=list)
    lexicon: np.ndarray | None = None

    @property
    def n_words(self) -> int:
        return len(self.word_hash)


def encode_sentence(
    words: Sequence[str],
    tokenizer: SubwordTokenizer,
    suffix_bucket_count: int,
    max_subwords_per_word: int = 8,
    *,
    lang: str | None = None,
    gold_upos: Sequence[str] | None = None,
) -> EncodedSentence:
    """Encode one pre-tokenized sentence; a word over ``max_subwords_per_word`` pieces keeps its first.

    With a tag lexicon on the tokenizer, each word also gets its lexicon features for language ``lang``;
    ``gold_upos`` (only for a sentence the lexicon counted) leaves each token out of its own counts.
    """
    e = tokenizer.encode_words(words)
    lexicon = tokenizer.lexicon
    ids, idx, count, last = [], [], 0, -1
    for i, w in zip(e.input_ids, e.word_index, strict=True):
        count = count + 1 if w == last else 1
        last = w
        if count <= max_subwords_per_word:
            ids.append(i)
            idx.append(w)
    return EncodedSentence(
        ids,
        idx,
        e.word_hash,
        [list(_suffix_buckets(w, suffix_bucket_count)) for w in words],
        [list(_char_ids(w)) for w in words],
        None if lexicon is None else lexicon.features(words, lang, gold_upos),
    )


# Memos of the per-word features (word forms repeat, and a corpus is encoded word by word); tuples, so a
# caller cannot change what the memo hands out.
@lru_cache(maxsize=1 << 18)
def _suffix_buckets(word: str, buckets: int) -> tuple[int, ...]:
    return tuple(suffix_buckets(word, buckets))


@lru_cache(maxsize=1 << 18)
def _char_ids(word: str) -> tuple[int, ...]:
    return tuple(char_ids(word))


def pad(items: Sequence[EncodedSentence], labels: Mapping[str, Sequence[Sequence[int]]] | None = None) -> Batch:
    """Pad encoded sentences (and optional label ids per task) into a :class:`Batch`.

    Each field is built from one flat list by a boolean-mask assignment (row-major, so the sentences' values
    land in order): one tensor per field and batch, not one per sentence; scoring pads every batch.
    """
    B = len(items)
    n_words = [x.n_words for x in items]
    sub_len = torch.tensor([len(x.input_ids) for x in items], dtype=torch.long)
    word_len = torch.tensor(n_words, dtype=torch.long)
    S = max(int(sub_len.max()), 1) if B else 1
    T = max(int(word_len.max()), 1) if B else 1
    sub_mask = torch.arange(S) < sub_len[:, None]
    mask = torch.arange(T) < word_len[:, None]
    input_ids = torch.full((B, S), PAD_ID, dtype=torch.long)
    word_index = torch.full((B, S), -1, dtype=torch.long)
    word_hash = torch.zeros((B, T), dtype=torch.long)
    A = next((len(x.suffix_hash[0]) for x in items if x.suffix_hash), len(AFFIXES))
    suffix = torch.zeros((B, T, A), dtype=torch.long)
    input_ids[sub_mask] = _flat([x.input_ids for x in items])
    word_index[sub_mask] = _flat([x.word_index for x in items])
    word_hash[mask] = _flat([x.word_hash for x in items])
    suffix[mask] = _flat([x.suffix_hash for x in items]).view(-1, A)
    chars = None
    if all(len(x.chars) == x.n_words for x in items):
        chars = torch.zeros((B, T, MAX_CHARS), dtype=torch.long)
        padded = [c + [0] * (MAX_CHARS - len(c)) for x in items for c in x.chars]
        chars[mask] = torch.tensor(padded, dtype=torch.long).view(-1, MAX_CHARS)
    lexicon = None
    if items and all(x.lexicon is not None for x in items):
        lexicon = torch.zeros((B, T, items[0].lexicon.shape[1]), dtype=torch.float32)  # type: ignore[union-attr]
        lexicon[mask] = torch.from_numpy(np.concatenate([x.lexicon for x in items]))  # type: ignore[misc]
    out = {}
    for task, seqs in (labels or {}).items():
        t = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
        t[torch.arange(T) < torch.tensor([len(q) for q in seqs], dtype=torch.long)[:, None]] = _flat(seqs)
        out[task] = t
    unpadded = B > 0 and min(n_words) == T
    return Batch(input_ids, word_index, word_hash, suffix, mask, out, chars, unpadded, lexicon)


def _flat(rows: Sequence[Sequence]) -> torch.Tensor:
    """The rows' values (ints, or lists of ints) concatenated into one long tensor."""
    flat = [v for r in rows for v in r]
    if flat and isinstance(flat[0], list | tuple):
        flat = [u for v in flat for u in v]
    return torch.tensor(flat, dtype=torch.long)


def collate(
    sentences: Sequence[Sequence[str]],
    tokenizer: SubwordTokenizer,
    *,
    suffix_bucket_count: int,
    labels: Mapping[str, Sequence[Sequence[int]]] | None = None,
    max_subwords_per_word: int = 8,
    lang: str | None = None,
) -> Batch:
    """Encode and pad sentences (lists of words, in language ``lang`` when known) into a :class:`Batch`."""
    items = [encode_sentence(s, tokenizer, suffix_bucket_count, max_subwords_per_word, lang=lang) for s in sentences]
    return pad(items, labels)
