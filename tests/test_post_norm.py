"""Post-LN blocks (BERT-family weights): sliced execution equals the masked reference for every unit type,
mixed batches, per-token early exit and pathway adapters; a switched-off sub-block is skipped whole."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_utils import EVERY_UNIT, random_batch, tiny_model

from metasparse.model.adapters import AdapterConfig, attach_adapters
from metasparse.model.encoder import Decision
from metasparse.model.patterns import Pattern, PatternSpec

LENGTHS = [7, 3, 5, 1, 6, 4, 7, 2]


def _post(codebook=EVERY_UNIT, seed: int = 0):
    return tiny_model(codebook, seed=seed, norm="post", lexical=False, layer_norm_eps=1e-12)


def _policy(levels, scores, n):
    return lambda i, x, mask: Decision(F.one_hot(levels[i], n).to(x.dtype), scores[i])


def test_a_post_norm_encoder_has_no_lexical_tables_and_no_final_norm():
    model = _post()
    assert not hasattr(model, "word_emb") and not hasattr(model, "suffix_emb")
    assert isinstance(model.final_ln, torch.nn.Identity)
    assert all(b.post and b.ln1.eps == 1e-12 for b in model.blocks)


@pytest.mark.parametrize("pattern", range(len(EVERY_UNIT)))
def test_post_norm_sliced_equals_masked_for_each_unit_type(pattern):
    model, batch = _post(), random_batch(LENGTHS)
    B, T = batch.word_mask.shape
    g = torch.Generator().manual_seed(pattern)
    pol = _policy([torch.full((B,), pattern)] * 3, [torch.randn(B, T, generator=g) for _ in range(3)], 7)
    m = batch.word_mask
    with torch.no_grad():
        sliced = model(batch, pol, mode="sliced").logits["upos"][m]
        masked = model(batch, pol, mode="masked").logits["upos"][m]
        dense = model(batch).logits["upos"][m]
    torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=0)
    if model.codebook[pattern] != model.full:
        assert (sliced - dense).abs().max() > 1e-2


@pytest.mark.parametrize("seed", [0, 1])
def test_post_norm_mixed_patterns_and_exits_in_one_batch(seed):
    model, batch = _post(), random_batch(LENGTHS, seed=seed)
    with torch.no_grad():  # an exit threshold at the median uncertainty after layer 0: about half go
        x0 = model.blocks[0].forward_sliced(model.embed(batch), batch.word_mask, model.full, None)
        t = float(model.exit_uncertainty(x0)[batch.word_mask].median()) + 1e-4
    model = _post([*EVERY_UNIT, PatternSpec(1.0, 1.0, exit=t), PatternSpec(0.5, 0.5, tokens=0.5, exit=t)])
    B, T = batch.word_mask.shape
    g = torch.Generator().manual_seed(10 + seed)
    levels = [torch.randint(7, 9, (B,), generator=g)] + [torch.randint(0, 9, (B,), generator=g) for _ in range(2)]
    pol = _policy(levels, [torch.randn(B, T, generator=g) for _ in range(3)], 9)
    m = batch.word_mask
    with torch.no_grad():
        sliced = model(batch, pol, mode="sliced")
        masked = model(batch, pol, mode="masked")
    assert sliced.exited_at is not None and (sliced.exited_at[m] == 0).any()
    assert torch.equal(sliced.exited_at, masked.exited_at)
    torch.testing.assert_close(sliced.logits["deprel"][m], masked.logits["deprel"][m], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["lora", "scale"])
def test_post_norm_sliced_equals_masked_with_trained_adapters(kind):
    model, batch = _post(), random_batch(LENGTHS)
    attach_adapters(model, AdapterConfig(kind=kind, rank=2))
    with torch.no_grad():
        for p in (p for b in model.blocks for p in b.adapter.parameters()):
            p.normal_(0, 0.3)
    B, T = batch.word_mask.shape
    for pattern in (1, 3, 4):
        pol = _policy([torch.full((B,), pattern)] * 3, [torch.randn(B, T)] * 3, 7)
        with torch.no_grad():
            sliced = model(batch, pol, mode="sliced").logits["upos"][batch.word_mask]
            masked = model(batch, pol, mode="masked").logits["upos"][batch.word_mask]
        torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=0)


def test_a_post_norm_sub_block_with_no_unit_is_skipped_norm_included():
    block = _post().blocks[0]
    x, mask = torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        ffn_only = block.forward_sliced(x, mask, Pattern(0, 2), None)
        attn_only = block.forward_sliced(x, mask, Pattern(2, 0), None)
        gated_ffn = block.forward_unit_gated(x, mask, torch.zeros(4), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    # no head: the attention sub-block (and its norm) did not run; the FFN sub-block read x itself
    torch.testing.assert_close(ffn_only, gated_ffn, atol=1e-5, rtol=0)
    assert not torch.allclose(ffn_only, block.ln2(block.ln1(x)), atol=1e-3)
    # no group: the output is the post-attention state, normalised once
    assert torch.allclose(attn_only.mean(-1), torch.zeros(2, 5), atol=1e-5)


def test_teal_without_thresholds_is_the_dense_post_norm_model():
    from metasparse.baselines.teal import TealMethod

    model, b = _post(), random_batch(LENGTHS)
    with torch.no_grad():
        teal = TealMethod(model, None).run(b).logits["deprel"][b.word_mask]
        dense = model(b).logits["deprel"][b.word_mask]
    torch.testing.assert_close(teal, dense, atol=1e-5, rtol=0)


def test_a_converted_encoders_weights_fine_tune_at_their_own_rate():
    import dataclasses

    from metasparse.config import PretrainConfig
    from metasparse.model.encoder import GatedEncoder
    from metasparse.train.pretrain_step import build_optimizer

    p = PretrainConfig().pretrain
    scratch = _post()
    assert {g["lr_scale"] for g in build_optimizer(scratch, p, 5e-5).param_groups} == {1.0}
    converted = GatedEncoder(dataclasses.replace(scratch.spec, pretrained="some/checkpoint"))
    opt = build_optimizer(converted, p, 5e-5)
    heads = {id(x) for x in converted.heads.parameters()}
    for g in opt.param_groups:
        is_head = {id(x) in heads for x in g["params"]}
        assert len(is_head) == 1  # a group is all heads or no heads
        assert g["lr_scale"] == (1.0 if is_head.pop() else pytest.approx(5e-5 / p.lr))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(converted.parameters()))
