"""Measure the backbone's cost table on this machine and check its predictions against timed forwards.

    python -m metasparse.bench.costs +domain=legal
    python -m metasparse.bench.costs +domain=legal costs.remeasure=true costs.threads=1

The table (:mod:`metasparse.runtime.costs`) is stored beside the cached backbone, one file per machine
and thread count; a run with ``budget.unit=latency`` reads it (or measures it, if missing or stale). The
check times dense and ``costs.check_plans`` random static plans (one pattern per layer), plus random
per-input decisions at batch > 1 (grouped execution), interleaved in one process over real test
sentences, and compares each measured wall-clock ratio with the one the table predicts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.baselines.random_policy import random_policy
from metasparse.cli import check_paths, one_line_errors
from metasparse.config import CostBenchConfig
from metasparse.control.controller import Controller
from metasparse.data.prepare import prepare
from metasparse.io import write_result
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import GatedEncoder
from metasparse.model.flops import dense_flops, gated_flops
from metasparse.runtime.cost_store import load_or_measure
from metasparse.runtime.costs import CostTable
from metasparse.runtime.latency import interleaved, quantiles
from metasparse.train.joint import backbone_with_controller
from metasparse.train.pretraining import _rows

log = logging.getLogger(__name__)


def _timing_batches(corpus: EncodedCorpus, batch: int, sentences: int, seed: int) -> list:
    rng = np.random.default_rng([seed, batch])
    if batch == 1:
        return [corpus.batch([int(i)]) for i in rng.choice(len(corpus), sentences, replace=False)]
    return [corpus.batch([int(i) for i in rng.choice(len(corpus), batch, replace=False)]) for _ in range(2)]


def _random_levels(model: GatedEncoder, batches: list, seed: int) -> list[torch.Tensor]:
    """Per batch, ``[B, L]`` random pattern indices (per-input decisions), seeded."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, model.n_patterns, (b.size, len(model.blocks)), generator=g) for b in batches]


def _cases(model: GatedEncoder, batch: int, plans: int, seed: int) -> dict[str, list[list[int]] | str]:
    """Name -> a static plan (pattern per layer), or ``per-input`` for random per-input decisions."""
    full = model.codebook.index(model.full)
    g = np.random.default_rng([seed, 7])
    cases: dict = {"dense": [full] * len(model.blocks)}
    for _ in range(plans):
        plan = g.integers(0, model.n_patterns, len(model.blocks)).tolist()
        cases["plan " + "-".join(map(str, plan))] = plan
    if batch > 1:
        cases["per-input random"] = "per-input"
    return cases


def _predict(table: CostTable, batches: list, levels: list[torch.Tensor]) -> float:
    """Predicted ms of running ``batches`` with ``levels`` in a row (padded: every row costs the batch's
    length; each batch priced with the plan of the one before, as a stream)."""
    total, before = 0.0, None
    for b, lv in zip(batches, levels, strict=True):
        plan = lv.T.tolist()
        total += table.predict_ms(plan, int(b.word_mask.shape[1]), previous=before)
        before = plan
    return total


def _case_runs(model: GatedEncoder, batches: list, cases: dict, seed: int) -> tuple[dict, dict]:
    """Per case, its pattern indices per batch (``[B, L]`` each) and a function that runs every batch."""
    levels: dict[str, list[torch.Tensor]] = {}
    fns = {}
    for name, plan in cases.items():
        if plan == "per-input":
            levels[name] = _random_levels(model, batches, seed)

            def fn(lv=levels[name]):
                with torch.no_grad():
                    for b, x in zip(batches, lv, strict=True):
                        model(b, random_policy(model, x))

        else:
            levels[name] = [torch.tensor(plan).expand(b.size, -1) for b in batches]

            def fn(plan=plan):
                with torch.no_grad():
                    for b in batches:
                        model(b, plan=plan)

        fns[name] = fn
    return levels, fns


def _flops_ratio(model: GatedEncoder, batches: list, levels: list[torch.Tensor]) -> float:
    used = sum(
        gated_flops(model.spec, [model.codebook[int(v)] for v in row], int(n))
        for b, lv in zip(batches, levels, strict=True)
        for row, n in zip(lv, b.lengths.tolist(), strict=True)
    )
    return used / sum(dense_flops(model.spec, int(n)) for b in batches for n in b.lengths.tolist())


def check_predictions(model: GatedEncoder, table: CostTable, corpus: EncodedCorpus, cfg: CostBenchConfig) -> list:
    """Per batch size and case: FLOPs ratio, predicted and measured wall-clock ratio against dense."""
    o, rows = cfg.costs, []
    for bs in o.check_batches:
        batches = _timing_batches(corpus, bs, o.check_sentences, cfg.seed)
        cases = _cases(model, bs, o.check_plans, cfg.seed)
        levels, fns = _case_runs(model, batches, cases, cfg.seed)
        times = interleaved(fns, repeats=o.check_repeats, warmup=1)
        dense_pred = _predict(table, batches, levels["dense"])
        dense_med = quantiles(times["dense"])["median"]
        for name in cases:
            pred = _predict(table, batches, levels[name]) / dense_pred
            q = quantiles([t / d for t, d in zip(times[name], times["dense"], strict=True)])
            measured = quantiles(times[name])["median"] / dense_med
            flops = _flops_ratio(model, batches, levels[name])
            rows.append(
                {
                    "batch": bs,
                    "case": name,
                    "flops_ratio": flops,
                    "predicted_ratio": pred,
                    "measured_ratio": measured,
                    "measured_p25": q["p25"],
                    "measured_p75": q["p75"],
                    "error": pred / measured - 1,
                }
            )
            log.info("batch %d %s: predicted %.3f measured %.3f (FLOPs %.3f)", bs, name, pred, measured, flops)
    return rows


def run(cfg: CostBenchConfig, out_dir: Path) -> dict:
    """Measure (or load) the table and check it; writes ``costs.json`` and ``costs.md`` to ``out_dir``."""
    check_paths({"out": (cfg.out, "output")})
    o = cfg.costs
    torch.set_num_threads(o.threads)
    bundle = prepare(cfg)
    model, _, folder, _ = backbone_with_controller(cfg, bundle)
    model.eval()
    ctrl = Controller(model, cfg.controller)
    table, path, fresh = load_or_measure(
        model, folder, threads=o.threads, remeasure=o.remeasure, rounds=o.rounds, controller=ctrl
    )
    torch.set_num_threads(o.threads)
    rng = np.random.default_rng(cfg.seed)
    test_rows = _rows(bundle, "test")
    pick = sorted(rng.choice(test_rows, min(len(test_rows), 2000), replace=False).tolist())
    corpus = EncodedCorpus.build(bundle.dataset, pick, bundle.tokenizer, bundle.tasks, model.spec.suffix_buckets)
    rows = check_predictions(model, table, corpus, cfg)
    result = {
        "table": str(path),
        "measured_now": fresh,
        "machine": table.machine,
        "threads": table.threads,
        "spread": table.spread,
        "rows": rows,
        "max_abs_error": {bs: max(abs(r["error"]) for r in rows if r["batch"] == bs) for bs in o.check_batches},
        "table_summary": summary(table, model),
    }
    write_result(out_dir, "costs", result, format_report(result), cfg.out)
    return result


def summary(table: CostTable, model: GatedEncoder) -> list[dict]:
    """Per batch bucket and pattern, the mean over layers of the pattern's latency relative to the full
    pattern's at the middle length bucket: how much each pattern saves in time (compare its FLOPs share)."""
    arr, alone = table.priced()[0], np.asarray(table.layer_ms)  # [L, B, T, P]: calibrated, timed alone
    mid, full = len(table.lengths) // 2, table.full_index()
    out = []
    for bi, b in enumerate(table.batches):
        rel = (arr[:, bi, mid, :] / arr[:, bi, mid, full : full + 1]).mean(0)
        for p, pat in enumerate(model.codebook):
            flops = gated_flops(model.spec, [pat], table.lengths[mid]) - gated_flops(model.spec, [], table.lengths[mid])
            full_flops = gated_flops(model.spec, [model.full], table.lengths[mid])
            full_flops -= gated_flops(model.spec, [], table.lengths[mid])
            out.append(
                {
                    "batch": b,
                    "length": table.lengths[mid],
                    "pattern": table.codebook[p],
                    "latency_share": float(rel[p]),
                    "in_context_scale": float(arr[:, bi, mid, p].sum() / max(alone[:, bi, mid, p].sum(), 1e-9)),
                    "flops_share": flops / full_flops,
                }
            )
    return out


def format_report(result: dict) -> str:
    lines = [
        f"Cost table: `{result['table']}` ({'measured now' if result['measured_now'] else 'loaded'}; "
        f"{result['threads']} threads; median IQR of cells {100 * result['spread']:.1f}%)",
        "",
        "| batch | length | pattern (heads, groups, tokens, top-k) | FLOPs share | latency share | "
        "in whole forwards / alone |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for r in result["table_summary"]:
        lines.append(
            f"| {r['batch']} | {r['length']} | {tuple(r['pattern'])} | {r['flops_share']:.3f} | "
            f"{r['latency_share']:.3f} | {r['in_context_scale']:.2f} |"
        )
    lines += [
        "",
        "Predicted against measured wall-clock ratio (vs dense, interleaved, real test sentences):",
        "",
        "| batch | case | FLOPs ratio | predicted | measured (IQR) | error |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['batch']} | {r['case']} | {r['flops_ratio']:.3f} | {r['predicted_ratio']:.3f} | "
            f"{r['measured_ratio']:.3f} ({r['measured_p25']:.3f}-{r['measured_p75']:.3f}) | {100 * r['error']:+.1f}% |"
        )
    lines += [
        "",
        "Largest error: " + ", ".join(f"batch {b}: {100 * e:.1f}%" for b, e in result["max_abs_error"].items()),
    ]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="bench_costs")
@one_line_errors
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
