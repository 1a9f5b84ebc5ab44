"""Which words get compute: each word's share of the dense FLOPs under per-layer patterns, early exits and
token routing, and the per-tag, per-language table the diagnostics draw from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_utils import EVERY_UNIT, random_batch, tiny_model

from metasparse.model.flops import block_flops, word_compute
from metasparse.model.patterns import PatternSpec


def _dense_per_word(spec, n: int) -> float:
    d = spec.d_model
    return spec.layers * (8 * d * d + 4 * n * d + 4 * d * spec.d_ffn)


@pytest.mark.parametrize("seed", range(4))
def test_word_shares_add_up_to_the_sentence_block_flops(seed):
    """Summed over a sentence's words, the shares (times a word's dense work) give block_flops with the
    same patterns and running counts: the per-word split loses and invents nothing."""
    model = tiny_model(EVERY_UNIT + [PatternSpec(0.5, 0.5, tokens=0.5, exit=0.5)])
    lengths = [7, 3, 5, 1]
    batch = random_batch(lengths, seed=seed)
    mask = batch.word_mask
    B, T = mask.shape
    g = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, model.n_patterns, (B, model.spec.layers), generator=g)
    exited_at = torch.randint(0, model.spec.layers + 1, (B, T), generator=g)
    scores = [torch.randn(B, T, generator=g) for _ in range(model.spec.layers)]
    share, _ = word_compute(model.spec, model.codebook, levels, mask, exited_at, scores)
    assert (share[~mask] == 0).all() and (share >= 0).all() and (share <= 1 + 1e-6).all()
    for b, n in enumerate(lengths):
        running = [int((mask[b] & (exited_at[b] >= li)).sum()) for li in range(model.spec.layers)]
        want = sum(
            block_flops(model.spec, model.codebook[int(levels[b, li])], n, running[li])
            for li in range(model.spec.layers)
        )
        got = float(share[b].sum()) * _dense_per_word(model.spec, n)
        assert got == pytest.approx(want, rel=1e-5)


def test_hand_set_exits_and_routing_give_each_word_its_compute():
    """Two dense layers, one word exiting after layer 0, a routed layer that skips the lowest-scoring word:
    the shares follow by hand."""
    model = tiny_model([PatternSpec(1.0, 1.0), PatternSpec(1.0, 1.0, tokens=0.5)])
    spec = model.spec
    mask = torch.tensor([[True, True, True, True]])
    levels = torch.tensor([[0, 1, 0]])  # layer 1 routes the FFN to ceil(0.5 * running) words
    exited_at = torch.tensor([[3, 3, 3, 0]])  # word 3 stops after layer 0
    scores = [None, torch.tensor([[4.0, 3.0, -1.0, 9.0]]), None]
    share, routed = (t[0] for t in word_compute(spec, model.codebook, levels, mask, exited_at, scores))
    d, f, n = spec.d_model, spec.d_ffn, 4
    kv, query, ffn = 4 * d * d, 4 * d * d + 2 * (n + n) * d, 4 * d * f
    dense = _dense_per_word(spec, n)
    # layer 1 routes 2 of the 3 running words: words 0 and 1 (word 3 scores highest but has exited)
    full = 3 * (kv + query + ffn)
    assert routed.tolist() == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3])  # word 2 left out of layer 1's FFN
    assert share[0].item() == pytest.approx(full / dense)
    assert share[1].item() == pytest.approx(full / dense)
    assert share[2].item() == pytest.approx((full - ffn) / dense)
    assert share[3].item() == pytest.approx((kv + query + ffn + 2 * kv) / dense)


def test_per_tag_compute_table_with_hand_set_exits():
    """Punctuation exits after layer 0, the determiner after layer 1, nouns run all three layers: the table
    gives each tag its layers and its compute relative to the language's mean, by hand."""
    from metasparse.data.labels import UPOS_TAGS
    from metasparse.diagnostics.token_pathways import WordCompute, tag_compute_rows, tag_matrix, tag_spread

    model = tiny_model([PatternSpec(1.0, 1.0, exit=0.5)])
    mask = torch.ones(1, 4, dtype=torch.bool)
    exited_at = torch.tensor([[3, 1, 3, 0]])
    levels = torch.zeros(1, 3, dtype=torch.long)
    share, ffn = (t[0] for t in word_compute(model.spec, model.codebook, levels, mask, exited_at))
    noun, det, punct = (UPOS_TAGS.index(t) for t in ("NOUN", "DET", "PUNCT"))
    wc = WordCompute()
    assert ffn.tolist() == pytest.approx([1.0, 2 / 3, 1.0, 1 / 3])  # exits take the later FFNs out
    wc.add([noun, det, noun, punct], share.tolist(), [3, 2, 3, 1], ffn.tolist())
    other = WordCompute()  # a second language where every word runs dense
    other.add([noun, punct], [1.0, 1.0], [3, 3], [1.0, 1.0])
    rows = {(r["lang"], r["tag"]): r for r in tag_compute_rows(["xx", "yy"], [wc, other], UPOS_TAGS)}
    s = share.tolist()
    mean_xx = sum(s) / 4
    assert rows[("xx", "NOUN")]["words"] == 2 and rows[("xx", "NOUN")]["layers_run"] == 3
    assert rows[("xx", "DET")]["layers_run"] == 2 and rows[("xx", "PUNCT")]["layers_run"] == 1
    assert rows[("xx", "PUNCT")]["ffn_routed"] == pytest.approx(1 / 3)
    assert rows[("xx", "NOUN")]["compute"] == pytest.approx((s[0] + s[2]) / 2)
    assert rows[("xx", "PUNCT")]["relative"] == pytest.approx(s[3] / mean_xx)
    assert s[0] > s[1] > s[3]  # more layers run, more compute
    assert rows[("yy", "NOUN")]["relative"] == pytest.approx(1.0)
    langs, tags, m = tag_matrix(list(rows.values()), min_words=1)
    assert langs == ["xx", "yy"] and np.isnan(m[1, tags.index("DET")])  # yy has no determiner
    spread = tag_spread(list(rows.values()), min_words=1)
    assert [r["tag"] for r in spread][0] == "NOUN" and spread[-1]["tag"] == "PUNCT"
    assert {r["tag"]: r["languages"] for r in spread} == {"NOUN": 2, "PUNCT": 2, "DET": 1}
    assert wc.histogram().sum() == pytest.approx(1.0)


def test_adapted_unit_deltas_by_hand():
    """One LoRA head and one scaled FFN group changed: only they get a delta, of the hand-computed size."""
    from metasparse.diagnostics.adapted_units import unit_delta_norms

    g = torch.Generator().manual_seed(0)
    heads, groups, dh, gs, r, d = 2, 3, 4, 5, 2, 6
    base = {
        "backbone.blocks.0.adapter.head_down": torch.randn(heads, dh, r, generator=g),
        "backbone.blocks.0.adapter.head_up": torch.randn(heads * r, d, generator=g),
        "backbone.blocks.0.adapter.ffn_down": torch.randn(groups, gs, r, generator=g),
        "backbone.blocks.0.adapter.ffn_up": torch.randn(groups * r, d, generator=g),
    }
    up = base["backbone.blocks.0.adapter.head_up"].clone()
    up[r : 2 * r] += 0.5  # head 1's rows only
    norms = unit_delta_norms(base, {"backbone.blocks.0.adapter.head_up": up}, 0, heads, groups)
    want = (base["backbone.blocks.0.adapter.head_down"][1].double() @ torch.full((r, d), 0.5).double()).norm()
    assert norms["head"][0] == 0 and norms["head"][1].item() == pytest.approx(want.item())
    assert (norms["ffn"] == 0).all()
    scale = {
        "backbone.blocks.0.adapter.head_scale": torch.zeros(heads * dh),
        "backbone.blocks.0.adapter.ffn_scale": torch.zeros(groups * gs),
        "backbone.blocks.0.adapter.ffn_shift": torch.zeros(groups * gs),
    }
    shift = torch.zeros(groups * gs)
    shift[2 * gs : 3 * gs] = 3.0  # group 2 shifted, 5 channels by 3
    norms = unit_delta_norms(scale, {"backbone.blocks.0.adapter.ffn_shift": shift}, 0, heads, groups)
    assert norms["ffn"].tolist() == pytest.approx([0, 0, 3.0 * 5**0.5]) and (norms["head"] == 0).all()
    with pytest.raises(ValueError, match="no pathway adapters"):
        unit_delta_norms({}, {}, 0, heads, groups)
