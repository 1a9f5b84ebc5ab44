"""Adapt a meta-trained run to data it never saw, in a few steps, and print the learning curve.

    python -m metasparse.adapt run_dir=<meta_train run dir> target.path=<UD folder> \\
        target.lang=de target.domain=legal steps=20 shots=16

The folder's sentences are split by the same hash rule as the registry data: the support set comes from
its train part, the curve is measured on its test part (everything, if it has no test part). The adapted
target is saved beside the run (``<run_dir>/adapted/<folder>-<lang>-<domain>``) and loads for inference
with ``metasparse.meta.adapted.load_adapted(run_dir, name)``; its adaptation is seeded by (seed, name).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.cli import check_paths, one_line_errors
from metasparse.config import AdaptRunConfig
from metasparse.errors import InputError
from metasparse.io import atomic_write
from metasparse.tracking import job_tracking, log_scalars

log = logging.getLogger(__name__)


def target_sentences(cfg: AdaptRunConfig, mcfg) -> tuple:
    """The target folder's sentences split by the run's hash rule: (dataset, support rows, test rows, train
    rows)."""
    import numpy as np

    from metasparse.data.ud import load_folder

    t = cfg.target
    ds = load_folder(
        t.path,
        lang=t.lang,
        domain=t.domain,
        split_seed=mcfg.data.split_seed,
        fractions=tuple(mcfg.data.split_fractions),
    )
    splits = np.asarray(ds["split"])
    train_rows = np.flatnonzero(splits == "train")
    test_rows = np.flatnonzero(splits == "test")
    if len(test_rows) == 0:
        test_rows = np.arange(len(ds))
    if len(train_rows) == 0:
        raise InputError(f"target.path={t.path}: no sentence falls in the train split to adapt on ({len(ds)} in all)")
    rng = np.random.default_rng(cfg.seed)
    support = sorted(rng.choice(train_rows, min(cfg.shots, len(train_rows)), replace=False).tolist())
    test = test_rows[: cfg.max_test_sentences].tolist() if cfg.max_test_sentences else test_rows.tolist()
    return ds, support, test, train_rows.tolist()


def run(cfg: AdaptRunConfig, out_dir: Path) -> dict:
    """Adapt and write ``adapt_metrics.json`` (``curve``, ``final_acc``, ``final_flops``) into ``out_dir``."""
    from metasparse.meta.adapted import adapted_dir, save_adapted
    from metasparse.meta.evaluation import adapt_and_score, calibration_rows, target_seed
    from metasparse.meta.load import load_run
    from metasparse.model.corpus import EncodedRows

    run_dir = Path(cfg.run_dir)
    check_paths({"run_dir": (run_dir, "folder"), "target.path": (cfg.target.path, "any")})
    loaded = load_run(run_dir)
    mcfg, bundle, system, algo = loaded.cfg, loaded.bundle, loaded.system, loaded.algo
    backbone = system.backbone

    t = cfg.target
    ds, support, test, train = target_sentences(cfg, mcfg)

    data = EncodedRows.build(ds, range(len(ds)), bundle.tokenizer, bundle.tasks, backbone.spec.suffix_buckets)

    tasks = list(mcfg.episodes.tasks)
    name = f"{Path(t.path).name}-{t.lang}-{t.domain}"
    seed = target_seed(cfg.seed, name)
    calib = calibration_rows(train, support, mcfg.adapt.calibrate_sentences, seed)
    res = adapt_and_score(
        algo, system, data, support, test, tasks, mcfg, steps=cfg.steps, seed=seed, curve=True, calib=calib
    )
    info = {"target": name, "path": str(t.path), "support": support, "steps": cfg.steps, "final": res["final"]}
    saved = adapted_dir(run_dir, name)
    save_adapted(saved, res["system"], system, algo.adapt_names, info)
    log.info("adapted target saved to %s (load_adapted(%r, %r))", saved, str(run_dir), name)
    for p in res["curve"]:
        log.info("step %2d: acc %.4f  flops %.3f", p["step"], p["acc"], p["flops"])
        log_scalars(f"adapt/{name}", {"acc": p["acc"], "flops": p["flops"]}, p["step"])
    out = {
        "run_dir": str(run_dir),
        "target": OmegaConf.to_container(OmegaConf.structured(t)),
        "task": tasks[0],
        "steps": cfg.steps,
        "shots": len(support),
        "test_sentences": len(test),
        "curve": [{"step": p["step"], "acc": p["acc"], "flops": p["flops"]} for p in res["curve"]],
        "final_acc": res["final"]["acc"],
        "final_flops": res["final"]["flops"],
        "final_by_task": res["final"]["by_task"],
        "saved": str(saved),
    }
    atomic_write(out_dir / "adapt_metrics.json", json.dumps(out, indent=2))
    print(
        "step | acc | flops\n"
        + "\n".join(f"{p['step']:4d} | {100 * p['acc']:.1f} | {p['flops']:.3f}" for p in res["curve"])
    )
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="adapt")
@one_line_errors
def main(cfg: DictConfig) -> float:
    config, out_dir = OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir)
    with job_tracking(config, out_dir, "adapt"):
        return float(run(config, out_dir)["final_acc"])


if __name__ == "__main__":
    main()
