"""A BERT- or XLM-R-family checkpoint converted into a :class:`~metasparse.model.encoder.GatedEncoder`.

The converted encoder runs over words like the package's own (so per-word decisions, exits, FLOPs and
scoring are the same code): each word's input is the mean of its pieces' pretrained embeddings plus the
pretrained position of the word, through the pretrained embedding norm; the blocks are the checkpoint's
layers, post-LN, with their heads and FFN groups reordered by importance first
(:func:`metasparse.model.hf_importance.reorder_by_importance`) so that the prefixes the gating runs are
the best subsets. For a word of one piece this is the checkpoint's own computation (tested); a word of
several pieces enters as their mean, which the sparsity-aware fine-tuning of ``pretrain`` adapts to.
The task heads are new. After conversion the weights are the backbone's own: a converted backbone loads
from the cache without ``transformers``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from metasparse.data.pretrained_tokenizer import PretrainedTokenizer, import_transformers, resolve_pretrained
from metasparse.errors import ConfigValueError
from metasparse.model.encoder import GatedEncoder
from metasparse.model.hf_importance import reorder_by_importance
from metasparse.model.patterns import PatternSpec
from metasparse.model.spec import EncoderSpec, ModelConfig

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _auto_config(path: Path):
    return import_transformers().AutoConfig.from_pretrained(str(path))


def _check_supported(cfg, name_or_path: str) -> None:
    """Refuse what the conversion would get wrong, naming the setting."""
    checks = [
        (getattr(cfg, "hidden_act", None) == "gelu", "hidden_act", "gelu", getattr(cfg, "hidden_act", None)),
        (
            getattr(cfg, "position_embedding_type", "absolute") == "absolute",
            "position_embedding_type",
            "absolute",
            getattr(cfg, "position_embedding_type", None),
        ),
        (not getattr(cfg, "is_decoder", False), "is_decoder", "false (an encoder)", cfg.is_decoder),
        (
            hasattr(cfg, "intermediate_size") and hasattr(cfg, "num_attention_heads"),
            "model_type",
            "a BERT- or XLM-R-family encoder",
            cfg.model_type,
        ),
    ]
    for ok, key, allowed, value in checks:
        if not ok:
            raise ConfigValueError(
                f"model.name_or_path={name_or_path!r}: {key}={value!r} is not supported; supported: {allowed}"
            )


def _position_offset(cfg) -> int:
    """First position id the checkpoint uses: RoBERTa-style models count from ``pad_token_id + 1``."""
    return cfg.pad_token_id + 1 if cfg.model_type in ("roberta", "xlm-roberta", "camembert") else 0


def pretrained_spec(model_cfg: ModelConfig, tasks: dict[str, int], word_buckets: int) -> EncoderSpec:
    """The architecture of ``model_cfg.name_or_path`` for a task set (``ffn_groups``, ``codebook`` and
    ``dropout`` from ``model_cfg``)."""
    name = str(model_cfg.name_or_path)
    cfg = _auto_config(resolve_pretrained(name))
    _check_supported(cfg, name)
    if cfg.intermediate_size % model_cfg.ffn_groups:
        raise ConfigValueError(
            f"model.ffn_groups={model_cfg.ffn_groups} is out of range; allowed: a divisor of the checkpoint's "
            f"intermediate_size={cfg.intermediate_size}"
        )
    return EncoderSpec(
        vocab_size=cfg.vocab_size,
        tasks=dict(tasks),
        word_buckets=word_buckets,
        layers=cfg.num_hidden_layers,
        d_model=cfg.hidden_size,
        heads=cfg.num_attention_heads,
        d_ffn=cfg.intermediate_size,
        ffn_groups=model_cfg.ffn_groups,
        dropout=model_cfg.dropout,
        max_positions=cfg.max_position_embeddings - _position_offset(cfg),
        codebook=[PatternSpec(c.heads, c.ffn, c.tokens, c.topk, c.exit) for c in model_cfg.codebook],
        norm="post",
        lexical=False,
        layer_norm_eps=cfg.layer_norm_eps,
        pretrained=name,
        exit_criterion=model_cfg.exit_criterion,
    )


def pretrained_fingerprint(name_or_path: str) -> str:
    """sha256 of the checkpoint's config and weight files (part of the backbone's cache key)."""
    path = resolve_pretrained(name_or_path)
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            digest.update(name.encode() + (path / name).read_bytes())
    return digest.hexdigest()[:16]


def _load_hf(path: Path):
    return import_transformers().AutoModel.from_pretrained(str(path)).eval()


@torch.no_grad()
def convert_pretrained(
    model: GatedEncoder, tokenizer: PretrainedTokenizer, sample: Sequence[Sequence[str]], *, reorder: bool = True
) -> dict:
    """Copy the checkpoint ``model.spec.pretrained`` into ``model`` (its task heads stay as initialised).

    Args:
        model: a :class:`GatedEncoder` built from :func:`pretrained_spec`.
        tokenizer: the checkpoint's tokenizer (for the importance sample).
        sample: sentences (lists of words) on which unit importance is measured.
        reorder: order heads and FFN groups by importance first (off only to test the plain conversion).

    Returns:
        Per layer, the importance of each head and FFN group in the new order (for the report).
    """
    path = resolve_pretrained(str(model.spec.pretrained))
    hf = _load_hf(path)
    importance: dict = {}
    if reorder and sample:
        enc = tokenizer.tok(
            [list(s) for s in sample],
            is_split_into_words=True,
            padding=True,
            truncation=True,
            max_length=64,
            return_tensors="pt",
        )
        imp = reorder_by_importance(hf, enc["input_ids"], enc["attention_mask"], model.spec.ffn_groups)
        importance = {k: v.tolist() for k, v in imp.items()}
    missing, unexpected = model.load_state_dict(_state_from_hf(hf, model.spec), strict=False)
    if unexpected or any(not k.startswith("heads.") for k in missing):
        raise RuntimeError(f"conversion left weights unset: missing {missing}, unexpected {unexpected}")
    log.info("converted %s (%d layers, %d heads, FFN %d)", path, model.spec.layers, model.spec.heads, model.spec.d_ffn)
    return importance


def _state_from_hf(hf, spec: EncoderSpec) -> dict[str, torch.Tensor]:
    """The checkpoint's weights under the gated encoder's names (output projections input-major)."""
    emb = hf.embeddings
    offset = _position_offset(hf.config)
    pos = emb.position_embeddings.weight[offset : offset + spec.max_positions]
    if getattr(emb, "token_type_embeddings", None) is not None:
        pos = pos + emb.token_type_embeddings.weight[0]  # every word is segment 0: fold it into positions
    sd = {
        "subword_emb.weight": emb.word_embeddings.weight,
        "pos_emb.weight": pos,
        "emb_ln.weight": emb.LayerNorm.weight,
        "emb_ln.bias": emb.LayerNorm.bias,
    }
    for i, layer in enumerate(hf.encoder.layer):
        a, b = layer.attention, f"blocks.{i}."
        for ours, lin in (
            ("q", a.self.query),
            ("k", a.self.key),
            ("v", a.self.value),
            ("w1", layer.intermediate.dense),
        ):
            sd[b + ours + ".weight"], sd[b + ours + ".bias"] = lin.weight, lin.bias
        sd[b + "o_weight"], sd[b + "o_bias"] = a.output.dense.weight.T, a.output.dense.bias
        sd[b + "w2_weight"], sd[b + "w2_bias"] = layer.output.dense.weight.T, layer.output.dense.bias
        for ours, ln in (("ln1", a.output.LayerNorm), ("ln2", layer.output.LayerNorm)):
            sd[b + ours + ".weight"], sd[b + ours + ".bias"] = ln.weight, ln.bias
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}
