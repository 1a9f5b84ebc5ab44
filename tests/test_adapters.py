"""Pathway adapters: zero at initialisation, sliced == masked with them trained, nothing flows to a unit that
is switched off, FLOPs counted as torch counts them; the adapt sets and the sparse embedding update."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from model_utils import EVERY_UNIT, random_batch, tiny_model
from torch.utils.flop_counter import FlopCounterMode

from metasparse.config import adapt_parts
from metasparse.control.controller import Controller
from metasparse.errors import ConfigValueError
from metasparse.meta.maml import MAML
from metasparse.meta.system import GatedSystem, part_of
from metasparse.model.adapters import AdapterConfig, attach_adapters
from metasparse.model.encoder import Decision
from metasparse.model.features import IGNORE_INDEX
from metasparse.model.flops import gated_flops
from metasparse.model.loss import task_loss

LENGTHS = [7, 3, 5, 1, 6]
KINDS = ["lora", "scale"]


def _labelled(lengths: list[int], seed: int = 0):
    """A random batch with random UPOS and DEPREL labels (padding ignored)."""
    batch = random_batch(lengths, seed)
    g = torch.Generator().manual_seed(seed + 1)
    B, T = batch.word_mask.shape
    batch.labels = {
        t: torch.where(batch.word_mask, torch.randint(0, k, (B, T), generator=g), IGNORE_INDEX)
        for t, k in (("upos", 17), ("deprel", 37))
    }
    return batch


def _policy(levels: list[torch.Tensor], scores: list[torch.Tensor], n_patterns: int):
    return lambda i, x, mask: Decision(F.one_hot(levels[i], n_patterns).to(x.dtype), scores[i])


def _with_adapters(kind: str, trained: bool):
    model = tiny_model()
    torch.manual_seed(1)
    attach_adapters(model, AdapterConfig(kind=kind, rank=2))
    if trained:  # values an inner loop could have reached: every adapter parameter non-zero
        with torch.no_grad():
            for n, p in model.named_parameters():
                if ".adapter." in n:
                    p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_adapters_at_their_initial_values_leave_the_backbone_unchanged(kind):
    plain, adapted, batch = tiny_model(), _with_adapters(kind, trained=False), random_batch(LENGTHS)
    B, T = batch.word_mask.shape
    levels = [torch.full((B,), 3) for _ in plain.blocks]  # half the heads and groups
    scores = [torch.randn(B, T) for _ in plain.blocks]
    m = batch.word_mask
    with torch.no_grad():
        for pol in (None, _policy(levels, scores, plain.n_patterns)):
            for mode in ("sliced", "masked"):
                if pol is None and mode == "masked":
                    continue
                a = plain(batch, pol, mode=mode).logits["upos"][m]
                b = adapted(batch, pol, mode=mode).logits["upos"][m]
                torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pattern", range(len(EVERY_UNIT)))
def test_sliced_equals_masked_with_trained_adapters(kind, pattern):
    model, batch = _with_adapters(kind, trained=True), random_batch(LENGTHS)
    B, T = batch.word_mask.shape
    g = torch.Generator().manual_seed(pattern)
    pol = _policy([torch.full((B,), pattern)] * 3, [torch.randn(B, T, generator=g) for _ in range(3)], 7)
    with torch.no_grad():
        sliced = model(batch, pol, mode="sliced").logits["deprel"][batch.word_mask]
        masked = model(batch, pol, mode="masked").logits["deprel"][batch.word_mask]
        plain = tiny_model()(batch, pol, mode="sliced").logits["deprel"][batch.word_mask]
    torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=0)
    if not model.codebook[pattern].skip:  # trained adapters really change what the active units compute
        assert (sliced - plain).abs().max() > 1e-2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["sliced", "masked"])
def test_adapters_of_switched_off_units_get_no_gradient_and_change_nothing(kind, mode):
    model, batch = _with_adapters(kind, trained=True), _labelled(LENGTHS)
    B, T = batch.word_mask.shape
    half = 3  # EVERY_UNIT[3]: heads 0.5, FFN 0.5 -> heads 0-1 and groups 0-1 of 4 run
    pol = _policy([torch.full((B,), half)] * 3, [torch.zeros(B, T)] * 3, model.n_patterns)
    loss = task_loss(model(batch, pol, mode=mode).logits, batch.labels)
    loss.backward()
    r = 2
    for block in model.blocks:
        ad = block.adapter
        if kind == "lora":
            on_off = [(ad.head_down, 2), (ad.head_up, 2 * r), (ad.ffn_down, 2), (ad.ffn_up, 2 * r)]
        else:
            dh, gs = block.d_head, block.group_size
            on_off = [(ad.head_scale, 2 * dh), (ad.ffn_scale, 2 * gs), (ad.ffn_shift, 2 * gs)]
        for p, n_on in on_off:
            assert p.grad[n_on:].abs().max() == 0  # the switched-off units' adapters
            assert p.grad[:n_on].abs().max() > 0  # the running units' adapters learn
    before = model(batch, pol).logits["upos"].detach()
    with torch.no_grad():
        for block in model.blocks:
            for p in block.adapter.parameters():
                p[p.shape[0] // 2 :] += 5.0  # move only the switched-off units' adapters
    torch.testing.assert_close(model(batch, pol).logits["upos"].detach(), before, atol=0, rtol=0)


def test_lora_adapter_flops_match_the_flop_counter():
    model, batch = _with_adapters("lora", trained=True), random_batch([9])
    for level in range(len(EVERY_UNIT)):
        pol = _policy([torch.tensor([level])] * 3, [torch.randn(1, 9)] * 3, model.n_patterns)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(batch, pol)
        analytic = gated_flops(model.spec, [model.codebook[level]] * 3, 9)
        assert abs(fc.get_total_flops() - analytic) <= 0.02 * max(analytic, 1), (level, fc.get_total_flops(), analytic)
    plain = gated_flops(tiny_model().spec, [model.full] * 3, 9)
    assert gated_flops(model.spec, [model.full] * 3, 9) > plain  # the adapters' cost is counted


def test_adapt_sets_name_their_parts_and_refuse_unknown_ones():
    assert adapt_parts("controller") == ["controller"]
    assert adapt_parts("controller+adapters+heads") == ["controller", "adapters", "heads"]
    assert adapt_parts("light") == ["controller", "adapters", "heads", "norms", "embeddings"]
    assert adapt_parts("controller+head+norm") == ["controller", "heads", "norms"]  # the older names still read
    with pytest.raises(ConfigValueError, match="meta.adapt"):
        adapt_parts("controller+router")
    names = dict(GatedSystem(_with_adapters("lora", False), Controller(tiny_model())).named_parameters())
    assert part_of("backbone.blocks.1.adapter.head_up") == "adapters"
    assert part_of("backbone.blocks.0.ln2.weight") == "norms" and part_of("backbone.final_ln.bias") == "norms"
    assert part_of("backbone.word_emb.weight") == "embeddings" and part_of("backbone.pos_emb.weight") is None
    assert part_of("backbone.blocks.0.q.weight") is None and "backbone.blocks.0.q.weight" in names


def test_the_embedding_update_touches_only_the_support_sets_rows():
    model = tiny_model()
    system = GatedSystem(model, Controller(model))
    for p in system.parameters():
        p.requires_grad_(False)
    emb = lambda n: n.startswith("backbone.") and n.endswith("_emb.weight") and "pos" not in n  # noqa: E731
    algo = MAML(system, 0.5, first_order=True, adapt=emb, inner_only=emb)
    batch = _labelled([4, 3])
    learner = algo.clone()
    learner.adapt(task_loss(learner(batch).logits, batch.labels))
    before = dict(system.named_parameters())
    used = {
        "backbone.subword_emb.weight": set(batch.input_ids[batch.word_index >= 0].tolist()),
        "backbone.word_emb.weight": set(batch.word_hash[batch.word_mask].tolist()),
        "backbone.suffix_emb.weight": set(batch.suffix_hash[batch.word_mask].reshape(-1).tolist()),
    }
    for name, rows in used.items():
        changed = set((learner.fast[name] - before[name]).abs().sum(1).nonzero().squeeze(1).tolist())
        assert changed and changed <= rows, name  # only rows the support batch looks up move
    assert all(p.grad is None for p in system.parameters())  # and nothing reaches the backbone itself


@pytest.mark.parametrize("kind", KINDS)
def test_static_pruning_reorders_each_units_adapter_with_its_unit(kind):
    from metasparse.baselines.units import KeptUnits, reorder_units

    model, batch = _with_adapters(kind, trained=True), random_batch(LENGTHS)
    kept = KeptUnits(heads=[[3, 1], [0, 2, 1], [2]], groups=[[1], [3, 0], [2, 1, 0]])
    reordered = reorder_units(model, kept)
    with torch.no_grad():  # a permutation of units, adapters included, leaves the dense function unchanged
        a, b = model(batch).logits["upos"], reordered(batch).logits["upos"]
    torch.testing.assert_close(a[batch.word_mask], b[batch.word_mask], atol=1e-5, rtol=0)


def test_the_adam_inner_step_matches_torch_adam_and_leaves_untouched_rows_alone():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    ref = copy.deepcopy(lin)
    algo = MAML(lin, 0.01, first_order=True, inner_optimizer="adam")
    learner = algo.clone()
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    for _ in range(5):
        learner.adapt(((learner(x) - y) ** 2).mean())
        opt.zero_grad()
        ((ref(x) - y) ** 2).mean().backward()
        opt.step()
    torch.testing.assert_close(learner.fast["weight"], ref.weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(learner.fast["bias"], ref.bias, atol=1e-6, rtol=0)

    emb = torch.nn.Embedding(10, 4)
    algo = MAML(emb, 0.1, first_order=True, inner_optimizer="adam")
    learner = algo.clone()
    for _ in range(3):
        learner.adapt(learner(torch.tensor([1, 3])).pow(2).sum())
    moved = (learner.fast["weight"] != emb.weight).any(1).nonzero().squeeze(1).tolist()
    assert moved == [1, 3]


def test_the_row_sparse_embedding_step_equals_the_dense_one_and_leaves_the_module_alone():
    """First-order SGD steps the inner-only tables row-sparsely in a private copy; the same steps taken
    densely (the second-order clone keeps the dense, differentiable path) give the same weights."""
    model = tiny_model()
    system = GatedSystem(model, Controller(model))
    for p in system.parameters():
        p.requires_grad_(False)
    emb = lambda n: n.startswith("backbone.") and n.endswith("_emb.weight") and "pos" not in n  # noqa: E731
    light = lambda n: emb(n) or n.startswith("backbone.heads.")  # noqa: E731
    algo = MAML(system, 0.5, first_order=True, adapt=light, inner_only=light)
    batch = _labelled([4, 3, 5])
    start = {n: p.detach().clone() for n, p in system.named_parameters()}
    sparse, dense = algo.clone(), algo.clone(first_order=False)
    assert sorted(sparse.row_rates) == sorted(n for n in algo.adapt_names if emb(n)) and not dense.row_rates
    for step in range(3):
        for learner in (sparse, dense):
            torch.manual_seed(step)  # the same relaxed (Gumbel) decisions for both
            learner.adapt(task_loss(learner(batch).logits, batch.labels))
    for n in algo.adapt_names:
        torch.testing.assert_close(sparse.fast[n], dense.fast[n], atol=1e-6, rtol=0)
        assert not torch.equal(sparse.fast[n], start[n]), n  # every part moved
    for n, p in system.named_parameters():  # the module's own tables are untouched
        assert torch.equal(p, start[n]), n
    assert not any(m.sparse for m in (model.subword_emb, model.word_emb, model.suffix_emb))  # flags restored
