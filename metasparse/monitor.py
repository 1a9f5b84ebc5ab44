"""Drift monitoring: compare incoming text with a run's training reference and say what to do.

    python -m metasparse.monitor run_dir=<run> input=<UD folder | .conllu | plain text file>

The measures and thresholds are described in :mod:`metasparse.diagnostics.drift`. Writes ``monitor.json``
with ``drift`` (true when any measure drifts), the measures, thresholds and a recommendation.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.cli import check_paths, one_line_errors, run_dir_first
from metasparse.config import MonitorConfig
from metasparse.diagnostics.drift import (
    MEASURES,
    SUMMARY_KEYS,
    auto_threshold,
    compare,
    observe,
    read_sentences,
    recommend,
    reference,
)
from metasparse.diagnostics.sentence_stats import noise_floor
from metasparse.errors import ConfigValueError
from metasparse.io import atomic_write


def threshold_source(m: str, cfg: MonitorConfig, margin: dict, noise: dict) -> str:
    """Which rule set the threshold of measure ``m``."""
    if m in cfg.thresholds:
        return "explicit"
    if noise[m] > margin[m]:
        return f"sampling noise: {cfg.noise_quantile} quantile over {cfg.noise_resamples} reference resamples"
    return f"{cfg.margin} x max over source cells (JS capped below 1)"


def run(cfg: MonitorConfig, out_dir: Path) -> dict:
    """Compare ``cfg.input`` with the run's reference; writes and returns ``monitor.json``'s content."""
    from metasparse.meta.load import load_run

    # everything the user gave is checked before the run (tokenizer, backbone, controller) loads
    check_paths({"run_dir": (cfg.run_dir, "folder"), "input": (cfg.input, "any"), "out": (cfg.out, "output")})
    bad = sorted(set(cfg.thresholds) - set(MEASURES))
    if bad:
        raise ConfigValueError(f"thresholds has unknown measure(s) {', '.join(bad)}; allowed: {', '.join(MEASURES)}")
    sentences = read_sentences(Path(cfg.input), cfg.lang, cfg.max_sentences)
    loaded = load_run(cfg.run_dir)
    ref, ref_stats, source_max, _ = reference(loaded, cfg)
    obs = observe(loaded.system.backbone, loaded.system.controller, loaded.bundle.tokenizer, sentences)
    measures = compare(obs, ref)
    noise = noise_floor(
        ref_stats, ref, compare, len(sentences), resamples=cfg.noise_resamples, quantile=cfg.noise_quantile
    )
    margin = {m: auto_threshold(m, source_max[m], cfg.margin) for m in MEASURES}
    thresholds = {m: cfg.thresholds.get(m, max(margin[m], noise[m])) for m in MEASURES}
    drifted = [m for m in MEASURES if measures[m] > thresholds[m]]
    result = {
        "drift": bool(drifted),
        "drifted": drifted,
        "measures": measures,
        "thresholds": thresholds,
        "threshold_source": {m: threshold_source(m, cfg, margin, noise) for m in MEASURES},
        "margin_thresholds": margin,
        "noise_floor": noise,
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


@run_dir_first
@hydra.main(version_base="1.3", config_path="../conf", config_name="monitor")
@one_line_errors
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
