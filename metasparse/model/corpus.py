"""Encode dataset rows once and serve length-bucketed batches from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np

from metasparse.data.cells import cell_name
from metasparse.data.tag_lexicon import LEXICON_COLUMN
from metasparse.data.tokenizer import SubwordTokenizer
from metasparse.model.features import Batch, EncodedSentence, encode_sentence, pad
from metasparse.tasks import Task


@dataclass
class EncodedCorpus:
    """Encoded sentences and label ids for a set of dataset rows.

    Attributes:
        rows: dataset row of each item.
        items: encoded inputs.
        labels: task name -> label ids per item.
        langs: language of each item.
        cells: cell name of each item.
    """

    rows: np.ndarray
    items: list[EncodedSentence]
    labels: dict[str, list[list[int]]]
    langs: list[str]
    cells: list[str]

    @classmethod
    def build(
        cls,
        ds: datasets.Dataset,
        rows: Sequence[int],
        tokenizer: SubwordTokenizer,
        tasks: dict[str, Task],
        suffix_buckets: int,
    ) -> EncodedCorpus:
        sub = ds.select(list(rows))
        lexicon = tokenizer.lexicon
        columns = {"words", "lang", "domain", "treebank", *(t.column for t in tasks.values())}
        columns |= {LEXICON_COLUMN} if lexicon is not None else set()
        data = sub.select_columns(sorted(columns)).to_dict()
        # a sentence the lexicon counted reads it with each token left out of its own counts (jackknifing)
        gold = [
            data[LEXICON_COLUMN][i] if lexicon is not None and lexicon.counted(ds._fingerprint, int(r)) else None
            for i, r in enumerate(rows)
        ]
        items = [
            encode_sentence(w, tokenizer, suffix_buckets, lang=lang, gold_upos=g)
            for w, lang, g in zip(data["words"], data["lang"], gold, strict=True)
        ]
        labels = {name: [t.encode(seq) for seq in data[t.column]] for name, t in tasks.items()}
        cells = [cell_name(*c) for c in zip(data["lang"], data["domain"], data["treebank"], strict=True)]
        return cls(np.asarray(rows, dtype=np.int64), items, labels, data["lang"], cells)

    @classmethod
    def from_words(
        cls,
        words: Sequence[Sequence[str]],
        tags: dict[str, Sequence[Sequence[str]]],
        langs: Sequence[str],
        cells: Sequence[str],
        tokenizer: SubwordTokenizer,
        tasks: dict[str, Task],
        suffix_buckets: int,
    ) -> EncodedCorpus:
        """A corpus of sentences that are not dataset rows (stress inputs); ``tags`` is keyed by column."""
        items = [encode_sentence(w, tokenizer, suffix_buckets, lang=lang) for w, lang in zip(words, langs, strict=True)]
        labels = {name: [t.encode(seq) for seq in tags[t.column]] for name, t in tasks.items()}
        return cls(np.full(len(items), -1, dtype=np.int64), items, labels, list(langs), list(cells))

    @classmethod
    def unlabelled(
        cls, words: Sequence[Sequence[str]], tokenizer: SubwordTokenizer, suffix_buckets: int, lang: str = "x"
    ) -> EncodedCorpus:
        """Sentences without annotation (text to tag or to monitor): predicted, never scored."""
        items = [encode_sentence(w, tokenizer, suffix_buckets, lang=lang) for w in words]
        return cls(np.full(len(items), -1, dtype=np.int64), items, {}, [lang] * len(items), [lang] * len(items))

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> np.ndarray:
        return np.array([x.n_words for x in self.items])

    def batch(self, idx: Sequence[int]) -> Batch:
        return pad([self.items[i] for i in idx], {k: [v[i] for i in idx] for k, v in self.labels.items()})

    def batches(
        self, max_words: int, *, shuffle: bool, seed: int = 0, epoch: int = 0, weights: np.ndarray | None = None
    ) -> list[list[int]]:
        """Index lists of about ``max_words`` padded words each, grouped by similar length.

        Shuffled runs sort within random chunks (so batches differ between epochs but padding stays low)
        and shuffle the batch order; the result depends only on ``(seed, epoch)``. With ``weights`` (one per
        item, see :func:`language_weights`) a shuffled epoch draws as many items as there are, with
        replacement, in proportion to them, instead of taking each once.
        """
        n = len(self.items)
        lengths = self.lengths()
        if shuffle:
            rng = np.random.default_rng([seed, epoch])
            order = rng.permutation(n) if weights is None else rng.choice(n, size=n, p=weights / weights.sum())
            chunk = 50 * max(1, max_words // max(1, int(lengths.mean())))
            order = (
                np.concatenate(
                    [c[np.argsort(lengths[c], kind="stable")] for c in np.array_split(order, max(1, n // chunk))]
                )
                if n
                else order
            )
        else:
            order = np.argsort(lengths, kind="stable")
        out, cur, longest = [], [], 0
        for i in order.tolist():
            longest_if = max(longest, int(lengths[i]), 1)
            if cur and longest_if * (len(cur) + 1) > max_words:
                out.append(cur)
                cur, longest_if = [], max(int(lengths[i]), 1)
            cur.append(i)
            longest = longest_if
        if cur:
            out.append(cur)
        if shuffle:
            perm = np.random.default_rng([seed, epoch, 1]).permutation(len(out))
            out = [out[j] for j in perm]
        return out


class EncodedRows:
    """A cache of encoded dataset rows: every row an episode or an evaluation may use, encoded once and
    served by dataset row number.

    Args:
        corpus: the encoded rows; ``corpus.rows`` maps positions back to dataset rows.
    """

    def __init__(self, corpus: EncodedCorpus) -> None:
        self.corpus = corpus
        self.pos = {int(r): i for i, r in enumerate(corpus.rows)}

    @classmethod
    def build(cls, dataset, rows, tokenizer, tasks, suffix_buckets: int) -> EncodedRows:
        return cls(EncodedCorpus.build(dataset, list(rows), tokenizer, tasks, suffix_buckets))

    def batch(self, rows) -> object:
        return self.corpus.batch([self.pos[int(r)] for r in rows])

    def subset(self, rows) -> EncodedCorpus:
        """The sentences of ``rows`` as one corpus, all in a single group ``x`` (for one accuracy figure)."""
        idx = [self.pos[int(r)] for r in rows]
        labels = {t: [v[i] for i in idx] for t, v in self.corpus.labels.items()}
        return EncodedCorpus(
            np.asarray(rows), [self.corpus.items[i] for i in idx], labels, ["x"] * len(idx), ["x"] * len(idx)
        )


def language_weights(langs: Sequence[str], alpha: float) -> np.ndarray:
    """Per-item sampling weights that give each language a share proportional to ``count ** alpha``
    (``alpha`` = 1: uniform over items, every language its natural share)."""
    _, inverse, counts = np.unique(np.asarray(langs), return_inverse=True, return_counts=True)
    share = counts.astype(float) ** alpha
    return (share / share.sum() / counts)[inverse]
