"""Drift monitoring: compare incoming text with a run's training reference and say what to do.

    python -m metasparse.monitor run_dir=<run> input=<UD folder | .conllu | plain text file>

Measures, incoming vs the reference (the run's source test sentences): word and subword unigram JS
divergence, fertility log ratio, rise of the tokenizer's unknown-character rate, sentence length log
ratio, JS divergence of the predicted UPOS distribution, the controller's FLOPs shift and confidence
drop, and the rise of the model's token uncertainty. A measure drifts when it exceeds ``margin`` times
the largest value any single source cell shows against the same reference (computed once and kept in
``<run>/monitor_reference.json``), or an explicit threshold. Writes ``monitor.json`` with ``drift``
(true when any measure drifts), the measures, thresholds and a recommendation.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.config import MonitorConfig
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
        raise FileNotFoundError(f"input={path}: no such file or folder")
    if path.is_dir() or path.suffix == ".conllu":
        from metasparse.data.ud import load_folder

        return load_folder(path, lang=lang, domain="incoming")["words"][:max_sentences]
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            words = line.split()
            if words:
                out.append(words)
            if len(out) >= max_sentences:
                break
    if not out:
        raise ValueError(f"input={path}: no sentence in it (plain text: one sentence a line)")
    return out


def observe(model, controller, tokenizer, sentences: list[list[str]]) -> dict:
    """Profile ``sentences`` and run the controller's hard decisions on them."""
    import torch

    from metasparse.diagnostics.shift import profile_cell
    from metasparse.model.features import encode_sentence, pad
    from metasparse.model.flops import dense_flops, gated_flops

    prof = profile_cell("x", "x", "x", "x", sentences, [], [], tokenizer)
    items = [encode_sentence(s, tokenizer, model.spec.suffix_buckets) for s in sentences]
    order = sorted(range(len(items)), key=lambda i: items[i].n_words)
    used = dense = 0.0
    conf, unc, upos = [], [], Counter()
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), 64):
            batch = pad([items[i] for i in order[start : start + 64]])
            probs: list = []
            out = model(batch, controller.policy(model, record=probs))
            conf += [float(p.max(-1).values.mean()) for p in probs]
            lp = torch.log_softmax(out.logits["upos"], -1)
            ent = -(lp.exp() * lp).sum(-1) / math.log(lp.shape[-1])
            for b, n in enumerate(batch.lengths.tolist()):
                pats = [model.codebook[int(d.levels[b])] for d in out.decisions]
                used += gated_flops(model.spec, pats, n, controller.flops_per_layer(model, n))
                dense += dense_flops(model.spec, n)
                unc.append(float(ent[b, :n].mean()))
                upos.update(lp[b, :n].argmax(-1).tolist())
    return {
        "words": prof.words,
        "subwords": prof.subwords,
        "fertility": prof.fertility,
        "unknown_char_rate": prof.unknown_char_rate,
        "mean_length": prof.mean_length,
        "predicted_upos": upos,
        "flops_fraction": used / dense,
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


def run(cfg: MonitorConfig, out_dir: Path) -> dict:
    """Compare ``cfg.input`` with the run's reference; writes and returns ``monitor.json``'s content."""
    from metasparse.meta.load import load_run

    loaded = load_run(cfg.run_dir)
    bad = sorted(set(cfg.thresholds) - set(MEASURES))
    if bad:
        raise ValueError(f"thresholds has unknown measure(s) {', '.join(bad)}; allowed: {', '.join(MEASURES)}")
    sentences = read_sentences(Path(cfg.input), cfg.lang, cfg.max_sentences)
    ref, source_max, _ = reference(loaded, cfg)
    obs = observe(loaded.system.backbone, loaded.system.controller, loaded.bundle.tokenizer, sentences)
    measures = compare(obs, ref)
    thresholds = {m: cfg.thresholds.get(m, auto_threshold(m, source_max[m], cfg.margin)) for m in MEASURES}
    drifted = [m for m in MEASURES if measures[m] > thresholds[m]]
    result = {
        "drift": bool(drifted),
        "drifted": drifted,
        "measures": measures,
        "thresholds": thresholds,
        "threshold_source": {
            m: "explicit" if m in cfg.thresholds else f"{cfg.margin} x max over source cells (JS capped below 1)"
            for m in MEASURES
        },
        "incoming": {k: obs[k] for k in SUMMARY_KEYS},
        "reference": {k: ref[k] for k in SUMMARY_KEYS},
        "recommendation": recommend(drifted, cfg),
        "input": str(cfg.input),
        "run_dir": str(cfg.run_dir),
    }
    out = Path(cfg.out) if cfg.out else out_dir / "monitor.json"
    atomic_write(out, json.dumps(result, indent=2))
    lines = [f"{'measure':<22} {'value':>9} {'threshold':>9}"]
    lines += [f"{m:<22} {measures[m]:9.4f} {thresholds[m]:9.4f}{'  DRIFT' if m in drifted else ''}" for m in MEASURES]
    print("\n".join(lines) + f"\n\ndrift: {result['drift']}\n{result['recommendation']}\n-> {out}")
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="monitor")
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
