"""Each word's tag distributions counted in the source train split: of its form, and of each of its
suffixes: the ambiguity classes and suffix guesser of classical taggers (TnT, Brants 2000; UDPipe 1's
guesser), given to the encoder as input features.

Why: the backbone was within 1-2 UPOS points of UDPipe 1 on words it saw in training and 7-9 behind on
unseen ones, a third of Finnish and Turkish test words (README, "Where the backbone lost to UDPipe 1").
Learned lexical capacity (longer hashed affixes, a character encoder, first and last subwords) gained a
little there and lost DEPREL everywhere: it memorises. Counts are not learned, so they cannot overfit: an
unseen Turkish form ending in ``-ları`` reads the tags that train forms ending in ``-ları`` had.

Per word, one block per level: the form as counted in its language's train split, then its suffixes of 1
to :data:`MAX_SUFFIX` characters (shorter than the word) as counted over the language's rare train forms
(seen at most :data:`RARE_FORM` times; TnT: unseen words look like rare ones, not like frequent ones). A
block holds the tag distribution and ``log(1 + tokens) / 10``; a level with no tokens is all zeros. The
model weighs the levels itself: one back-off to the longest suffix with enough tokens (TnT's) gave 0.3
UPOS and 0.7 DEPREL less (README). A language the lexicon never counted reads the pooled tables.

With ``prefixes`` (``model.lexicon_prefixes``), the prefixes of 1 to n characters of rare forms follow as
levels of their own (UDPipe 1's guesser also reads prefixes). In the suffixing languages a prefix is
mostly a stem: an unseen inflected form of a lemma reads the tags of the lemma's other rare forms.

With ``shape`` (``model.lexicon_shape``), one more level: the tags of the language's rare-form tokens of the
same :func:`word_shape` (capitalised, all capitals, lower case, uncased, with digits; sentence-initial or
not). Case-folding hides what TnT keeps apart with separate suffix tables for capitalised and lower-case
words: an unseen lower-case English word is rarely a proper noun, a capitalised one inside a sentence often
is. Counted, like the other levels, not learned.

Training sentences were counted, so on them every form is "seen" while a third of test forms are not.
:meth:`TagLexicon.features` therefore takes the sentence's gold tags for counted sentences and leaves the
token itself out (jackknifing): a form seen once in training looks exactly like an unseen form. (Word
dropout could also hide the form block of the words it drops, as it hides their word-form row: that lost
0.2 UPOS and 0.5 DEPREL, README.)

    lex = TagLexicon.build(words, tags, langs, rows)   # the source train split
    lex.features(["Mahkemeleri"], "tr")                # [1, lex.width] float32
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# The dataset column the lexicon counts (UPOS: what unseen words are lost on; DEPREL follows from it).
LEXICON_COLUMN = "upos"
MAX_SUFFIX = 7
# A form seen at most this often counts towards the suffix tables (TnT's rare-word threshold).
RARE_FORM = 10
POOLED = "*"
LEVELS = MAX_SUFFIX + 1  # the form, then suffixes of 1..MAX_SUFFIX characters (then any prefix levels)
# Prefix levels a lexicon may add (``model.lexicon_prefixes``): prefixes of 1..n characters of rare forms.
MAX_PREFIX = MAX_SUFFIX
# The layout, part of the fingerprint (so of a backbone's cache key); the trailing 3 is the minimum count
# of the single back-off this layout replaced, kept so the backbones measured in the README keep their keys.
_LAYOUT = "stacked"
_HEADER = f"{_LAYOUT} {MAX_SUFFIX} {RARE_FORM} 3"


def word_shape(word: str, initial: bool) -> str:
    """The token's shape class: ``^`` (sentence-initial) or ``-``, then ``d`` (has a digit), ``n`` (no cased
    letter: uncased scripts, punctuation), ``U`` (two or more cased letters, all capitals), ``T`` (first
    cased letter a capital) or ``l`` (lower case)."""
    cased = [c for c in word if c.isupper() or c.islower()]
    if any(c.isdigit() for c in word):
        kind = "d"
    elif not cased:
        kind = "n"
    elif len(cased) > 1 and all(c.isupper() for c in cased):
        kind = "U"
    else:
        kind = "T" if cased[0].isupper() else "l"
    return ("^" if initial else "-") + kind


def _form_key(lang: str, form: str) -> str:
    return f"{lang}\x1ff\x1f{form}"


def _affix_key(lang: str, kind: str, affix: str) -> str:
    """A suffix (``kind`` "s"), prefix ("p") or shape ("c", :func:`word_shape`) entry's key."""
    return f"{lang}\x1f{kind}\x1f{affix}"


def _affixes(form: str, prefixes: int):
    """(level, kind, affix) of each counted affix of ``form`` (kind "s" or "p"): suffixes of 1..MAX_SUFFIX
    characters at levels 1..MAX_SUFFIX, then prefixes of 1..``prefixes`` at the levels after them; each
    shorter than the form."""
    for n in range(1, min(MAX_SUFFIX, len(form) - 1) + 1):
        yield n, "s", form[-n:]
    for n in range(1, min(prefixes, len(form) - 1) + 1):
        yield MAX_SUFFIX + n, "p", form[:n]


@dataclass(frozen=True)
class TagLexicon:
    """Tag counts per (language, case-folded form) and per (language, suffix of a rare form), each also
    pooled over languages.

    Attributes:
        tags: the tag inventory, in column order.
        keys: the counted keys (form and suffix entries), in row order of ``counts``.
        counts: ``[len(keys), len(tags)]`` tag counts.
        langs: the languages counted.
        rows: the dataset rows counted; :meth:`features` leaves a token out only for these.
        dataset: the counted dataset's fingerprint (``datasets.Dataset._fingerprint``): row numbers of any
            other dataset (a target file to adapt to) mean other sentences.
        prefixes: prefix levels after the suffix ones (prefixes of 1..``prefixes`` characters of rare
            forms, at most :data:`MAX_PREFIX`; 0: none, the layout of the backbones before them).
        shape: a last level with the tags of rare-form tokens of the token's :func:`word_shape` (False:
            none, the layout before it).
    """

    tags: tuple[str, ...]
    keys: tuple[str, ...]
    counts: np.ndarray
    langs: frozenset[str]
    rows: frozenset[int] = field(compare=False)
    dataset: str = field(default="", compare=False)
    prefixes: int = 0
    shape: bool = False
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _tag_ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.prefixes <= MAX_PREFIX:
            raise ValueError(f"model.lexicon_prefixes: expected 0..{MAX_PREFIX}, got {self.prefixes}")
        object.__setattr__(self, "_index", {k: i for i, k in enumerate(self.keys)})
        object.__setattr__(self, "_tag_ids", {t: i for i, t in enumerate(self.tags)})

    @classmethod
    def build(
        cls,
        words: Sequence[Sequence[str]],
        tags: Sequence[Sequence[str]],
        langs: Sequence[str],
        rows: Sequence[int],
        dataset: str = "",
        prefixes: int = 0,
        shape: bool = False,
    ) -> TagLexicon:
        """Count the sentences (``words[i]`` tagged ``tags[i]``, in language ``langs[i]``, row ``rows[i]``
        of the dataset with fingerprint ``dataset``), with ``prefixes`` prefix levels and a ``shape`` level."""
        inventory = tuple(sorted({t for seq in tags for t in seq}))
        tag_id = {t: i for i, t in enumerate(inventory)}
        forms: dict[str, np.ndarray] = {}
        for ws, ts, lang in zip(words, tags, langs, strict=True):
            for w, t in zip(ws, ts, strict=True):
                for key in (_form_key(lang, w.casefold()), _form_key(POOLED, w.casefold())):
                    forms.setdefault(key, np.zeros(len(inventory), np.int64))[tag_id[t]] += 1
        rare = {key for key, c in forms.items() if c.sum() <= RARE_FORM}  # what the affix and shape levels count
        affixes: dict[str, np.ndarray] = {}
        for key in rare:
            lang, _, form = key.split("\x1f", 2)
            for _, kind, affix in _affixes(form, prefixes):
                affixes.setdefault(_affix_key(lang, kind, affix), np.zeros(len(inventory), np.int64))[:] += forms[key]
        if shape:  # per token, not per form: the case the forms' keys fold away
            for ws, ts, lang in zip(words, tags, langs, strict=True):
                for i, (w, t) in enumerate(zip(ws, ts, strict=True)):
                    for scope in (lang, POOLED):
                        if _form_key(scope, w.casefold()) in rare:
                            key = _affix_key(scope, "c", word_shape(w, i == 0))
                            affixes.setdefault(key, np.zeros(len(inventory), np.int64))[tag_id[t]] += 1
        keys = sorted(forms) + sorted(affixes)
        table = np.stack([forms.get(k, affixes.get(k)) for k in keys]) if keys else np.zeros((0, len(inventory)))
        counted = frozenset(int(r) for r in rows)
        table = table.astype(np.int32)
        return cls(inventory, tuple(keys), table, frozenset(langs), counted, dataset, prefixes, shape)

    def counted(self, dataset: str, row: int) -> bool:
        """Whether row ``row`` of the dataset with fingerprint ``dataset`` is one of the counted sentences."""
        return dataset == self.dataset and row in self.rows

    @property
    def block(self) -> int:
        """Columns of one level: the tag distribution and the evidence."""
        return len(self.tags) + 1

    @property
    def width(self) -> int:
        """Feature columns: one block per level."""
        return (LEVELS + self.prefixes + self.shape) * self.block

    def fingerprint(self) -> str:
        """sha256 of the layout, keys and counts: what a backbone's lexicon inputs mean."""
        # without prefixes or shape: the old header, so the backbones before them keep their keys
        header = _HEADER + (f" p{self.prefixes}" if self.prefixes else "") + (" c" if self.shape else "")
        h = hashlib.sha256(f"{header}\n{'|'.join(self.tags)}\n".encode())
        h.update("\n".join(self.keys).encode())
        h.update(np.ascontiguousarray(self.counts, dtype=np.int32).tobytes())
        return h.hexdigest()[:16]

    def features(self, words: Sequence[str], lang: str | None, gold: Sequence[str] | None = None) -> np.ndarray:
        """``[len(words), width]`` float32 features of one sentence.

        Args:
            words: the sentence's words.
            lang: its language (None, or one the lexicon did not count: the pooled tables).
            gold: its gold tags when it is one of the counted sentences: each token is left out of the
                counts it reads.
        """
        lang = lang if lang in self.langs else POOLED
        K, out = len(self.tags), np.zeros((len(words), self.width), np.float32)
        for i, w in enumerate(words):
            form = w.casefold()
            left_out = self._tag_ids.get(gold[i], -1) if gold is not None else -1
            for level, c in self._levels(form, lang, left_out, word_shape(w, i == 0) if self.shape else None):
                total = float(c.sum())
                if total > 0:
                    at = level * self.block
                    out[i, at : at + K] = c / total
                    out[i, at + K] = np.log1p(total) / 10.0
        return out

    def _levels(self, form: str, lang: str, left_out: int, shape: str | None = None):
        """(level, counts) of each level that has an entry, with the token's tag ``left_out`` (>= 0) taken
        out of every count it was part of; the shape level last when ``shape`` is given."""
        key = _form_key(lang, form)
        row = self._index.get(key)
        if row is not None:
            yield 0, self._minus(row, left_out)
        # the token counted towards its affixes only if its form was rare
        affix_left_out = left_out if row is not None and self.counts[row].sum() <= RARE_FORM else -1
        for level, kind, affix in _affixes(form, self.prefixes):
            srow = self._index.get(_affix_key(lang, kind, affix))
            if srow is not None:
                yield level, self._minus(srow, affix_left_out)
        if shape is not None and (srow := self._index.get(_affix_key(lang, "c", shape))) is not None:
            yield LEVELS + self.prefixes, self._minus(srow, affix_left_out)

    def _minus(self, row: int, tag: int) -> np.ndarray:
        c = self.counts[row].astype(np.float32)
        if tag >= 0:
            c[tag] = max(c[tag] - 1.0, 0.0)
        return c
