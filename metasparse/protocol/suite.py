"""The evaluation protocol as one function over a run: every method built at the budget, scored on the
source test cells and zero-shot on the targets, checked for batch consistency and stress drift, and timed
side by side with dense. ``metasparse.evaluate`` is the thin entry point over :func:`evaluate_run`."""

from __future__ import annotations

import logging
import time

import torch

from metasparse.baselines.build import FAMILIES, build_method, runnable_methods, source_splits
from metasparse.config import EvaluateConfig
from metasparse.control.controller import Controller
from metasparse.meta.load import load_run
from metasparse.model.corpus import EncodedCorpus
from metasparse.protocol.consistency import batch_consistency
from metasparse.protocol.peers import udpipe_result
from metasparse.protocol.speed import measure_speed
from metasparse.protocol.stress import stress_corpora
from metasparse.runtime.cost_store import load_or_measure
from metasparse.scoring import Method, score

log = logging.getLogger(__name__)


def _drift(clean: dict, other: dict) -> dict:
    return {
        "accuracy": {t: other["accuracy"][t] - clean["accuracy"][t] for t in clean["accuracy"]},
        "flops_fraction": other["flops_fraction"] - clean["flops_fraction"],
        "flops_per_token": other["flops_per_token"] - clean["flops_per_token"],
    }


def target_corpus(loaded, cfg: EvaluateConfig) -> EncodedCorpus | None:
    """The run's target cells' test sentences (``target_test_sentences`` per cell), or None without targets."""
    b, idx = loaded.bundle, loaded.bundle.index
    rows = []
    for c in b.targets:
        cell_rows = [int(r) for r in idx.rows(c, "test")]
        rows += cell_rows[: cfg.target_test_sentences] if cfg.target_test_sentences else cell_rows
    sb = loaded.system.backbone.spec.suffix_buckets
    return EncodedCorpus.build(b.dataset, sorted(rows), b.tokenizer, b.tasks, sb) if rows else None


def method_result(name: str, m: Method, splits, targets, stress: dict, cfg: EvaluateConfig) -> dict:
    """Scores on the source test cells and the targets, batch consistency and stress drift of one method."""
    src = score(m, splits.test).summary()
    st = {k: score(m, c).summary() for k, c in stress.items()}
    log.info("%s: flops %.3f, %s", name, src["flops_fraction"], {t: round(a, 4) for t, a in src["accuracy"].items()})
    return {
        "family": FAMILIES[name],
        "source_test": src,
        "targets_zero_shot": score(m, targets).summary() if targets is not None else None,
        "consistency": batch_consistency(m, splits.test, big=32, limit=cfg.consistency_sentences).__dict__,
        "stress": st,
        "stress_drift": {k: _drift(st["clean"], v) for k, v in st.items() if k != "clean"},
    }


def evaluate_run(cfg: EvaluateConfig) -> dict:
    """Run the protocol on ``cfg.run_dir``; returns what ``evaluate.json`` holds."""
    t0 = time.time()
    lat = cfg.latency
    torch.set_num_threads(lat.threads)
    loaded = load_run(cfg.run_dir)
    budget = cfg.budget if cfg.budget is not None else loaded.cfg.budget.target
    splits = source_splits(
        loaded, test_sentences=cfg.test_sentences, calib_sentences=cfg.calib_sentences, seed=cfg.seed
    )
    b, sb = loaded.bundle, loaded.system.backbone.spec.suffix_buckets
    targets = target_corpus(loaded, cfg)
    stress_rows = splits.test.rows[: cfg.stress_sentences].tolist()
    stress = stress_corpora(b.dataset, stress_rows, b.tokenizer, b.tasks, sb, seed=cfg.seed)
    methods = {}
    for name in runnable_methods(cfg.method_names(), loaded, named=cfg.methods):
        t1 = time.time()
        methods[name] = build_method(name, loaded, splits, budget, steps=cfg.baseline_steps, seed=cfg.seed)
        log.info("built %s in %.1fs", name, time.time() - t1)
    results = {name: method_result(name, m, splits, targets, stress, cfg) for name, m in methods.items()}
    peers = {}
    if "udpipe" in cfg.peer_names():
        peers["udpipe"] = udpipe_result(loaded, splits, targets, methods["dense"], cfg)
    sizes = tuple(lat.batch_sizes)
    table = None
    if lat.predict:
        model = loaded.system.backbone
        ctrl = Controller(model, loaded.cfg.controller)
        table, _, _ = load_or_measure(model, loaded.backbone_dir, threads=lat.threads, controller=ctrl)
        torch.set_num_threads(lat.threads)
    speed = measure_speed(
        methods,
        splits.test,
        batch_sizes=sizes,
        sentences=lat.sentences,
        repeats=lat.repeats,
        seed=cfg.seed,
        table=table,
    )
    return {
        "run_dir": str(cfg.run_dir),
        "budget": budget,
        "methods": results,
        "peers": peers,
        "speed": speed,
        "threads": lat.threads,
        "torch": torch.__version__,
        "minutes": (time.time() - t0) / 60,
    }


def _speed_lines(speed: list[dict]) -> list[str]:
    """The speed table, or the line saying it was not measured (``latency.batch_sizes=[]``)."""
    if not speed:  # accuracy only, e.g. while the machine is busy
        return ["", "Speed: not measured (latency.batch_sizes=[])."]
    out = [
        "",
        "Speed (all methods in the same interleaved rounds; wall ratio = median over median dense, IQR of "
        "per-round ratios):",
        "",
        "| batch | method | p50 ms | p90 ms | p99 ms | words/s | CPU ms per 1k words | wall ratio (IQR) "
        "| predicted by the cost table |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in speed:
        out.append(
            f"| {s['batch']} | {s['method']} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['p99_ms']:.2f} | "
            f"{s['words_per_s']:.0f} | {s['cpu_ms_per_1k_words']:.1f} | {s['wall_ratio']:.3f} "
            f"({s['wall_ratio_p25']:.3f}-{s['wall_ratio_p75']:.3f}) | "
            + ("-" if s.get("predicted_ratio") is None else f"{s['predicted_ratio']:.3f}")
            + " |"
        )
    return out


def format_report(r: dict) -> str:
    pct = lambda v: "-" if v is None or v != v else f"{100 * v:.1f}"  # noqa: E731
    lines = [
        f"# evaluate: budget {r['budget']} ({r['run_dir']})",
        "",
        "Source test cells (accuracy micro over words; macro = mean over cells; F1 = macro over labels), "
        "and the run's target cells zero-shot.",
        "",
        "| method | family | FLOPs | UPOS acc | UPOS macro-cells | UPOS F1 | DEPREL acc | DEPREL macro-cells "
        "| DEPREL F1 | target UPOS | target DEPREL | target FLOPs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in r["methods"].items():
        s, t = m["source_test"], m["targets_zero_shot"]
        g = lambda d, k, task: pct(d[k].get(task)) if d else "-"  # noqa: E731
        lines.append(
            f"| {name} | {m['family']} | {s['flops_fraction']:.3f} | {g(s, 'accuracy', 'upos')} | "
            f"{g(s, 'macro_cells', 'upos')} | {g(s, 'macro_f1', 'upos')} | {g(s, 'accuracy', 'deprel')} | "
            f"{g(s, 'macro_cells', 'deprel')} | {g(s, 'macro_f1', 'deprel')} | {g(t, 'accuracy', 'upos')} | "
            f"{g(t, 'accuracy', 'deprel')} | {t['flops_fraction'] if t else float('nan'):.3f} |"
        )
    lines += _speed_lines(r["speed"])
    lines += _peer_lines(r)
    lines += [
        "",
        "Batch-size consistency (batch 1 vs 32) and stress drift (accuracy points and FLOPs fraction vs clean):",
        "",
        "| method | same predictions | same decisions | noise 5% UPOS / FLOPs | noise 10% UPOS / FLOPs "
        "| long UPOS / FLOPs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in r["methods"].items():
        c, d = m["consistency"], m["stress_drift"]
        cell = lambda k, d=d: (  # noqa: E731
            f"{100 * d[k]['accuracy']['upos']:+.1f} / {d[k]['flops_fraction']:+.3f}" if k in d else "-"
        )
        same_dec = "-" if c["same_decisions"] is None else f"{100 * c['same_decisions']:.0f}%"
        lines.append(
            f"| {name} | {100 * c['same_predictions']:.0f}% | {same_dec} | {cell('noise_0.05')} | "
            f"{cell('noise_0.1')} | {cell('long')} |"
        )
    return "\n".join(lines) + "\n"


def _peer_lines(r: dict) -> list[str]:
    """The peers' table (UPOS only) and, per language, each peer next to dense on the same sentences."""
    if not r.get("peers"):
        return []
    pct = lambda v: "-" if v is None or v != v else f"{100 * v:.1f}"  # noqa: E731
    dense = r["methods"]["dense"]["source_test"]
    lines = [
        "",
        "Peers: other taggers trained on the run's source train split, on the same sentences (UPOS only; "
        "speed at batch 1 interleaved with dense, the peer on 1 thread):",
        "",
        "| peer | UPOS acc | UPOS macro-cells | UPOS macro-langs | target UPOS | words/s | dense words/s "
        "| wall ratio to dense (IQR) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in r["peers"].items():
        s, t, sp = p["source_test"], p["targets_zero_shot"], p["speed"]
        lines.append(
            f"| {name} | {pct(s['accuracy']['upos'])} | {pct(s['macro_cells']['upos'])} | "
            f"{pct(s['macro_langs']['upos'])} | {pct(t['accuracy']['upos']) if t else '-'} | "
            f"{sp['words_per_s']:.0f} | {sp['dense_words_per_s']:.0f} | {sp['wall_ratio']:.3f} "
            f"({sp['wall_ratio_p25']:.3f}-{sp['wall_ratio_p75']:.3f}) |"
        )
    names = list(r["peers"])
    lines += ["", "| language | dense UPOS | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for lang, acc in dense["by_lang"].items():
        others = " | ".join(pct(r["peers"][n]["source_test"]["by_lang"].get(lang, {}).get("upos")) for n in names)
        lines.append(f"| {lang} | {pct(acc.get('upos'))} | {others} |")
    return lines
