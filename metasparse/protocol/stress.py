"""Stress inputs: noisy text (character insertions, deletions and swaps) and long inputs (consecutive
sentences of a cell concatenated up to a subword length). Labels follow the words, so accuracy and
FLOPs can be compared with the clean sentences they came from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metasparse.data.cells import cell_name
from metasparse.model.corpus import EncodedCorpus

OPS = ("insert", "delete", "swap")


def add_noise(words: Sequence[str], rate: float, rng: np.random.Generator) -> list[str]:
    """Edit each character with probability ``rate`` by an insertion, deletion or swap with its neighbour.

    Inserted characters are drawn from the sentence's own characters (so the script does not change).
    A word is never emptied, and the number of words (and so the labels) stays the same.
    """
    alphabet = sorted({c for w in words for c in w}) or ["x"]
    out = []
    for w in words:
        chars, i = list(w), 0
        while i < len(chars):
            if rng.random() < rate:
                op = OPS[rng.integers(3)]
                if op == "insert":
                    chars.insert(i, alphabet[rng.integers(len(alphabet))])
                    i += 1
                elif op == "delete" and len(chars) > 1:
                    del chars[i]
                    continue
                elif op == "swap" and i + 1 < len(chars):
                    chars[i], chars[i + 1] = chars[i + 1], chars[i]
                    i += 1
            i += 1
        out.append("".join(chars))
    return out


def concatenate(
    sentences: Sequence[Sequence[str]], groups: Sequence[str], subword_counts: Sequence[int], max_subwords: int
) -> list[list[int]]:
    """Greedy runs of consecutive sentences of the same group whose subwords fit ``max_subwords``.

    Returns the sentence indices of each long input (a single sentence over the limit stays alone).
    """
    runs, cur, size = [], [], 0
    for i, n in enumerate(subword_counts):
        if cur and (groups[i] != groups[cur[-1]] or size + n > max_subwords):
            runs.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += n
    if cur:
        runs.append(cur)
    return runs


def stress_corpora(
    dataset,
    rows: Sequence[int],
    tokenizer,
    tasks: dict,
    suffix_buckets: int,
    *,
    noise_rates: Sequence[float] = (0.05, 0.10),
    max_subwords: int = 512,
    max_words: int = 256,
    seed: int = 0,
) -> dict[str, EncodedCorpus]:
    """``clean``, ``noise_<rate>`` and ``long`` corpora built from the same dataset rows.

    ``long`` inputs are also capped at ``max_words`` words (the model's position table).
    """
    sub = dataset.select(list(rows)).to_dict()
    columns = sorted({t.column for t in tasks.values()})
    cells = [cell_name(*c) for c in zip(sub["lang"], sub["domain"], sub["treebank"], strict=True)]
    words = sub["words"]
    out = {
        "clean": EncodedCorpus.from_words(
            words, {c: sub[c] for c in columns}, sub["lang"], cells, tokenizer, tasks, suffix_buckets
        )
    }
    for rate in noise_rates:
        rng = np.random.default_rng([seed, int(rate * 1000)])
        noisy = [add_noise(w, rate, rng) for w in words]
        out[f"noise_{rate:g}"] = EncodedCorpus.from_words(
            noisy, {c: sub[c] for c in columns}, sub["lang"], cells, tokenizer, tasks, suffix_buckets
        )
    counts = [len(x.input_ids) for x in out["clean"].items]
    runs = concatenate(words, cells, counts, max_subwords)
    runs = [r for r in runs if len(r) > 1]
    long_words, long_tags, langs, long_cells = [], {c: [] for c in columns}, [], []
    for r in runs:
        w = [x for i in r for x in words[i]][:max_words]
        long_words.append(w)
        for c in columns:
            long_tags[c].append([x for i in r for x in sub[c][i]][: len(w)])
        langs.append(sub["lang"][r[0]])
        long_cells.append(cells[r[0]])
    out["long"] = EncodedCorpus.from_words(long_words, long_tags, langs, long_cells, tokenizer, tasks, suffix_buckets)
    return out
