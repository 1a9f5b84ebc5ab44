"""Distribution shift between cells, measured on the data itself.

Per cell: word and subword unigram distributions, subword fertility (subwords per word), the tokenizer's
unknown-character rate (characters it can only spell as byte pieces), standardised type-token ratio,
mean sentence length, UPOS and DEPREL distributions, script. Between cells: Jensen-Shannon divergence
(base 2, so in [0, 1]) of the distributions and absolute differences (or log ratios) of the scalars.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

TTR_WINDOW = 100  # type-token ratio depends on sample size: average it over fixed windows of words


def js_divergence(p: Counter | dict, q: Counter | dict) -> float:
    """Jensen-Shannon divergence (base 2) between two count or probability tables."""
    keys = sorted(set(p) | set(q), key=str)
    a = np.array([p.get(k, 0) for k in keys], dtype=float)
    b = np.array([q.get(k, 0) for k in keys], dtype=float)
    return _js_arrays(a, b)


def _js_arrays(a: np.ndarray, b: np.ndarray) -> float:
    """JS divergence of two aligned count vectors (the union of their keys, in ``str`` order)."""
    if a.sum() == 0 or b.sum() == 0:
        raise ValueError("JS divergence of an empty distribution")
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())

    return max(0.0, 0.5 * kl(a) + 0.5 * kl(b))


class PairwiseJS:
    """:func:`js_divergence` between any two of many tables, with their keys ranked once.

    Each table is kept as its keys' ranks in one ``str``-sorted vocabulary and their counts; a pair's
    vectors are then built over the union of ranks, the same keys in the same order as
    :func:`js_divergence` builds them, so the values are the same, without sorting a union per pair.
    """

    def __init__(self, tables: Sequence[Counter | dict]) -> None:
        vocab = sorted(set().union(*tables), key=str)
        rank = {k: i for i, k in enumerate(vocab)}
        self.ranks, self.counts = [], []
        for t in tables:
            r = np.array(sorted(rank[k] for k in t), dtype=np.int64)
            self.ranks.append(r)
            self.counts.append(np.array([t[vocab[i]] for i in r], dtype=float))

    def __call__(self, i: int, j: int) -> float:
        keys = np.union1d(self.ranks[i], self.ranks[j])
        a, b = np.zeros(len(keys)), np.zeros(len(keys))
        a[np.searchsorted(keys, self.ranks[i])] = self.counts[i]
        b[np.searchsorted(keys, self.ranks[j])] = self.counts[j]
        return _js_arrays(a, b)


def standardised_ttr(words: Sequence[str], window: int = TTR_WINDOW) -> float:
    """Mean type-token ratio over consecutive windows of ``window`` words (plain TTR if fewer words)."""
    if len(words) < window:
        return len(set(words)) / len(words) if words else float("nan")
    chunks = [words[i : i + window] for i in range(0, len(words) - window + 1, window)]
    return float(np.mean([len(set(c)) / window for c in chunks]))


@dataclass
class CellProfile:
    """What one cell's sentences look like.

    Attributes:
        name, lang, domain, script: the cell.
        words, subwords, upos, deprel: unigram counts (word forms casefolded).
        sentences, tokens, subword_tokens, chars, byte_chars: sizes.
        ttr: standardised type-token ratio.
    """

    name: str
    lang: str
    domain: str
    script: str
    words: Counter = field(repr=False)
    subwords: Counter = field(repr=False)
    upos: Counter = field(repr=False)
    deprel: Counter = field(repr=False)
    sentences: int = 0
    tokens: int = 0
    subword_tokens: int = 0
    chars: int = 0
    byte_chars: int = 0
    ttr: float = float("nan")

    @property
    def fertility(self) -> float:
        return self.subword_tokens / self.tokens if self.tokens else float("nan")

    @property
    def unknown_char_rate(self) -> float:
        return self.byte_chars / self.chars if self.chars else float("nan")

    @property
    def mean_length(self) -> float:
        return self.tokens / self.sentences if self.sentences else float("nan")

    def scalars(self) -> dict[str, float | str]:
        return {
            "cell": self.name,
            "lang": self.lang,
            "domain": self.domain,
            "script": self.script,
            "sentences": self.sentences,
            "words": self.tokens,
            "fertility": self.fertility,
            "unknown_char_rate": self.unknown_char_rate,
            "ttr": self.ttr,
            "mean_length": self.mean_length,
        }


def byte_piece_chars(tokenizer, word: str) -> int:
    """Characters of ``word`` the tokenizer can only spell with byte-fallback pieces (``<0x..>``); with a
    pretrained word-piece tokenizer, which has no byte pieces, a word it maps to its unknown piece counts
    whole (which of its characters was unknown is not recoverable)."""
    return _byte_chars(word, tokenizer.subwords(word), getattr(tokenizer, "unk_piece", None))


def byte_piece_counts(tokenizer, words: Sequence[str]) -> dict[str, int]:
    """:func:`byte_piece_chars` of each distinct form of ``words``, the forms tokenized in one batch."""
    forms = list(dict.fromkeys(words))
    unk = getattr(tokenizer, "unk_piece", None)
    return {w: _byte_chars(w, p, unk) for w, p in zip(forms, tokenizer.subwords_batch(forms), strict=True)}


def _byte_chars(word: str, pieces: list[str], unk: str | None) -> int:
    if unk is not None and unk in pieces:
        return len(word)
    n_bytes = sum(1 for p in pieces if p.startswith("<0x") and p.endswith(">"))
    if not n_bytes:
        return 0
    # Each such character is 1-4 UTF-8 bytes: count characters whose bytes all went to byte pieces.
    known = "".join(p for p in pieces if not (p.startswith("<0x") and p.endswith(">"))).replace("\u2581", "")
    return max(0, len(word) - len(known))


def profile_cell(
    name: str,
    lang: str,
    domain: str,
    script: str,
    sentences: Sequence[Sequence[str]],
    upos: Sequence[Sequence[str]],
    deprel: Sequence[Sequence[str]],
    tokenizer,
) -> CellProfile:
    """Profile one cell's sentences (words, gold UPOS and DEPREL) with the run's tokenizer."""
    words = [w.casefold() for s in sentences for w in s]
    sub, chars, byte_chars, n_sub = Counter(), 0, 0, 0
    spelled = byte_piece_counts(tokenizer, [w for s in sentences for w in s])  # each form once (Zipf)
    for s in sentences:
        enc = tokenizer.encode_words(list(s))
        sub.update(enc.input_ids)
        n_sub += len(enc.input_ids)
        for w in s:
            chars += len(w)
            byte_chars += spelled[w]
    return CellProfile(
        name,
        lang,
        domain,
        script,
        Counter(words),
        sub,
        Counter(t for s in upos for t in s),
        Counter(t for s in deprel for t in s),
        len(sentences),
        len(words),
        n_sub,
        chars,
        byte_chars,
        standardised_ttr(words),
    )


SHIFT_MEASURES = (
    "word_js",
    "subword_js",
    "upos_js",
    "deprel_js",
    "fertility_log_ratio",
    "unknown_char_diff",
    "ttr_diff",
    "length_diff",
    "script_differs",
)


def shift_matrices(profiles: Sequence[CellProfile]) -> dict[str, np.ndarray]:
    """Pairwise shift between cells, one symmetric matrix per measure (zero diagonal)."""
    n = len(profiles)
    out = {m: np.zeros((n, n)) for m in SHIFT_MEASURES}
    js = {f: PairwiseJS([getattr(p, f) for p in profiles]) for f in ("words", "subwords", "upos", "deprel")}
    for i in range(n):
        for j in range(i + 1, n):
            a, b = profiles[i], profiles[j]
            vals = {
                "word_js": js["words"](i, j),
                "subword_js": js["subwords"](i, j),
                "upos_js": js["upos"](i, j),
                "deprel_js": js["deprel"](i, j),
                "fertility_log_ratio": abs(math.log(a.fertility / b.fertility)),
                "unknown_char_diff": abs(a.unknown_char_rate - b.unknown_char_rate),
                "ttr_diff": abs(a.ttr - b.ttr),
                "length_diff": abs(a.mean_length - b.mean_length),
                "script_differs": float(a.script != b.script),
            }
            for m, v in vals.items():
                out[m][i, j] = out[m][j, i] = v
    return out


def design_matrices(profiles: Sequence[CellProfile]) -> dict[str, np.ndarray]:
    """``language_differs`` and ``domain_differs`` (0/1): the factors a partial Mantel test controls for."""
    lang = np.array([p.lang for p in profiles])
    dom = np.array([p.domain for p in profiles])
    return {
        "language_differs": (lang[:, None] != lang[None, :]).astype(float),
        "domain_differs": (dom[:, None] != dom[None, :]).astype(float),
    }
