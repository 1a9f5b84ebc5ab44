"""A backbone's identity in the cache: its architecture (resolved for a tokenizer, to and from JSON), the
key of everything its trained weights depend on, and loading a finished backbone folder.

Split from :mod:`metasparse.train.pretraining`, which trains what this names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from metasparse.checkpoint import load_checkpoint
from metasparse.config import PretrainConfig
from metasparse.data.prepare import DataBundle
from metasparse.data.registry import load_registry
from metasparse.model.adapters import AdapterConfig
from metasparse.model.encoder import EncoderSpec, GatedEncoder, ModelConfig
from metasparse.model.patterns import PatternSpec
from metasparse.model.pretrained import pretrained_fingerprint, pretrained_spec


def encoder_spec(model_cfg: ModelConfig, bundle: DataBundle) -> EncoderSpec:
    """The architecture for this config, the bundle's tokenizer and its task set (a pretrained
    checkpoint's own with ``model.name_or_path``)."""
    tasks = {n: t.num_labels for n, t in bundle.tasks.items()}
    if model_cfg.name_or_path:
        return pretrained_spec(model_cfg, tasks, bundle.tokenizer.word_rows)
    lexicon = bundle.tokenizer.lexicon
    width = lexicon.width if lexicon is not None else 0
    return model_cfg.spec(bundle.tokenizer.vocab_size, tasks, bundle.tokenizer.word_rows, width)


def spec_to_json(spec: EncoderSpec) -> dict:
    d = dataclasses.asdict(spec)
    d["tasks"] = [[name, n] for name, n in spec.tasks.items()]  # a list: JSON key sorting must not reorder heads
    return d


def spec_from_json(d: dict) -> EncoderSpec:
    d = dict(d)
    d["codebook"] = [PatternSpec(**c) for c in d["codebook"]]
    d["adapter"] = AdapterConfig(**d["adapter"]) if d.get("adapter") else None
    d["tasks"] = dict(d["tasks"])
    return EncoderSpec(**d)


def backbone_key(cfg: PretrainConfig, bundle: DataBundle) -> str:
    """Hash of everything the trained weights depend on: model, optimisation, data, tokenizer, seed."""
    model = OmegaConf.to_container(OmegaConf.structured(cfg.model))
    # added later: absent at the first backbones' value, so older cache keys stay valid
    firsts = dict(
        char_dim=0,
        char_channels=0,
        affixes=3,
        piece_ends=False,
        tag_lexicon=False,
        exit_criterion="upos",
        lexicon_prefixes=0,
        lexicon_shape=False,
    )
    for key, first in firsts.items():
        if model.get(key) == first:
            model.pop(key)
    if not model.get("tag_lexicon"):  # without a lexicon its prefix and shape levels change nothing
        model.pop("lexicon_prefixes", None)
        model.pop("lexicon_shape", None)
    if not any(entry.get("exit") is not None for entry in model.get("codebook", [])):
        model.pop("exit_criterion", None)  # without exit patterns the criterion decides nothing in training
    if not model.get("name_or_path"):  # likewise: a backbone trained from scratch keys as before
        model.pop("name_or_path", None)
        model.pop("finetune_lr", None)
    for entry in model.get("codebook", []):  # likewise a codebook entry without an early exit
        if entry.get("exit") is None:
            entry.pop("exit", None)
    spec = {
        "model": model,
        "pretrain": {
            k: v
            for k, v in dataclasses.asdict(cfg.pretrain).items()
            if k not in ("eval_every", "threads", "max_minutes", "checkpoint_every", "max_nonfinite")
            # added later: absent at 0, so older cache keys stay valid
            and not (k in ("word_dropout", "word_dropout_alpha") and v == 0.0)
            and not (k == "language_alpha" and v == 1.0)
            and not (k == "precision" and v == "fp32")
        },
        "tasks": sorted(bundle.tasks),
        "seed": cfg.seed,
        "registry": load_registry().fingerprint(),
        "split": [cfg.data.split_seed, list(cfg.data.split_fractions)],
        "treebanks": cfg.data.treebanks,
        "sources": [c.name for c in bundle.sources],
        "tokenizer": hashlib.sha256(bundle.tokenizer.model_proto).hexdigest(),
    }
    words = bundle.tokenizer.words
    if words is not None:  # the rows' meaning; absent for hashed forms: older cache keys stay valid
        spec["words"] = words.fingerprint()
    if bundle.tokenizer.lexicon is not None:  # what the lexicon inputs mean; absent without one, likewise
        spec["lexicon"] = bundle.tokenizer.lexicon.fingerprint()
    if bundle.extra_fingerprint is not None:  # absent without data.extra: older cache keys stay valid
        spec["extra"] = bundle.extra_fingerprint
    if cfg.model.name_or_path:  # the checkpoint's bytes, not only its name
        spec["pretrained"] = pretrained_fingerprint(cfg.model.name_or_path)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def backbone_weights_id(folder: Path) -> str:
    """What a joint phase's key names its backbone by: the folder's key, and for a backbone that
    ``pretrain.max_minutes`` stopped early also its steps (finished later under the same key, it is other
    weights, and a joint phase co-trained on the truncated one must not be reused for it)."""
    state = folder / "state.json"
    if state.exists():
        metrics = json.loads(state.read_text()).get("metrics", {})
        if metrics.get("stopped_early"):
            return f"{folder.name}@{metrics['steps']}"
    return folder.name


def load_backbone(folder: Path) -> tuple[GatedEncoder, dict[str, Any]]:
    """Load a finished backbone checkpoint folder (verified by hash)."""
    tensors, state = load_checkpoint(folder)
    model = GatedEncoder(spec_from_json(state["spec"]))
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    return model.eval(), state
