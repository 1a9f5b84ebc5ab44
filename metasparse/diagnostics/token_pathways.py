"""Which words get compute: per-word FLOPs shares broken down by UPOS tag and language.

A linguist's first question of an adaptive model. Each word's share of the dense block FLOPs it got
(:func:`metasparse.model.flops.word_compute`: per-layer patterns, early exits and token routing)
and the layers it ran are collected per cell with its gold tag; this module turns them into the per-tag
table (``compute_by_tag.csv``), the language-by-tag matrix its figure draws, and the histogram of word
compute behind the ``token_js`` pathway distance. With a codebook of per-sentence widths only, every word
of a sentence gets its sentence's compute: the table then says which tags sit in sentences that get more.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

HIST_BINS = 20


@dataclass
class WordCompute:
    """Per-word observations of one cell, flattened over its sentences.

    Attributes:
        tags: gold tag id of each word (-1: unlabelled).
        share: share of the dense block FLOPs the word got.
        layers_run: layers the word ran before it exited (all of them when it never did).
        ffn: share of the layers whose FFN the word passed (capacity routing, exits, skips).
    """

    tags: list[int] = field(default_factory=list)
    share: list[float] = field(default_factory=list)
    layers_run: list[int] = field(default_factory=list)
    ffn: list[float] = field(default_factory=list)

    def add(self, tags, share, layers_run, ffn) -> None:
        self.tags.extend(int(t) for t in tags)
        self.share.extend(float(x) for x in share)
        self.layers_run.extend(int(x) for x in layers_run)
        self.ffn.extend(float(x) for x in ffn)

    def histogram(self, bins: int = HIST_BINS) -> np.ndarray:
        """Share of words per compute bin over [0, 1]: the cell's per-word compute distribution."""
        h, _ = np.histogram(np.clip(self.share, 0, 1), bins=bins, range=(0.0, 1.0))
        return h / max(1, h.sum())


def tag_compute_rows(langs: list[str], words: list[WordCompute], tag_names: tuple[str, ...]) -> list[dict]:
    """One row per language and tag: ``lang, tag, words, compute`` (mean share), ``layers_run`` (mean),
    ``ffn_routed`` (mean share of layers whose FFN the words passed) and ``relative`` (the tag's mean
    compute over its language's mean: > 1 means the tag gets more)."""
    by = defaultdict(lambda: ([], [], []))
    for lang, wc in zip(langs, words, strict=True):
        for t, s, n, f in zip(wc.tags, wc.share, wc.layers_run, wc.ffn, strict=True):
            if t >= 0:
                for column, v in zip(by[(lang, t)], (s, n, f), strict=True):
                    column.append(v)
    lang_mean = {}
    for lang in set(langs):
        vals = [s for (lg, _), (ss, _, _) in by.items() if lg == lang for s in ss]
        lang_mean[lang] = float(np.mean(vals)) if vals else float("nan")
    rows = []
    for (lang, t), (ss, ns, fs) in sorted(by.items()):
        mean = float(np.mean(ss))
        rel = mean / lang_mean[lang] if lang_mean[lang] > 0 else float("nan")
        rows.append(
            {
                "lang": lang,
                "tag": tag_names[t],
                "words": len(ss),
                "compute": mean,
                "layers_run": float(np.mean(ns)),
                "ffn_routed": float(np.mean(fs)),
                "relative": rel,
            }
        )
    return rows


def tag_matrix(rows: list[dict], min_words: int = 20) -> tuple[list[str], list[str], np.ndarray]:
    """(languages, tags, ``[languages, tags]`` relative compute), NaN where a language has fewer than
    ``min_words`` words of a tag (a mean over a handful of words is noise)."""
    langs = sorted({r["lang"] for r in rows})
    tags = sorted({r["tag"] for r in rows})
    m = np.full((len(langs), len(tags)), np.nan)
    for r in rows:
        if r["words"] >= min_words:
            m[langs.index(r["lang"]), tags.index(r["tag"])] = r["relative"]
    return langs, tags, m


def tag_spread(rows: list[dict], min_words: int = 20) -> list[dict]:
    """Per tag over languages: the mean relative compute and how many languages have the tag at least
    ``min_words`` times, sorted from the tag that gets the most compute."""
    langs, tags, m = tag_matrix(rows, min_words)
    out = []
    for j, tag in enumerate(tags):
        col = m[:, j][~np.isnan(m[:, j])]
        if len(col):
            out.append({"tag": tag, "relative": float(col.mean()), "languages": int(len(col))})
    return sorted(out, key=lambda r: -r["relative"])
