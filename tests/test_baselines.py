"""Baselines on the tiny model: each runs through the shared harness and meets its FLOPs budget; the
static path computes what its masks say; unit reordering leaves the dense function unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_utils import random_batch, tiny_model

from metasparse.baselines.controllers import trained_controller
from metasparse.baselines.importance import importance_pruned, unit_importance
from metasparse.baselines.l0 import l0_pruned, prob_nonzero, sample_gates
from metasparse.baselines.random_policy import random_calibrated
from metasparse.baselines.teal import teal_calibrated
from metasparse.baselines.units import KeptUnits, UnitCosts, prune_to_budget, reorder_units
from metasparse.control.controller import controlled
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import EncoderSpec, GatedEncoder
from metasparse.model.patterns import Pattern
from metasparse.scoring import score
from metasparse.scoring.methods import Dense

BUDGET_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def small_setup(ud_dataset, cell_index):
    """A tiny encoder briefly fitted to Finnish UPOS/DEPREL, and train/calibration corpora."""
    from metasparse.data.tokenizer import TokenizerConfig, train_tokenizer
    from metasparse.tasks import load_task

    rows = sorted(int(r) for c in cell_index.cells if c.lang == "fi" for r in cell_index.rows(c, "train"))
    words = ud_dataset["words"]
    tok, _ = train_tokenizer({"fi": [words[i] for i in rows]}, TokenizerConfig(vocab_size=1000))
    tasks = {"upos": load_task("upos"), "deprel": load_task("deprel")}
    train = EncodedCorpus.build(ud_dataset, rows[:400], tok, tasks, 64)
    calib = EncodedCorpus.build(ud_dataset, rows[400:600], tok, tasks, 64)
    torch.manual_seed(0)
    model = GatedEncoder(
        EncoderSpec(
            vocab_size=tok.vocab_size,
            tasks={"upos": 17, "deprel": 37},
            word_buckets=tok.hash_buckets,
            suffix_buckets=64,
            layers=3,
            d_model=32,
            heads=8,
            d_ffn=64,
            ffn_groups=8,
            dropout=0.0,
        )
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    from metasparse.baselines.importance import task_loss

    for idx in train.batches(512, shuffle=True, seed=0)[:30]:
        b = train.batch(idx)
        loss = task_loss(model(b).logits, b.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), train, calib


def test_reordering_units_keeps_the_dense_function():
    model = tiny_model()
    kept = KeptUnits([[2, 0], [3, 1, 0], [1]], [[3], [0, 2], [1, 2, 3]])
    other = reorder_units(model, kept)
    b = random_batch([5, 3, 7])
    for t in model.heads:
        torch.testing.assert_close(other(b).logits[t], model(b).logits[t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["pre", "post"])  # post: a layer left with no head skips its attention norm too
def test_static_prefix_equals_gating_the_pruned_units_off(norm):
    model = tiny_model(norm=norm, lexical=norm == "pre")
    kept = KeptUnits([[2, 0], [3, 1, 0], []], [[3], [0, 2], [1, 2]])
    pruned = reorder_units(model, kept)
    b = random_batch([6, 4])
    sliced = pruned.forward_with(b, lambda i, blk, x, m: blk.forward_sliced(x, m, kept.patterns()[i], None))
    gates = [
        (torch.tensor([float(h in kh) for h in range(4)]), torch.tensor([float(g in kg) for g in range(4)]))
        for kh, kg in zip(kept.heads, kept.groups, strict=True)
    ]
    masked = model.forward_with(b, lambda i, blk, x, m: blk.forward_unit_gated(x, m, *gates[i]))
    for t in model.heads:
        torch.testing.assert_close(
            sliced.logits[t] * b.word_mask[..., None], masked.logits[t] * b.word_mask[..., None], atol=1e-5, rtol=1e-5
        )


def test_prune_to_budget_by_hand():
    # 1 layer, 2 heads costing 10 each, 2 groups costing 20 each, 10 fixed, dense 100: fraction =
    # (10 heads + 20 groups + 10) / 100.
    costs = UnitCosts(head=10.0, group=20.0, fixed=10.0, dense=100.0)
    heads = torch.tensor([[5.0, 1.0]])  # per FLOP: 0.5, 0.1
    groups = torch.tensor([[4.0, 30.0]])  # per FLOP: 0.2, 1.5
    kept = prune_to_budget(heads, groups, costs, target=0.5)
    # remove head 1 (0.1): 0.6; remove group 0 (0.2): 0.4; put back the best removed unit that fits:
    # group 0 would give 0.6 (no), head 1 gives 0.5 (yes).
    assert kept.heads == [[0, 1]] and kept.groups == [[1]]
    assert costs.fraction([2], [1]) == pytest.approx(0.5)
    raw = prune_to_budget(heads, groups, costs, target=0.3, per_flop=False)  # raw order: h1, g0, h0, g1
    # remove h1 (0.6), g0 (0.4), h0 (0.3); put back g0? 0.5 no; h0? 0.4 no; h1? 0.4 no
    assert raw.heads == [[]] and raw.groups == [[1]]


def test_hard_concrete_gates_are_exact_zeros_and_ones_at_the_extremes():
    torch.manual_seed(0)
    on, off = sample_gates(torch.full((1000,), 8.0)), sample_gates(torch.full((1000,), -8.0))
    assert (on == 1).float().mean() > 0.95 and (off == 0).float().mean() > 0.95
    assert float(prob_nonzero(torch.tensor(8.0))) > 0.99 > 0.01 > float(prob_nonzero(torch.tensor(-8.0)))


def test_michel_importance_ranks_a_silenced_head_last():
    model = tiny_model()
    with torch.no_grad():  # head 3 of layer 0 contributes nothing: its output projection rows are zero
        model.blocks[0].o_weight[3 * 8 : 4 * 8].zero_()

    class Corpus:  # the minimum unit_importance needs
        def __init__(self, b):
            self.b = b

        def batches(self, *a, **k):
            return [[0]]

        def batch(self, idx):
            return self.b

    b = random_batch([6, 5])
    b.labels = {"upos": torch.randint(0, 17, b.word_mask.shape) * b.word_mask - 100 * (~b.word_mask)}
    head_imp, group_imp = unit_importance(model, Corpus(b))
    assert head_imp.shape == (3, 4) and group_imp.shape == (3, 4)
    assert float(head_imp[0, 3]) == 0.0 and float(head_imp[0, :3].min()) > 0.0


@pytest.mark.parametrize("method", ["importance", "l0", "teal", "random", "multitask"])
def test_every_baseline_runs_and_meets_its_budget(small_setup, method):
    model, train, calib = small_setup
    target = 0.5
    model.word_emb.requires_grad_(False)  # a caller's partial freeze must survive baseline training
    flags = [p.requires_grad for p in model.parameters()]
    if method == "importance":
        m = importance_pruned(model, train, calib, target)
    elif method == "l0":
        m = l0_pruned(model, train, calib, target, steps=20, max_words=512)
    elif method == "teal":
        m = teal_calibrated(model, calib, target)
    elif method == "random":
        m = random_calibrated(model, calib, target)
    else:
        m = controlled(model, trained_controller(model, train, calib, target, steps=60, max_words=512), "multitask")
    s = score(m, calib)
    # random decisions meet the budget in expectation; their realised cost on these 200 sentences spreads
    # around it with a standard deviation of 0.016 over draw seeds (measured on 12; seed 0: 0.529), so
    # they get three of those
    tolerance = 0.05 if method == "random" else BUDGET_TOLERANCE
    assert abs(s.flops_fraction - target) <= tolerance, (method, s.flops_fraction)
    assert 0.0 < s.accuracy["upos"] <= 1.0 and set(s.macro_f1) == {"upos", "deprel"}
    assert [p.requires_grad for p in model.parameters()] == flags  # the backbone's flags as the caller left them
    model.word_emb.requires_grad_(True)


def test_dense_method_spends_hand_computed_flops():
    # 3 layers, d=32, 4 heads, FFN 64, heads for 17 + 37 labels, a 5-word sentence, 2 FLOPs per multiply-add:
    # attention 3*2*5*32*32 + 2*25*32 + 2*25*32 + 2*5*32*32 = 44,160; FFN 2*2*5*32*64 = 40,960;
    # 3 blocks = 255,360; task heads 2*5*32*54 = 17,280; total 272,640.
    out = Dense(tiny_model())(random_batch([5, 2]))
    assert out.flops[0] == out.dense_flops[0] == 272_640
    assert out.flops[1] == 106_752  # 2 words: 3 * (16,896 + 16,384) + 6,912
    assert out.levels is None  # a dense run makes no per-input decisions


def test_random_decisions_depend_on_the_sentence_not_the_batch(small_setup):
    model, _, calib = small_setup
    m = random_calibrated(model, calib, 0.5)
    alone = m(calib.batch([3])).levels[0]
    together = m(calib.batch([0, 1, 2, 3])).levels[3]
    assert alone.tolist() == together.tolist()
    rows = m(calib.batch(list(range(40)))).levels
    assert len({tuple(r) for r in rows.tolist()}) > 10  # per input: sentences draw different pathways
    other_seed = type(m)(model, m.probs, seed=1)(calib.batch(list(range(40)))).levels
    assert not torch.equal(rows, other_seed)  # the seed, not the batch, is what changes the draw


def test_random_draws_follow_their_distribution():
    """The hashed draws are distributed as asked, per layer, and a pure function of (seed, key, layer)."""
    import numpy as np

    from metasparse.baselines.random_policy import random_levels

    probs = np.array([0.1, 0.0, 0.2, 0.7])
    keys = list(range(5000))
    levels = random_levels(probs, keys, 4, seed=3)
    assert levels.shape == (5000, 4) and not (levels == 1).any()  # a pattern of probability 0 never drawn
    for layer in range(4):
        freq = np.bincount(levels[:, layer].numpy(), minlength=4) / 5000
        assert np.allclose(freq, probs, atol=0.02), freq
    assert torch.equal(levels[17:19], random_levels(probs, keys[17:19], 4, seed=3))


def test_static_patterns_may_drop_all_heads_of_a_layer():
    model = tiny_model()
    b = random_batch([4, 2])
    out = model.forward_with(b, lambda i, blk, x, m: blk.forward_sliced(x, m, Pattern(0, 2), None))
    assert torch.isfinite(out.logits["upos"]).all()


def test_random_decisions_meet_a_latency_budget_in_its_own_unit(small_setup):
    """A latency-priced run's random baseline is calibrated in time, not FLOPs: here a skipped layer is
    nearly free while any width costs the same (batch-1 behaviour), so the same target in the two units
    asks for different draws, and each is met in its own unit."""
    from model_utils import hand_made_table

    from metasparse.control.budget import FlopsCost, LatencyCost, decision_fraction

    model, _, calib = small_setup
    table = hand_made_table(model, lambda p, n, b: 0.05 if p.skip else 1.0, lengths=(8, 16, 32, 64))
    latency = LatencyCost(table)
    by_time = random_calibrated(model, calib, 0.5, cost=latency)
    by_flops = random_calibrated(model, calib, 0.5)
    assert not np.allclose(by_time.probs, by_flops.probs)
    batch = calib.batch(list(range(len(calib))))
    for method, cost in ((by_time, latency), (by_flops, FlopsCost(model))):
        levels = method(batch).levels
        parts = cost.parts(batch.lengths)
        got = decision_fraction(cost, levels, batch.lengths)
        # the corpus's cost over its dense cost, as the calibration defines it
        total = float((got * parts.dense).sum() / parts.dense.sum())
        assert total == pytest.approx(0.5, abs=0.05), (method.name, total)
