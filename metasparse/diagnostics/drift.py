"""Drift of incoming text against a run's training reference: the measures, their thresholds, and what to do.

Measures, incoming vs the reference (the run's source test sentences): word and subword unigram JS
divergence, fertility log ratio, rise of the tokenizer's unknown-character rate, sentence length log
ratio, JS divergence of the predicted UPOS distribution, the controller's FLOPs shift and confidence
drop, and the rise of the model's token uncertainty. A measure drifts when it exceeds ``margin`` times
the largest value any single source cell shows against the same reference (computed once and kept in
``<run>/monitor_reference.json``) and its sampling noise (the ``noise_quantile`` of the measure between
bootstrap samples of the reference, as many sentences as the input, and the reference itself: how far a
sample of that size strays with no drift at all), or an explicit threshold.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from metasparse.config import MonitorConfig
from metasparse.errors import PathError
from metasparse.io import atomic_write

log = logging.getLogger(__name__)
MEASURES = (
    "word_js",
    "subword_js",
    "fertility_log_ratio",
    "unknown_char_rise",
    "length_log_ratio",
    "predicted_upos_js",
    "flops_shift",
    "confidence_drop",
    "uncertainty_rise",
)


SUMMARY_KEYS = (
    "sentences",
    "fertility",
    "unknown_char_rate",
    "mean_length",
    "flops_fraction",
    "confidence",
    "uncertainty",
)


def read_sentences(path: Path, lang: str, max_sentences: int) -> list[list[str]]:
    """Sentences of a UD folder or ``.conllu`` file (validated), or of a plain text file (a sentence a line)."""
    if not path.exists():
        raise PathError(f"input={path}: no such file or folder")
    if path.is_dir() or path.suffix == ".conllu":
        from metasparse.data.ud import load_folder

        return load_folder(path, lang=lang, domain="incoming")["words"][:max_sentences]
    from metasparse.inference.documents import read_document

    return read_document(path, key="input", max_words=None).sentences[:max_sentences]


def observe(model, controller, tokenizer, sentences: list[list[str]]) -> dict:
    """Profile ``sentences`` and run the controller's hard decisions on them (the one walker)."""
    from metasparse.diagnostics.sentence_stats import aggregate, sentence_stats

    return aggregate(sentence_stats(model, controller, tokenizer, sentences))


def compare(obs: dict, ref: dict) -> dict[str, float]:
    """The drift measures of an observation against the reference."""
    from metasparse.diagnostics.shift import js_divergence

    return {
        "word_js": js_divergence(obs["words"], ref["words"]),
        "subword_js": js_divergence(obs["subwords"], ref["subwords"]),
        "fertility_log_ratio": abs(math.log(obs["fertility"] / ref["fertility"])),
        "unknown_char_rise": obs["unknown_char_rate"] - ref["unknown_char_rate"],
        "length_log_ratio": abs(math.log(obs["mean_length"] / ref["mean_length"])),
        "predicted_upos_js": js_divergence(obs["predicted_upos"], ref["predicted_upos"]),
        "flops_shift": abs(obs["flops_fraction"] - ref["flops_fraction"]),
        "confidence_drop": ref["confidence"] - obs["confidence"],
        "uncertainty_rise": obs["uncertainty"] - ref["uncertainty"],
    }


def reference(loaded, cfg: MonitorConfig) -> tuple[dict, list, dict[str, float], dict]:
    """The run's reference observation, its per-sentence stats (for the noise floor) and, per measure, the
    largest value a source cell shows (cached)."""
    import numpy as np

    from metasparse.diagnostics.sentence_stats import aggregate, sentence_stats

    b, idx = loaded.bundle, loaded.bundle.index
    model, ctrl = loaded.system.backbone, loaded.system.controller
    words = b.dataset["words"]
    rng = np.random.default_rng(0)
    pool = sorted(int(r) for c in b.sources for r in idx.rows(c, "test"))
    pool = sorted(rng.choice(pool, min(len(pool), cfg.reference_sentences), replace=False).tolist())
    ref_stats = sentence_stats(model, ctrl, b.tokenizer, [words[i] for i in pool])
    ref = aggregate(ref_stats)
    cache = Path(cfg.run_dir) / "monitor_reference.json"
    key = {"reference_sentences": cfg.reference_sentences}
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    if cached.get("key") == key:
        return ref, ref_stats, cached["source_max"], cached["per_cell"]
    per_cell = {}
    for c in b.sources:
        rows = [int(r) for r in idx.rows(c, "test")][:100]
        if len(rows) >= 20:
            per_cell[c.name] = compare(observe(model, ctrl, b.tokenizer, [words[i] for i in rows]), ref)
    source_max = {m: max(v[m] for v in per_cell.values()) for m in MEASURES}
    atomic_write(cache, json.dumps({"key": key, "source_max": source_max, "per_cell": per_cell}, indent=2))
    return ref, ref_stats, source_max, per_cell


BOUNDED = {"word_js", "subword_js", "predicted_upos_js"}  # Jensen-Shannon divergences: at most 1


def auto_threshold(measure: str, source_max: float, margin: float) -> float:
    """``margin`` x the largest value a source cell shows; for a JS divergence at most halfway from there
    to its bound of 1, so the threshold stays reachable."""
    t = margin * source_max
    return min(t, source_max + (1.0 - source_max) / 2) if measure in BOUNDED else t


def recommend(drifted: list[str], cfg: MonitorConfig) -> str:
    if not drifted:
        return "no drift: the run's controllers can serve this input as they are."
    data = {"word_js", "subword_js", "fertility_log_ratio", "unknown_char_rise", "length_log_ratio"}
    if set(drifted) & data:
        return (
            f"the input's language or domain has shifted ({', '.join(drifted)}): annotate about 16 sentences in "
            f"UD format and adapt the controllers to them: python -m metasparse.adapt run_dir={cfg.run_dir} "
            f"target.path=<annotated folder> target.lang={cfg.lang} target.domain=<domain> steps=20 shots=16"
        )
    return (
        f"the data looks familiar but the controllers behave differently ({', '.join(drifted)}): sparsity "
        "effectiveness has drifted; re-meet the budget on this text, no labels needed: "
        f"python -m metasparse.recalibrate run_dir={cfg.run_dir} input={cfg.input}"
    )
