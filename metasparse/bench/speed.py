"""Dense vs gated wall-clock at FLOPs targets, batch 1 and 32, on real UD sentence lengths.

    python -m metasparse.bench.speed +domain=legal
    python -m metasparse.bench.speed +domain=legal experiment=quick out=/tmp/speed.json
    python -m metasparse.bench.speed +domain=legal bench.unit=latency   # targets in predicted time

For each target a controller is trained on the frozen backbone (source train split) and its bias
calibrated so hard decisions meet the target on source dev sentences. Timing then alternates dense and
gated runs over the same sentences (source test split) in one process; the ratio of medians and the
interquartile range of per-round ratios are reported, with the controller's share of dense latency and
a profiled breakdown of where gated time goes.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.baselines.controllers import trained_controller
from metasparse.cli import check_paths, one_line_errors
from metasparse.config import SpeedBenchConfig
from metasparse.control.budget import budget_cost
from metasparse.control.controller import ControllerSpec, controlled
from metasparse.control.train import corpus_fraction
from metasparse.data.prepare import prepare
from metasparse.io import write_result
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import GatedEncoder
from metasparse.model.profiling import labels_enabled
from metasparse.runtime.controller_timing import TimedPolicy
from metasparse.runtime.latency import interleaved, quantiles
from metasparse.scoring import Dense, score
from metasparse.train.joint import backbone_with_controller
from metasparse.train.pretraining import _rows

log = logging.getLogger(__name__)
REGIONS = ("attention", "ffn", "controller", "grouping")
WARMUP = 2  # untimed rounds before the timed ones


def _batches(corpus: EncodedCorpus, batch: int, n: int, seed: int) -> list:
    rng = np.random.default_rng([seed, batch])
    if batch == 1:
        return [corpus.batch([int(i)]) for i in rng.choice(len(corpus), n, replace=False)]
    rounds = max(1, n // batch)
    return [corpus.batch([int(i) for i in rng.choice(len(corpus), batch, replace=False)]) for _ in range(rounds)]


def _breakdown(model: GatedEncoder, policy, batches) -> dict[str, float]:
    """Seconds per labelled region over one profiled pass of ``batches`` (CPU self+children time)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with labels_enabled(), torch.profiler.profile(activities=activities) as prof, torch.no_grad():
        for b in batches:
            model(b, policy)
    out = defaultdict(float)
    for evt in prof.key_averages():
        if evt.key in REGIONS:
            out[evt.key] += evt.cpu_time_total / 1e6
    return dict(out)


def _corpora(cfg: SpeedBenchConfig, bundle, suffix_buckets: int):
    """Controller training and calibration sentences (two thirds and a sample of the last third of the source
    dev split: the backbone has nearly memorised its train split) and the test sentences scored and timed."""
    dev_rows, test_rows = _rows(bundle, "dev"), _rows(bundle, "test")
    rng = np.random.default_rng(cfg.seed)
    pick = lambda rows, n: sorted(rng.choice(rows, min(n, len(rows)), replace=False).tolist())  # noqa: E731
    dev_all = rng.permutation(dev_rows).tolist()  # shuffled: row order groups sentences by treebank
    cut = len(dev_all) * 2 // 3

    def build(rows):
        return EncodedCorpus.build(bundle.dataset, rows, bundle.tokenizer, bundle.tasks, suffix_buckets)

    train = build(sorted(dev_all[:cut]))
    calib = build(pick(sorted(dev_all[cut:]), cfg.bench.calib_sentences))
    test = build(pick(test_rows, cfg.bench.test_sentences))
    return train, calib, test


def _joint_start(joint_ctrl, spec: ControllerSpec):
    """The joint phase's controller as every target's starting point when it has the bench's settings, as
    the main job's meta-training starts from it; else None (a fresh controller), said in the log.

    Why not from scratch: on the co-trained legal backbone a fresh controller saturated within the
    budget's warm-up (every sentence on the 0.75 pattern, margins of 5-31 logits, the budget's gradient
    gone): FLOPs 0.75 where the target was 0.5, 0.56 once calibration could reach it, and 0.72 of dense
    wall-clock at batch 1.
    """
    if joint_ctrl is None:
        return None
    if joint_ctrl.spec != spec:
        log.info("bench controllers start fresh: the joint phase's controller has other settings (%s)", joint_ctrl.spec)
        return None
    return joint_ctrl


def _timing(model: GatedEncoder, ctrl, batches: list, repeats: int) -> dict:
    """FLOPs of exactly the timed sentences, and dense vs gated wall-clock interleaved, with the controller's
    share of dense latency and a profiled breakdown."""
    outs = [controlled(model, ctrl)(batch) for batch in batches]
    used, dense = sum(sum(o.flops) for o in outs), sum(sum(o.dense_flops) for o in outs)
    timed = TimedPolicy(ctrl.policy(model))

    def run_dense() -> None:
        with torch.no_grad():
            for x in batches:
                model(x)

    def run_gated() -> None:
        with torch.no_grad():
            for x in batches:
                model(x, timed)

    times = interleaved({"dense": run_dense, "gated": run_gated}, repeats=repeats, warmup=WARMUP)
    ctrl_seconds = timed.seconds / (repeats + WARMUP)  # the accumulator also ran in the warm-up rounds
    ratios = [g / d for g, d in zip(times["gated"], times["dense"], strict=True)]
    qd, qg, qr = quantiles(times["dense"]), quantiles(times["gated"]), quantiles(ratios)
    sents = sum(x.size for x in batches)
    return {
        "flops_ratio": used / dense,
        "wall_ratio": qg["median"] / qd["median"],
        "wall_ratio_p25": qr["p25"],
        "wall_ratio_p75": qr["p75"],
        "controller_share": ctrl_seconds / qd["median"],
        "dense_ms_per_sentence": 1000 * qd["median"] / sents,
        "gated_ms_per_sentence": 1000 * qg["median"] / sents,
        "breakdown_s": _breakdown(model, ctrl.policy(model), batches),
        "sentences": sents,
        "repeats": repeats,
    }


def run(cfg: SpeedBenchConfig, out_dir: Path) -> dict:
    """Run the benchmark; writes ``speed.json`` and ``speed.md`` to ``out_dir`` (and ``cfg.out`` if set)."""
    check_paths({"out": (cfg.out, "output")})
    b = cfg.bench
    torch.set_num_threads(b.threads)
    bundle = prepare(cfg)
    model, _, folder, joint_ctrl = backbone_with_controller(cfg, bundle)
    model.eval()
    train, calib, test = _corpora(cfg, bundle, model.spec.suffix_buckets)
    dense_eval = score(Dense(model), test)
    tasks = sorted(bundle.tasks)
    per_round = {bs: b.sentences if bs == 1 else max(b.sentences, bs) * b.batched_rounds for bs in b.batches}
    timing_batches = {bs: _batches(test, bs, per_round[bs], cfg.seed) for bs in b.batches}
    rows, controllers = [], {}
    cost = None
    c = cfg.controller
    spec = ControllerSpec(
        hidden=c.hidden, uncertainty_task=b.uncertainty_task, token_router=c.token_router, placement=b.placement
    )
    if b.unit == "latency":
        cost = budget_cost("latency", model, folder, batch=b.cost_batch, threads=b.threads, controller=spec)
    init = _joint_start(joint_ctrl, spec)
    for target in b.targets:
        ctrl = trained_controller(
            model, train, calib, target, spec=spec, steps=b.controller_steps, seed=cfg.seed, cost=cost, init=init
        )
        controllers[target] = ctrl
        acc = score(controlled(model, ctrl), test)
        for bs, batches in timing_batches.items():
            row = {"batch": bs, "target": target, **_timing(model, ctrl, batches, b.repeats)}
            row["accuracy"] = {t: acc.by_lang.macro(t) for t in tasks}
            row["dense_accuracy"] = {t: dense_eval.by_lang.macro(t) for t in tasks}
            row["eval_flops_ratio"] = acc.flops_fraction
            if cost is not None:
                row["predicted_latency_ratio"] = corpus_fraction(model, ctrl, test, cost)
            rows.append(row)
            log.info(
                "batch %d target %.2f: flops %.3f wall %.3f (IQR %.3f-%.3f) controller %.1f%%",
                *(bs, target, row["flops_ratio"], row["wall_ratio"], row["wall_ratio_p25"], row["wall_ratio_p75"]),
                100 * row["controller_share"],
            )
    if b.int8 and 0.5 in controllers:
        rows += _int8_rows(model, controllers[0.5], timing_batches, b.repeats)
    result = {
        "rows": rows,
        "backbone": str(folder),
        "threads": b.threads,
        "model": cfg.model.name,
        "placement": b.placement,
        "uncertainty_task": b.uncertainty_task,
        "unit": b.unit,
        "cost_table": cost.source if cost is not None else None,
        "torch": torch.__version__,
    }
    write_result(out_dir, "speed", result, format_table(result), cfg.out)
    return result


def _int8_rows(model, ctrl, timing_batches, repeats) -> list[dict]:
    from metasparse.runtime.quantized import QuantizedSlices

    qmodel = QuantizedSlices.wrap(model)
    out = []
    for bs, batches in timing_batches.items():

        def run_dense(batches=batches):
            with torch.no_grad():
                for x in batches:
                    model(x)

        def run_q(batches=batches):
            with torch.no_grad():
                for x in batches:
                    qmodel(x, ctrl.policy(model))

        times = interleaved({"dense": run_dense, "gated_int8": run_q}, repeats=repeats, warmup=WARMUP)
        ratios = [g / d for g, d in zip(times["gated_int8"], times["dense"], strict=True)]
        qr = quantiles(ratios)
        out.append(
            {
                "batch": bs,
                "target": 0.5,
                "variant": "int8",
                "wall_ratio": statistics.median(times["gated_int8"]) / statistics.median(times["dense"]),
                "wall_ratio_p25": qr["p25"],
                "wall_ratio_p75": qr["p75"],
                "flops_ratio": float("nan"),
                "controller_share": float("nan"),
            }
        )
    return out


def format_table(result: dict) -> str:
    lines = [
        "| batch | target | variant | FLOPs ratio | predicted latency | wall ratio (IQR) | controller share "
        "| attention / ffn / controller / grouping (s) | acc (dense) |",
        "|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for r in result["rows"]:
        bd = r.get("breakdown_s", {})
        parts = " / ".join(f"{bd.get(k, 0.0):.3f}" for k in REGIONS) if bd else "-"
        acc = (
            ", ".join(f"{t} {100 * v:.1f} ({100 * r['dense_accuracy'][t]:.1f})" for t, v in r["accuracy"].items())
            if "accuracy" in r
            else "-"
        )
        lines.append(
            f"| {r['batch']} | {r['target']} | {r.get('variant', 'fp32')} | {r['flops_ratio']:.3f} | "
            + (f"{r['predicted_latency_ratio']:.3f} | " if "predicted_latency_ratio" in r else "- | ")
            + f"{r['wall_ratio']:.3f} ({r['wall_ratio_p25']:.3f}-{r['wall_ratio_p75']:.3f}) | "
            f"{100 * r['controller_share']:.1f}% | {parts} | {acc} |"
        )
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="bench_speed")
@one_line_errors
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
