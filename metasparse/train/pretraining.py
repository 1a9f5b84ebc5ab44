"""Sparsity-aware pretraining of the gated backbone, cached by a hash of its config and data.

Every step trains the batch dense and, with ``sparse_weight > 0``, once more under a random pattern
per layer drawn from the codebook (a two-sample "sandwich"). Because narrower widths are prefixes,
the first heads and channels are in every sampled sub-network and become the important ones: a
narrower width is a zero-copy slice of weights that were trained to work alone.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from metasparse.checkpoint import load_checkpoint, optimizer_state, restore_optimizer_state, save_checkpoint
from metasparse.config import PretrainConfig
from metasparse.data.fetch import cache_dir
from metasparse.data.prepare import DataBundle
from metasparse.distributed import is_main, rank_and_size
from metasparse.io import atomic_write
from metasparse.model.corpus import EncodedCorpus, language_weights
from metasparse.model.encoder import EncoderSpec, GatedEncoder
from metasparse.model.pretrained import convert_pretrained
from metasparse.scoring import Dense, PlanMethod, score
from metasparse.scoring.lookup import LookupTagger
from metasparse.scoring.metrics import AccuracyTable
from metasparse.tracking import log_scalars
from metasparse.train.backbone_cache import backbone_key, encoder_spec, load_backbone, spec_to_json
from metasparse.train.pretrain_step import build_optimizer, optimise, unknown_probabilities

log = logging.getLogger(__name__)

# Sentences a pretrained checkpoint's unit importance is measured on: one forward per head and group of
# every layer (120 for MiniLM), so the sample is kept to seconds on a CPU.
IMPORTANCE_SENTENCES = 24


def _lookup_table(bundle: DataBundle, split_rows, task: str, fit_rows) -> AccuracyTable:
    ds = bundle.dataset
    col = bundle.tasks[task].column
    fit = ds.select(fit_rows).select_columns(["lang", "words", col]).to_dict()
    tagger = LookupTagger().fit(fit["lang"], fit["words"], fit[col])
    ev = ds.select(split_rows).select_columns(["lang", "words", col]).to_dict()
    table = AccuracyTable()
    for lang, words, gold in zip(ev["lang"], ev["words"], ev[col], strict=True):
        pred = tagger.predict(lang, words)
        table.add(lang, task, sum(p == g for p, g in zip(pred, gold, strict=True)), len(gold))
    return table


def _rows(bundle: DataBundle, split: str) -> list[int]:
    return sorted(int(r) for c in bundle.sources for r in bundle.index.rows(c, split))


def pretrain(cfg: PretrainConfig, bundle: DataBundle, *, force: bool = False) -> tuple[GatedEncoder, dict, Path]:
    """Train the backbone, or load it from the cache when the same config and data were trained before.

    Resumes from the last periodic checkpoint of an interrupted run with the same key. A backbone that
    ``pretrain.max_minutes`` stopped early is cached and used (with a warning on every use) and finished, from
    the checkpoint kept at its last step, by a later run that allows more minutes.

    Returns:
        The model (eval mode), its metrics (dense accuracy per language vs the lookup baseline, accuracy
        under each static pattern) and the checkpoint folder.
    """
    key = backbone_key(cfg, bundle)
    folder = cache_dir() / "backbones" / key
    partial = folder.with_name(f"{key}.partial")
    if (folder / "state.json").exists() and not force:
        model, state = load_backbone(folder)
        if not _finishes_truncated(cfg, state["metrics"], folder, partial):
            log.info("backbone cache hit: %s", folder)
            return model, state["metrics"], folder
    if cfg.pretrain.threads:
        torch.set_num_threads(cfg.pretrain.threads)
    torch.manual_seed(cfg.seed)
    spec = encoder_spec(cfg.model, bundle)
    model = GatedEncoder(spec)
    importance = _convert(cfg, bundle, model) if spec.pretrained else None
    n_params = sum(x.numel() for x in model.parameters()) / 1e6
    log.info("pretraining backbone %s (%.1fM parameters) -> %s", cfg.model.name, n_params, folder)
    progress = _train(cfg, bundle, model, partial)
    if not is_main():  # data parallel: rank 0 evaluates and writes the cache
        return model.eval(), progress, folder
    metrics = _final_metrics(cfg, bundle, model, spec)
    metrics.update(progress)
    if importance is not None:
        metrics["unit_importance"] = importance
    state = {"spec": spec_to_json(spec), "metrics": metrics, "key": key, "config": _plain(cfg)}
    save_checkpoint(folder, {f"model.{k}": v for k, v in model.state_dict().items()}, state)
    atomic_write(folder / "report.md", format_report(metrics))
    if partial.exists() and not progress["stopped_early"]:  # a truncated backbone keeps it: it can be finished
        shutil.rmtree(partial)
    return model.eval(), metrics, folder


def _finishes_truncated(cfg: PretrainConfig, metrics: dict, folder: Path, partial: Path) -> bool:
    """Whether a cached backbone is to be trained on: one that ``pretrain.max_minutes`` stopped early is
    finished (resumed from the checkpoint kept at its last step) when this run allows more minutes than
    the one that stopped it; otherwise it is used as it is, with a warning on every use, because its
    weights depend on how fast the machine was, not only on the key's config."""
    if not metrics.get("stopped_early"):
        return False
    stopped_at = metrics.get("max_minutes")
    if partial.exists() and stopped_at is not None and cfg.pretrain.max_minutes > stopped_at:
        log.warning(
            "finishing the truncated backbone %s: resuming at step %d of %d (pretrain.max_minutes=%s; "
            "it stopped at %s)",
            folder.name,
            metrics["steps"],
            metrics["planned_steps"],
            cfg.pretrain.max_minutes,
            stopped_at,
        )
        return True
    log.warning(
        "backbone %s is truncated: pretrain.max_minutes=%s stopped it at step %d of %d, so its weights depend "
        "on this machine's speed; to finish it, rerun with a larger pretrain.max_minutes (it resumes at step %d)",
        folder.name,
        stopped_at,
        metrics["steps"],
        metrics["planned_steps"],
        metrics["steps"],
    )
    return False


def _convert(cfg: PretrainConfig, bundle: DataBundle, model: GatedEncoder) -> dict:
    """Load the pretrained checkpoint into ``model``, its units ordered by importance on the first
    ``IMPORTANCE_SENTENCES`` train sentences (deterministic: sorted rows)."""
    rows = _rows(bundle, "train")[:IMPORTANCE_SENTENCES]
    sample = bundle.dataset.select(rows)["words"] if rows else []
    return convert_pretrained(model, bundle.tokenizer, sample)


def _plain(cfg: PretrainConfig) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))


def _train(cfg: PretrainConfig, bundle: DataBundle, model: GatedEncoder, partial: Path) -> dict:
    """The training loop (resumed from ``partial`` when it exists); returns steps and minutes."""
    p, sb = cfg.pretrain, model.spec.suffix_buckets
    # checked before the minutes of encoding: a refused alpha fails at once
    unknown = unknown_probabilities(cfg, bundle.tokenizer) if model.spec.lexical else None  # else no word table
    t0 = time.time()
    train = EncodedCorpus.build(bundle.dataset, _rows(bundle, "train"), bundle.tokenizer, bundle.tasks, sb)
    dev = EncodedCorpus.build(bundle.dataset, _rows(bundle, "dev"), bundle.tokenizer, bundle.tasks, sb)
    log.info("encoded %d train / %d dev sentences in %.1fs", len(train), len(dev), time.time() - t0)
    opt = build_optimizer(model, p, cfg.model.finetune_lr)
    weights = None if p.language_alpha == 1.0 else language_weights(train.langs, p.language_alpha)
    per_epoch = len(train.batches(p.max_words, shuffle=True, seed=cfg.seed, epoch=0, weights=weights))
    total = max(1, int(p.epochs * per_epoch))
    warm = max(1, int(p.warmup * total))

    def lr_at(step: int) -> float:  # linear warmup, linear decay; a pure function of the step (resume-safe)
        return p.lr * min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm)))

    start = _resume(partial, model, opt, total)
    model.train()
    rank, world = rank_and_size()
    nonfinite: list[dict] = []
    batches: dict[int, list[list[int]]] = {}
    bar = tqdm(total=total, initial=start, desc="pretrain", unit="step", mininterval=5.0, disable=not is_main())
    t_start, stopped_early, loss_ema, done = time.time(), False, None, start
    for step in range(start, total):
        epoch, pos = divmod(step, per_epoch)
        if epoch not in batches:
            batches = {epoch: train.batches(p.max_words, shuffle=True, seed=cfg.seed, epoch=epoch, weights=weights)}
        batch = train.batch(batches[epoch][pos % len(batches[epoch])])
        value = optimise(cfg, model, opt, batch, step, lr_at(step), nonfinite, rank, world, unknown)
        if value is not None:
            loss_ema = value if loss_ema is None else 0.98 * loss_ema + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{loss_ema or float('nan'):.3f}", epoch=epoch, refresh=False)
        done = step + 1
        if done % 10 == 0 and loss_ema is not None:
            log_scalars("pretrain", {"loss": loss_ema, "lr": lr_at(step)}, done)
        if p.eval_every and done % p.eval_every == 0:
            _log_dev(model, dev, bundle.tasks, done)
        stopped_early = (time.time() - t_start) / 60 > p.max_minutes and done < total
        # a truncated backbone keeps its last step too, so that a longer allowance can finish it
        if is_main() and done < total and (stopped_early or done % p.checkpoint_every == 0):
            _save_partial(partial, model, opt, done, total)
        if stopped_early:
            log.warning("pretrain.max_minutes=%s reached at step %d/%d: stopping early", p.max_minutes, done, total)
            break
    bar.close()
    minutes = round((time.time() - t_start) / 60, 2)
    progress = {"steps": done, "planned_steps": total, "train_minutes": minutes, "stopped_early": stopped_early}
    if stopped_early:
        progress["max_minutes"] = p.max_minutes  # what a later run must exceed to finish it
    if start:
        progress["resumed_at_step"] = start
    return {**progress, "nonfinite_steps": nonfinite, "data_parallel_ranks": world}


def _resume(partial: Path, model: GatedEncoder, opt, total: int) -> int:
    """Load an interrupted run's checkpoint into ``model`` and ``opt``; returns the step to start at (0 without one)."""
    if not partial.exists():
        return 0
    tensors, state = load_checkpoint(partial)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    restore_optimizer_state(opt, dict(model.named_parameters()), tensors, state["optimizer"])
    log.info("resuming pretraining from step %d/%d (%s)", state["step"], total, partial)
    return state["step"]


def _log_dev(model: GatedEncoder, dev: EncodedCorpus, tasks, done: int) -> None:
    """Dense dev accuracy during training (``pretrain.eval_every``), logged; the model goes back to train mode."""
    r = score(Dense(model), dev)
    log.info("step %d dev macro %s", done, {t: round(r.by_lang.macro(t), 4) for t in tasks})
    log_scalars("pretrain/dev", {t: r.by_lang.macro(t) for t in tasks}, done)
    model.train()


def _save_partial(folder: Path, model, opt, step: int, total: int) -> None:
    opt_tensors, opt_scalars = optimizer_state(opt, dict(model.named_parameters()))
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **opt_tensors}
    save_checkpoint(folder, tensors, {"step": step, "total": total, "optimizer": opt_scalars})


def _final_metrics(cfg: PretrainConfig, bundle: DataBundle, model: GatedEncoder, spec: EncoderSpec) -> dict:
    """Dense accuracy per language on the source test cells, the lookup baseline, and static patterns."""
    test_rows = _rows(bundle, "test")
    test = EncodedCorpus.build(bundle.dataset, test_rows, bundle.tokenizer, bundle.tasks, spec.suffix_buckets)
    dense = score(Dense(model), test)
    tasks = sorted(bundle.tasks)
    lookup = {t: _lookup_table(bundle, test_rows, t, _rows(bundle, "train")) for t in tasks}
    per_lang = {
        lang: {t: {"dense": dense.by_lang.acc(lang, t), "lookup": lookup[t].acc(lang, t)} for t in tasks}
        for lang in dense.by_lang.groups()
    }
    static = []
    for i, pat in enumerate(model.codebook):
        r = score(PlanMethod(model, [i] * spec.layers), test)
        static.append(
            {
                # unit counts under the keys cached backbones already carry in their metrics
                "pattern": {"heads": pat.n_heads, "groups": pat.n_groups, "tokens": pat.tokens, "topk": pat.topk},
                "flops_fraction": r.flops_fraction,
                **{t: r.by_lang.macro(t) for t in tasks},
            }
        )
    return {
        "macro": {t: {"dense": dense.by_lang.macro(t), "lookup": lookup[t].macro(t)} for t in tasks},
        "micro": {t: {"dense": dense.by_lang.micro(t), "lookup": lookup[t].micro(t)} for t in tasks},
        "per_language": per_lang,
        "languages_below_lookup": {
            t: [lg for lg, v in per_lang.items() if v[t]["dense"] <= v[t]["lookup"]] for t in tasks
        },
        "static_patterns": static,
        "test_sentences": len(test_rows),
    }


def format_report(m: dict) -> str:
    """Markdown: dense vs lookup per language and macro, then accuracy under each static pattern."""
    tasks = sorted(m["macro"])
    lines = [
        "# Backbone: dense accuracy on the source test cells",
        "",
        "| language | " + " | ".join(f"{t} dense | {t} lookup" for t in tasks) + " |",
        "|---|" + "---:|---:|" * len(tasks),
    ]
    for lang, v in sorted(m["per_language"].items()):
        lines.append(
            f"| {lang} | " + " | ".join(f"{100 * v[t]['dense']:.1f} | {100 * v[t]['lookup']:.1f}" for t in tasks) + " |"
        )
    lines.append(
        "| **macro** | "
        + " | ".join(f"**{100 * m['macro'][t]['dense']:.1f}** | {100 * m['macro'][t]['lookup']:.1f}" for t in tasks)
        + " |"
    )
    lines.append(
        "| micro | "
        + " | ".join(f"{100 * m['micro'][t]['dense']:.1f} | {100 * m['micro'][t]['lookup']:.1f}" for t in tasks)
        + " |"
    )
    lines += [
        "",
        "Languages at or below the lookup baseline: "
        + "; ".join(f"{t}: {', '.join(v) or 'none'}" for t, v in m["languages_below_lookup"].items()),
        "",
        "## Every layer on one static pattern",
        "",
        "| pattern | FLOPs fraction | " + " | ".join(tasks) + " |",
        "|---|---:|" + "---:|" * len(tasks),
    ]
    for s in m["static_patterns"]:
        p = s["pattern"]
        name = (
            "skip"
            if p["heads"] == 0
            else f"heads {p['heads']}, groups {p['groups']}"
            + (f", tokens {p['tokens']}" if p["tokens"] < 1 else "")
            + (f", top-{p['topk']}" if p["topk"] else "")
        )
        lines.append(f"| {name} | {s['flops_fraction']:.3f} | " + " | ".join(f"{100 * s[t]:.1f}" for t in tasks) + " |")
    if "steps" in m:
        lines += [
            "",
            f"{m['steps']} of {m['planned_steps']} steps in {m['train_minutes']} min"
            + (" (stopped early at pretrain.max_minutes)" if m.get("stopped_early") else ""),
        ]
    return "\n".join(lines) + "\n"
