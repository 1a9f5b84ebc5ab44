"""Tag text with a run's gated model (or one of its adapted targets) and write CoNLL-U.

    python -m metasparse.predict run_dir=<meta_train run> input=sentences.txt out=tagged.conllu
    python -m metasparse.predict run_dir=<run> target=fi_tdt-legal input=in.conllu out=out.conllu batch_size=1

Plain-text input is one sentence a line, words split on whitespace; CoNLL-U input keeps every column but
UPOS and DEPREL. Prints words per second, FLOPs against dense and which patterns the controller chose per
layer; the same summary goes to ``predict.json`` in the Hydra run dir.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metasparse.cli import check_paths, one_line_errors, run_dir_first
from metasparse.config import PredictConfig
from metasparse.errors import ConfigValueError
from metasparse.io import atomic_write

log = logging.getLogger(__name__)

WRITTEN_TASKS = ("upos", "deprel")  # the CoNLL-U columns the model fills


def run(cfg: PredictConfig, out_dir: Path) -> dict:
    """Tag ``cfg.input`` into ``cfg.out``; returns (and writes to ``predict.json``) the summary."""
    import torch

    from metasparse.inference.documents import read_document, write_conllu
    from metasparse.inference.tagger import decision_summary, tag
    from metasparse.meta.adapted import check_adapted, load_adapted
    from metasparse.meta.calibrations import apply_calibration, check_calibration
    from metasparse.meta.load import load_run
    from metasparse.model.corpus import EncodedCorpus

    check_paths({"run_dir": (cfg.run_dir, "folder"), "input": (cfg.input, "file"), "out": (cfg.out, "output")})
    if Path(cfg.out).resolve() == Path(cfg.input).resolve():
        raise ConfigValueError(
            f"out={cfg.out} is the input file; allowed: any other path (the input is never overwritten)"
        )
    if cfg.target is not None:
        check_adapted(cfg.run_dir, cfg.target)
    if cfg.calibration is not None:
        check_calibration(cfg.run_dir, cfg.calibration)
    doc = read_document(cfg.input, key="input")  # bad input fails here, before the model loads
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    loaded = load_run(cfg.run_dir)
    system = load_adapted(cfg.run_dir, cfg.target, loaded) if cfg.target else loaded.system.eval()
    if cfg.calibration is not None:  # a label-free recalibration (metasparse.recalibrate) replaces the run's
        apply_calibration(system, cfg.run_dir, cfg.calibration)
    model = system.backbone
    lexicon = loaded.bundle.tokenizer.lexicon
    if cfg.lang is not None and lexicon is not None and cfg.lang not in lexicon.langs:
        raise ConfigValueError(
            f"lang={cfg.lang}: the run's tag lexicon counted {', '.join(sorted(lexicon.langs))}; "
            "allowed: one of them, or null (the tables pooled over languages)"
        )
    corpus = EncodedCorpus.unlabelled(
        doc.sentences, loaded.bundle.tokenizer, model.spec.suffix_buckets, lang=cfg.lang or "x"
    )
    tasks = [t for t in WRITTEN_TASKS if t in model.spec.tasks]
    tagged = tag(system.method(), corpus, tasks, cfg.batch_size)
    names = {t: loaded.bundle.tasks[t].labels for t in tasks}
    labels = {t: [[names[t][i] for i in sent] for sent in tagged.predictions[t]] for t in tasks}
    write_conllu(doc, labels, cfg.out)
    summary = {
        "input": str(cfg.input),
        "out": str(cfg.out),
        "target": cfg.target,
        "calibration": cfg.calibration,
        "sentences": len(doc.sentences),
        "words": tagged.words,
        "words_per_second": tagged.words_per_second,
        "flops_fraction": tagged.flops_fraction,
        "batch_size": cfg.batch_size,
        "threads": torch.get_num_threads(),
        "decisions": decision_summary(tagged.levels or [], model.codebook),
    }
    atomic_write(out_dir / "predict.json", json.dumps(summary, indent=2))
    print(report(summary))
    return summary


def report(summary: dict) -> str:
    """The lines ``predict`` prints."""
    lines = [
        f"tagged {summary['sentences']} sentences, {summary['words']} words -> {summary['out']}",
        f"{summary['words_per_second']:.0f} words/s (batch {summary['batch_size']}, {summary['threads']} threads), "
        f"FLOPs {summary['flops_fraction']:.3f} of dense",
    ]
    for layer in summary["decisions"]:
        top = ", ".join(f"{p['pattern']} {100 * p['share']:.0f}%" for p in layer["patterns"][:3])
        lines.append(f"  layer {layer['layer']}: {top}")
    return "\n".join(lines)


@run_dir_first
@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
@one_line_errors
def main(cfg: DictConfig) -> None:
    run(OmegaConf.to_object(cfg), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
