"""Per-token early exit on a backbone: accuracy, FLOPs and wall-clock against dense, per threshold.

    python -m metasparse.bench.exits +domain=legal
    python -m metasparse.bench.exits +domain=legal joint.steps=300 'exits.thresholds=[0.02,0.05,0.1]'
    python -m metasparse.bench.exits +domain=legal exits.criterion=all   # every task head must be sure

Every layer but the last runs in full and lets tokens go whose entropy (normalised; of the UPOS head, or
with ``exits.criterion=all`` the largest over every task head) is at most the threshold (TOKEE-style
per-token exits, with a fixed criterion instead of learned exit heads); the exited tokens keep their state
and still serve as keys and values. Timing alternates dense and every
threshold in one process over real test sentences at batch 1 and 32 (packed execution).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.cli import one_line_errors
from metasparse.config import ExitBenchConfig
from metasparse.data.prepare import prepare
from metasparse.io import write_result
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import GatedEncoder
from metasparse.model.patterns import PatternSpec
from metasparse.protocol.speed import timing_batches
from metasparse.runtime.latency import interleaved, quantiles
from metasparse.scoring import Dense, PlanMethod, score
from metasparse.train.joint import backbone_with_controller
from metasparse.train.pretraining import _rows

log = logging.getLogger(__name__)


def with_exit_patterns(model: GatedEncoder, thresholds: list[float], criterion: str | None = None) -> GatedEncoder:
    """The same weights with one extra codebook entry per threshold (every unit on, exit after the layer),
    exits decided by ``criterion`` (:data:`metasparse.model.spec.EXIT_CRITERIA`; None: the backbone's)."""
    extra = [PatternSpec(1.0, 1.0, exit=t) for t in thresholds]
    spec = dataclasses.replace(
        model.spec,
        codebook=[*model.spec.codebook, *extra],
        exit_criterion=criterion or model.spec.exit_criterion,
    )
    out = GatedEncoder(spec)
    out.load_state_dict(model.state_dict())
    return out.eval()


@torch.no_grad()
def exit_shares(model: GatedEncoder, plan: list[int], corpus: EncodedCorpus, max_words: int = 4096) -> list[float]:
    """Share of all words that have exited after each layer (cumulative) under ``plan``."""
    L, words = len(model.blocks), 0
    gone = np.zeros(L)
    for idx in corpus.batches(max_words, shuffle=False):
        batch = corpus.batch(idx)
        out = model(batch, plan=plan)
        words += int(batch.word_mask.sum())
        if out.exited_at is not None:
            for i in range(L):
                gone[i] += int(((out.exited_at <= i) & batch.word_mask).sum())
    return (gone / max(words, 1)).tolist()


def run(cfg: ExitBenchConfig, out_dir: Path) -> dict:
    """Score and time every threshold; writes ``exits.json`` and ``exits.md``."""
    o = cfg.exits
    torch.set_num_threads(o.threads)
    bundle = prepare(cfg)
    backbone, _, folder, _ = backbone_with_controller(cfg, bundle)
    model = with_exit_patterns(backbone, list(o.thresholds), o.criterion)
    rng = np.random.default_rng(cfg.seed)
    rows = _rows(bundle, "test")
    pick = sorted(rng.choice(rows, min(o.test_sentences, len(rows)), replace=False).tolist())
    test = EncodedCorpus.build(bundle.dataset, pick, bundle.tokenizer, bundle.tasks, model.spec.suffix_buckets)
    L, base = len(model.blocks), len(backbone.codebook)
    full = model.codebook.index(model.full)
    methods = {"dense": Dense(model)}
    for i, t in enumerate(o.thresholds):
        methods[f"exit {t}"] = PlanMethod(model, [base + i] * (L - 1) + [full], f"exit {t}")
    results = {}
    for name, m in methods.items():
        s = score(m, test)
        results[name] = {**s.macro_langs, "flops": s.flops_fraction}
        if isinstance(m, PlanMethod):
            results[name]["exited_by_layer"] = exit_shares(model, m.plan, test)
        log.info("%s: %s", name, results[name])
    for bs in o.batch_sizes:
        batches = timing_batches(test, bs, max(o.sentences, bs * 2), cfg.seed)

        def fn(m, batches=batches):
            def go():
                with torch.no_grad():
                    for b in batches:
                        m.forward(b)

            return go

        times = interleaved({n: fn(m) for n, m in methods.items()}, repeats=o.repeats, warmup=2)
        for name in methods:
            ratios = [a / b for a, b in zip(times[name], times["dense"], strict=True)]
            q = quantiles(ratios)
            results[name][f"wall_{bs}"] = quantiles(times[name])["median"] / quantiles(times["dense"])["median"]
            results[name][f"wall_{bs}_iqr"] = [q["p25"], q["p75"]]
    result = {
        "backbone": str(folder),
        "thresholds": list(o.thresholds),
        "criterion": model.spec.exit_criterion,
        "sentences": len(test),
        "rows": results,
    }
    write_result(out_dir, "exits", result, format_report(result, list(o.batch_sizes)), cfg.out)
    return result


def format_report(r: dict, batch_sizes: list[int]) -> str:
    tasks = [k for k in next(iter(r["rows"].values())) if k in ("upos", "deprel")]
    head = "| method | FLOPs | " + " | ".join(tasks) + " | " + " | ".join(f"wall batch {b} (IQR)" for b in batch_sizes)
    head += " | words exited after each layer"
    lines = [
        f"Per-token early exit ({r['sentences']} source test sentences, macro over languages; exit criterion "
        f"{r['criterion']}; wall = median over median dense, interleaved)",
        "",
        head + " |",
        "|---|---:|" + "---:|" * (len(tasks) + len(batch_sizes)) + "---|",
    ]
    for name, v in r["rows"].items():
        walls = " | ".join(
            f"{v[f'wall_{b}']:.3f} ({v[f'wall_{b}_iqr'][0]:.3f}-{v[f'wall_{b}_iqr'][1]:.3f})" for b in batch_sizes
        )
        accs = " | ".join(f"{100 * v[t]:.1f}" for t in tasks)
        gone = ", ".join(f"{100 * g:.0f}%" for g in v.get("exited_by_layer", [])[:-1]) or "-"
        lines.append(f"| {name} | {v['flops']:.3f} | {accs} | {walls} | {gone} |")
    return "\n".join(lines) + "\n"


@hydra.main(version_base="1.3", config_path="../../conf", config_name="bench_exits")
@one_line_errors
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
