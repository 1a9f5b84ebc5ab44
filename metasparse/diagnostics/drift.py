"""Drift of incoming text against a run's training reference: the measures, their thresholds, and what to do.

Measures, incoming vs the reference (the run's source test sentences): word and subword unigram JS
divergence, fertility log ratio, rise of the tokenizer's unknown-character rate, sentence length log
ratio, JS divergence of the predicted UPOS distribution, the controller's FLOPs shift and confidence
drop, and the rise of the model's token uncertainty. A measure drifts when it exceeds ``margin`` times
the largest value any single source cell shows against the same reference (computed once and kept in
``<run>/monitor_reference.json``), or an explicit threshold.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

import torch

from metasparse.config import MonitorConfig
from metasparse.errors import InputError, PathError, decode_utf8
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
    out = []
    for line in decode_utf8(path.read_bytes(), f"input={path}").splitlines():
        words = line.split()
        if words:
            out.append(words)
        if len(out) >= max_sentences:
            break
    if not out:
        raise InputError(f"input={path}: no sentence in it (plain text: one sentence a line)")
    return out


def observe(model, controller, tokenizer, sentences: list[list[str]]) -> dict:
    """Profile ``sentences`` and run the controller's hard decisions on them (the one walker)."""
    from metasparse.control.controller import controlled
    from metasparse.diagnostics.shift import profile_cell
    from metasparse.model.corpus import EncodedCorpus
    from metasparse.model.uncertainty import normalized_entropy
    from metasparse.scoring import score

    prof = profile_cell("x", "x", "x", "x", sentences, [], [], tokenizer)
    corpus = EncodedCorpus.unlabelled(sentences, tokenizer, model.spec.suffix_buckets)
    conf, unc, upos = [0.0] * len(corpus), [0.0] * len(corpus), Counter()

    def watch(batch, idx, out) -> None:
        top = torch.stack([p.max(-1).values for p in out.decision_probs], 1).mean(1)  # [B] mean over layers
        word_unc, tags = normalized_entropy(out.logits["upos"]), out.logits["upos"].argmax(-1)
        for b, (i, n) in enumerate(zip(idx, batch.lengths.tolist(), strict=True)):
            conf[i], unc[i] = float(top[b]), float(word_unc[b, :n].mean())
            upos.update(tags[b, :n].tolist())

    s = score(controlled(model, controller), corpus, max_words=4096, observe=watch)
    return {
        "words": prof.words,
        "subwords": prof.subwords,
        "fertility": prof.fertility,
        "unknown_char_rate": prof.unknown_char_rate,
        "mean_length": prof.mean_length,
        "predicted_upos": upos,
        "flops_fraction": s.flops_fraction,
        "confidence": sum(conf) / len(conf),
        "uncertainty": sum(unc) / len(unc),
        "sentences": len(sentences),
    }


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


def reference(loaded, cfg: MonitorConfig) -> tuple[dict, dict[str, float], dict]:
    """The run's reference observation and, per measure, the largest value a source cell shows (cached)."""
    import numpy as np

    b, idx = loaded.bundle, loaded.bundle.index
    model, ctrl = loaded.system.backbone, loaded.system.controller
    words = b.dataset["words"]
    rng = np.random.default_rng(0)
    pool = sorted(int(r) for c in b.sources for r in idx.rows(c, "test"))
    pool = sorted(rng.choice(pool, min(len(pool), cfg.reference_sentences), replace=False).tolist())
    ref = observe(model, ctrl, b.tokenizer, [words[i] for i in pool])
    cache = Path(cfg.run_dir) / "monitor_reference.json"
    key = {"reference_sentences": cfg.reference_sentences}
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    if cached.get("key") == key:
        return ref, cached["source_max"], cached["per_cell"]
    per_cell = {}
    for c in b.sources:
        rows = [int(r) for r in idx.rows(c, "test")][:100]
        if len(rows) >= 20:
            per_cell[c.name] = compare(observe(model, ctrl, b.tokenizer, [words[i] for i in rows]), ref)
    source_max = {m: max(v[m] for v in per_cell.values()) for m in MEASURES}
    atomic_write(cache, json.dumps({"key": key, "source_max": source_max, "per_cell": per_cell}, indent=2))
    return ref, source_max, per_cell


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
        "effectiveness has drifted; re-calibrate the budget on a labelled sample of this input with "
        f"python -m metasparse.adapt run_dir={cfg.run_dir} target.path=<sample> steps=0"
    )
