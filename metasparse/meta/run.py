"""``run(cfg, out_dir)``: the whole main job as a plain function (the Hydra entry point only calls it).

data -> cached backbone (pretrained first if missing) -> meta-train the controllers on source episodes
-> calibrate hard decisions to the budget -> adapt on every target cell and evaluate -> metrics.json,
report.md, checkpoints, all under ``out_dir``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from metasparse.checkpoint import save_checkpoint
from metasparse.config import MetaTrainConfig
from metasparse.config.training import outer_seed
from metasparse.control.train import calibrate_bias
from metasparse.data.fetch import cache_dir
from metasparse.data.prepare import prepare
from metasparse.distributed import is_main, main_first
from metasparse.errors import PathError
from metasparse.io import atomic_write
from metasparse.meta.evaluation import evaluate_cell
from metasparse.meta.load import new_system
from metasparse.meta.outer import meta_train, split_validation_cells
from metasparse.meta.sparse_maml import SparseMAML
from metasparse.meta.system import dense_scores, gated_scores, part_of
from metasparse.model.corpus import EncodedRows
from metasparse.tracking import log_scalars
from metasparse.train.backbone_cache import backbone_key
from metasparse.train.joint import backbone_with_controller

log = logging.getLogger(__name__)


def _macro(entries: dict, key: str) -> float:
    vals = [e[key] for e in entries.values() if e.get(key) is not None]
    return float(np.mean(vals)) if vals else float("nan")


def check_shots(cfg: MetaTrainConfig, bundle) -> None:
    """Refuse, before any training, support sets larger than a target cell can give."""
    from metasparse.errors import ConfigValueError

    idx = bundle.index
    sizes = {c.name: idx.sentences(c, "train") or idx.sentences(c, "dev") for c in bundle.targets}
    for name, have in sizes.items():
        if cfg.adapt.shots > have:
            raise ConfigValueError(
                f"adapt.shots={cfg.adapt.shots} is out of range: target cell {name} has {have} train sentences; "
                f"allowed: 1..{min(sizes.values())}"
            )


def backbone_for(cfg: MetaTrainConfig):
    """The data bundle, the frozen backbone this config selects (pretrained, and co-trained with a controller
    when ``joint.steps > 0``, cached first if missing), its metrics and folder, and the joint controller."""
    with main_first():  # under torchrun, rank 0 fills the caches (data, tokenizer, backbone); the rest read them
        bundle = prepare(cfg)
        check_shots(cfg, bundle)
        if is_main() and not (cache_dir() / "backbones" / backbone_key(cfg, bundle) / "state.json").exists():
            log.warning(
                "no cached backbone for this config and data: pretraining it first (up to "
                "pretrain.max_minutes=%s min, progress below); later runs reuse it",
                cfg.pretrain.max_minutes,
            )
        backbone, backbone_metrics, backbone_dir, joint_ctrl = backbone_with_controller(cfg, bundle)
    backbone.requires_grad_(False)
    return bundle, backbone, backbone_metrics, backbone_dir, joint_ctrl


def evaluation_rows(cfg: MetaTrainConfig, bundle, train_cells) -> tuple[list[int], list[int]]:
    """Source test sentences scored at the end (``max_source_test_sentences`` of them, seeded) and the
    source dev sentences the controllers' bias is calibrated on (every few train cells' dev split)."""
    idx = bundle.index
    src_test = sorted(int(r) for c in bundle.sources for r in idx.rows(c, "test"))
    if cfg.max_source_test_sentences:
        rng = np.random.default_rng(cfg.seed)
        src_test = sorted(
            rng.choice(src_test, min(len(src_test), cfg.max_source_test_sentences), replace=False).tolist()
        )
    calib = sorted(int(r) for c in train_cells for r in idx.rows(c, "dev"))[:: max(1, len(train_cells) // 8)]
    return src_test, calib


def resume_point(cfg: MetaTrainConfig, out_dir: Path) -> Path | None:
    """The run folder to resume from: ``resume=``, or ``out_dir`` itself when it holds an unfinished run (a
    SLURM requeue, a re-run after a kill); its best checkpoint is brought along when it is another folder."""
    resume = Path(cfg.resume) if cfg.resume else None
    if (
        resume is None
        and (out_dir / "ckpt" / "last" / "state.json").exists()
        and not (out_dir / "metrics.json").exists()
    ):
        log.warning("%s holds an unfinished run: resuming it from its last checkpoint", out_dir)
        resume = out_dir
    if resume is not None:
        if not (resume / "ckpt" / "last" / "state.json").exists():
            raise PathError(f"resume={resume}: no checkpoint at {resume / 'ckpt' / 'last'}")
        if (resume / "ckpt" / "best").exists() and resume.resolve() != out_dir.resolve():
            shutil.copytree(resume / "ckpt" / "best", out_dir / "ckpt" / "best", dirs_exist_ok=True)
    return resume


def run(cfg: MetaTrainConfig, out_dir: Path) -> dict:
    """Run the main job; returns the metrics written to ``out_dir/metrics.json``."""
    t0 = time.time()
    if is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(outer_seed(cfg))
    bundle, backbone, backbone_metrics, backbone_dir, joint_ctrl = backbone_for(cfg)
    e, idx = cfg.episodes, bundle.index
    train_cells, val_cells = split_validation_cells(
        bundle.sources,
        cfg.meta.val_fraction,
        cfg.seed,
        eligible=lambda c: idx.sentences(c, e.split) >= e.shots + e.queries,
    )
    log.info(
        "%d meta-training cells, %d validation cells, %d target cells",
        len(train_cells),
        len(val_cells),
        len(bundle.targets),
    )
    src_test, calib = evaluation_rows(cfg, bundle, train_cells)
    rows = sorted(
        {int(r) for c in train_cells + val_cells for r in idx.rows(c, e.split)}
        | {int(r) for c in bundle.targets for s in ("train", "dev", "test") for r in idx.rows(c, s)}
        | set(src_test)
        | set(calib)
    )
    data = EncodedRows.build(bundle.dataset, rows, bundle.tokenizer, bundle.tasks, backbone.spec.suffix_buckets)
    # seeded: the init must not depend on whether the backbone was just trained
    system = new_system(backbone, cfg, backbone_dir)
    if joint_ctrl is not None:  # meta-training starts from the controller co-trained with the backbone
        system.controller.load_state_dict(joint_ctrl.state_dict())
    resume = resume_point(cfg, out_dir)
    algo, state = meta_train(cfg, bundle, system, data, out_dir, train_cells, val_cells, resume)
    t_meta = time.time()
    if not is_main():  # every rank ends with the same controllers; rank 0 evaluates and writes
        return {}
    if cfg.budget.calibrate:  # relaxed training meets the budget in expectation; make hard decisions meet it
        shift = calibrate_bias(backbone, system.controller, data.subset(calib), cfg.budget.target, cost=system.cost)
        log.info("calibrated the controllers' bias by %.3f on %d source dev sentences", shift, len(calib))
    system.eval()
    save_checkpoint(
        out_dir / "ckpt" / "final",
        final_tensors(system, algo),
        {"backbone": str(backbone_dir), "config": OmegaConf.to_container(OmegaConf.structured(cfg))},
    )
    metrics = run_metrics(cfg, algo, system, data, bundle, src_test, state, backbone_dir, backbone_metrics, out_dir)
    metrics["cells"] = {
        "train": [c.name for c in train_cells],
        "validation": [c.name for c in val_cells],
        "targets": [c.name for c in bundle.targets],
    }
    metrics["minutes"] = {"total": (time.time() - t0) / 60, "meta_train": (t_meta - t0) / 60}
    atomic_write(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    log_scalars("result", result_scalars(metrics), cfg.meta.steps)
    report = format_report(metrics)
    atomic_write(out_dir / "report.md", report)
    print(report)
    return metrics


def result_scalars(metrics: dict) -> dict[str, float]:
    """The run's headline numbers as tracker scalars: the objective and the target and source macros."""
    out = {"objective": metrics["objective"]}
    for part in ("targets_macro", "source_test"):
        out.update({f"{part}/{k}": v for k, v in metrics[part].items() if isinstance(v, int | float)})
    return out


def final_tensors(system, algo) -> dict[str, torch.Tensor]:
    """What meta-training learned: the system's trainable parameters (``param.<name>``) and the algorithm's
    own meta-parameters (``algo.<name>``: Meta-SGD's inner rates, sparse-MAML's mask scores), without which a
    reloaded run would adapt at its initial rates over every element."""
    tensors = {f"param.{n}": p for n, p in system.named_parameters() if p.requires_grad}
    tensors.update({f"algo.{n}": p for n, p in algo.named_parameters() if not n.startswith("module.")})
    return tensors


def run_metrics(cfg, algo, system, data, bundle, src_test, state, backbone_dir, backbone_metrics, out_dir) -> dict:
    """Every target cell adapted (and saved under ``out_dir/adapted``) and scored, the source test cells
    scored, and the run's history."""
    idx = bundle.index
    targets = {}
    for cell in bundle.targets:
        targets[cell.name] = evaluate_cell(algo, system, data, idx, cell, cfg, adapt=True, save_under=out_dir)
        log.info(
            "%s: %s",
            cell.name,
            {k: round(v, 4) for k, v in targets[cell.name].items() if isinstance(v, float)},
        )
    task = cfg.episodes.tasks[0]
    src_corpus = data.subset(src_test)
    src = gated_scores(system, src_corpus)
    src_acc, src_flops = src.accuracy[task], src.flops_fraction
    src_dense = dense_scores(system, src_corpus).accuracy
    metrics = {
        "task": task,
        "budget": cfg.budget.target,
        "targets": targets,
        "targets_macro": {
            k: _macro(targets, k)
            for k in ("dense_acc", "zero_shot_acc", "zero_shot_flops", "adapted_acc", "adapted_flops")
        },
        "source_test": {
            "dense_acc": src_dense[task],
            "zero_shot_acc": src_acc,
            "zero_shot_flops": src_flops,
            "adapted_acc": src_acc,
            "adapted_flops": src_flops,
            "sentences": len(src_test),
            "note": "source cells are not adapted: adapted_* equal zero_shot_*",
        },
        "validation": [h for h in state.history if "val_acc" in h],
        "restorations": state.restorations,
        "nonfinite_steps": state.nonfinite,
        "backbone": {"dir": str(backbone_dir), "macro": backbone_metrics["macro"]},
    }
    if isinstance(algo, SparseMAML):  # where the learned mask lets each part adapt
        metrics["adapt_mask_kept"] = algo.kept_fraction(part_of)
    # what a sweep maximises: post-adaptation accuracy on the validation cells' episodes at the last step,
    # never a target's or a test split's (a search on those would tune to the test set)
    metrics["objective"] = metrics["validation"][-1]["val_acc"] if metrics["validation"] else float("nan")
    return metrics


def format_report(m: dict) -> str:
    pct = lambda v: "-" if v is None or v != v else f"{100 * v:.1f}"  # noqa: E731
    lines = [f"# meta_train: {m['task']} at a FLOPs budget of {m['budget']}", ""]
    if m["targets"]:
        lines += [
            "| target cell | dense acc | zero-shot acc | zero-shot FLOPs | adapted acc | adapted FLOPs "
            "| steps | shots |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, e in m["targets"].items():
            lines.append(
                f"| {name} | {pct(e['dense_acc'])} | {pct(e['zero_shot_acc'])} | {e['zero_shot_flops']:.3f} | "
                f"{pct(e.get('adapted_acc'))} | {e.get('adapted_flops', float('nan')):.3f} | "
                f"{e.get('steps', '-')} | {e.get('shots', '-')} |"
            )
        t = m["targets_macro"]
        lines.append(
            f"| **macro** | {pct(t['dense_acc'])} | {pct(t['zero_shot_acc'])} | {t['zero_shot_flops']:.3f} | "
            f"{pct(t['adapted_acc'])} | {t['adapted_flops']:.3f} | | |"
        )
    extra = sorted({t for e in m["targets"].values() for t in e.get("by_task", {})} - {m["task"]})
    for task in extra:  # e.g. DEPREL when episodes.tasks holds both
        lines += [
            "",
            f"{task}:",
            "",
            "| target cell | dense acc | zero-shot acc | adapted acc |",
            "|---|---:|---:|---:|",
        ]
        for name, e in m["targets"].items():
            bt = e["by_task"][task]
            lines.append(
                f"| {name} | {pct(bt['dense_acc'])} | {pct(bt['zero_shot_acc'])} | {pct(bt.get('adapted_acc'))} |"
            )
    s = m["source_test"]
    lines += [
        "",
        f"Source test ({s['sentences']} sentences): dense {pct(s['dense_acc'])}, gated {pct(s['zero_shot_acc'])} "
        f"at FLOPs {s['zero_shot_flops']:.3f}.",
        "",
        f"{len(m['cells']['train'])} meta-training cells, {len(m['cells']['validation'])} validation cells; "
        f"{m['restorations']} restoration(s); {m['minutes']['total']:.1f} min in all.",
    ]
    return "\n".join(lines) + "\n"
