"""Sliced execution equals the masked reference for every unit type, in mixed batches, and FLOPs agree
with torch's FlopCounterMode on what actually runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_utils import EVERY_UNIT, random_batch, tiny_model
from torch.utils.flop_counter import FlopCounterMode

from metasparse.control.controller import Controller, ControllerSpec
from metasparse.model.encoder import Decision
from metasparse.model.flops import dense_flops, gated_flops

LENGTHS = [7, 3, 5, 1, 6, 4, 7, 2]


def _fixed_policy(levels, scores, n_patterns):
    return lambda i, x, mask: Decision(F.one_hot(levels[i], n_patterns).to(x.dtype), scores[i])


def _valid(t, mask):
    return t[mask]


@pytest.mark.parametrize("pattern", range(len(EVERY_UNIT)))
def test_sliced_equals_masked_for_each_unit_type(pattern):
    model, batch = tiny_model(), random_batch(LENGTHS)
    B, T = batch.word_mask.shape
    g = torch.Generator().manual_seed(pattern)
    levels = [torch.full((B,), pattern) for _ in model.blocks]
    scores = [torch.randn(B, T, generator=g) for _ in model.blocks]
    pol = _fixed_policy(levels, scores, model.n_patterns)
    with torch.no_grad():
        sliced = model(batch, pol, mode="sliced").logits
        masked = model(batch, pol, mode="masked").logits
        dense = model(batch).logits
    m = batch.word_mask
    for task in sliced:
        torch.testing.assert_close(_valid(sliced[task], m), _valid(masked[task], m), atol=1e-5, rtol=0)
    if model.codebook[pattern] != model.full:  # the pattern really changes the output (test is not vacuous)
        assert (_valid(sliced["upos"], m) - _valid(dense["upos"], m)).abs().max() > 1e-2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_patterns_in_one_batch(seed):
    model, batch = tiny_model(), random_batch(LENGTHS, seed=seed)
    B, T = batch.word_mask.shape
    g = torch.Generator().manual_seed(100 + seed)
    levels = [torch.randint(0, model.n_patterns, (B,), generator=g) for _ in model.blocks]
    assert all(len(torch.unique(lv)) > 2 for lv in levels)
    scores = [torch.randn(B, T, generator=g) for _ in model.blocks]
    pol = _fixed_policy(levels, scores, model.n_patterns)
    with torch.no_grad():
        sliced = model(batch, pol, mode="sliced").logits["deprel"]
        masked = model(batch, pol, mode="masked").logits["deprel"]
        for b in range(B):  # grouping does not change any example's result: batch 1 gives the same
            one = _fixed_policy([lv[b : b + 1] for lv in levels], [s[b : b + 1] for s in scores], model.n_patterns)
            alone = model(batch.select([b]), one).logits["deprel"][0, : LENGTHS[b]]
            torch.testing.assert_close(alone, sliced[b, : LENGTHS[b]], atol=1e-5, rtol=0)
    torch.testing.assert_close(sliced[batch.word_mask], masked[batch.word_mask], atol=1e-5, rtol=0)


@pytest.mark.parametrize("placement", ["per_layer", "upfront"])
def test_controller_decisions_sliced_equal_masked(placement):
    model, batch = tiny_model(), random_batch(LENGTHS)
    ctrl = Controller(model, ControllerSpec(placement=placement))
    with torch.no_grad():
        for net in ctrl.nets:
            net[2].weight.normal_(0, 1.0)
        sliced = model(batch, ctrl.policy(model), mode="sliced")
        masked = model(batch, ctrl.policy(model), mode="masked")
    assert len({int(v) for d in sliced.decisions for v in d.levels}) > 2  # the controller mixes patterns
    m = batch.word_mask
    torch.testing.assert_close(sliced.logits["upos"][m], masked.logits["upos"][m], atol=1e-5, rtol=0)


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        fn()
    return fc.get_total_flops()


@pytest.mark.parametrize("n", [1, 5, 9])
def test_analytic_flops_match_flop_counter_on_sliced_execution(n):
    model = tiny_model()
    batch = random_batch([n])
    ctrl = Controller(model)
    assert abs(_counted(lambda: model(batch)) - dense_flops(model.spec, n)) <= 0.02 * dense_flops(model.spec, n)
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        levels = [torch.randint(0, model.n_patterns, (1,), generator=g) for _ in model.blocks]
        scores = [torch.randn(1, n, generator=g) for _ in model.blocks]
        pol = _fixed_policy(levels, scores, model.n_patterns)
        counted = _counted(lambda pol=pol: model(batch, pol))
        analytic = gated_flops(model.spec, [model.codebook[int(lv)] for lv in levels], n)
        assert abs(counted - analytic) <= 0.02 * max(analytic, 1), (levels, counted, analytic)
    # With the controller in the loop: its MLPs, uncertainty head and router are counted too.
    with torch.no_grad():
        out = model(batch, ctrl.policy(model))
    patterns = [model.codebook[int(d.levels[0])] for d in out.decisions]
    counted = _counted(lambda: model(batch, ctrl.policy(model)))
    analytic = gated_flops(model.spec, patterns, n, ctrl.flops_per_layer(model, n))
    assert abs(counted - analytic) <= 0.02 * analytic, (counted, analytic)


def test_fewer_units_means_fewer_counted_flops():
    model, batch = tiny_model(), random_batch([9])
    full = _counted(lambda: model(batch, plan=[model.codebook.index(model.full)] * 3))
    half = _counted(lambda: model(batch, plan=[3] * 3))  # 0.5 heads, 0.5 FFN
    skip = _counted(lambda: model(batch, plan=[0] * 3))
    assert skip < half < 0.6 * full


@pytest.mark.parametrize("placement", ["per_layer", "upfront"])
def test_flop_counter_agrees_with_a_codebook_without_token_routing(placement):
    """The router is skipped when no pattern routes tokens; the analytic count must skip it too."""
    from model_utils import tiny_model as make

    from metasparse.model.patterns import PatternSpec

    model = make([PatternSpec(0, 0), PatternSpec(0.5, 0.5), PatternSpec(1, 1)])
    ctrl = Controller(model, ControllerSpec(placement=placement))
    with torch.no_grad():
        for net in ctrl.nets:
            net[2].weight.normal_(0, 1.0)
    batch = random_batch([6])
    with torch.no_grad():
        out = model(batch, ctrl.policy(model))
    patterns = [model.codebook[int(d.levels[0])] for d in out.decisions]
    counted = _counted(lambda: model(batch, ctrl.policy(model)))
    analytic = gated_flops(model.spec, patterns, 6, ctrl.flops_per_layer(model, 6))
    assert abs(counted - analytic) <= 0.02 * analytic, (counted, analytic)


def test_upfront_controller_runs_one_network_for_all_layers():
    model = tiny_model()
    ctrl = Controller(model, ControllerSpec(placement="upfront"))
    assert len(ctrl.nets) == 1 and ctrl.nets[0][2].out_features == len(model.blocks) * model.n_patterns
    batch = random_batch([5])
    calls, logits = [], ctrl.logits
    ctrl.logits = lambda *a, **k: calls.append(a[1]) or logits(*a, **k)  # a[1]: the layer it runs on
    with torch.no_grad():
        model(batch, ctrl.policy(model))
    assert calls == [0]


@pytest.mark.parametrize("placement", ["per_layer", "upfront"])
@pytest.mark.parametrize("task", ["upos", None])
def test_hard_decisions_are_the_argmax_of_the_probabilities_and_padding_changes_no_logit(placement, task):
    model = tiny_model()
    ctrl = Controller(model, ControllerSpec(placement=placement, uncertainty_task=task))
    with torch.no_grad():
        for net in ctrl.nets:
            net[2].weight.normal_(0, 1.0)
        record: list = []
        out = model(random_batch(LENGTHS), ctrl.policy(model, record=record))
        assert len(record) == len(out.decisions) == len(model.blocks)
        for decision, probs in zip(out.decisions, record, strict=True):
            assert torch.equal(decision.levels, probs.argmax(-1))
        # A padded batch pools only real words: each row's logits equal that sentence's alone.
        x = torch.randn(len(LENGTHS), max(LENGTHS), model.spec.d_model)
        mask = torch.arange(max(LENGTHS))[None] < torch.tensor(LENGTHS)[:, None]
        padded, _ = ctrl.logits(model, 0, x, mask, need_tokens=False)
        for i, n in enumerate(LENGTHS):
            alone, _ = ctrl.logits(model, 0, x[i : i + 1, :n], mask[i : i + 1, :n], need_tokens=False)
            torch.testing.assert_close(padded[i : i + 1], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("lengths", [LENGTHS, [7]])
def test_upfront_inference_path_decides_as_the_general_path(lengths):
    """The main job's controller (upfront, no token routing, no uncertainty feature) decides through its own
    inline closure at inference: the same levels and recorded probabilities as the general computation
    (``logits`` on the embeddings, per-layer argmax and softmax), padded batches included."""
    from model_utils import tiny_model as make

    from metasparse.model.patterns import PatternSpec

    model = make([PatternSpec(0, 0), PatternSpec(0.5, 0.5), PatternSpec(1, 1)])
    ctrl = Controller(model, ControllerSpec(placement="upfront", uncertainty_task=None))
    batch = random_batch(lengths)
    with torch.no_grad():
        for net in ctrl.nets:
            net[2].weight.normal_(0, 1.0)
        general, _ = ctrl.logits(model, 0, model.embed(batch), batch.word_mask, need_tokens=False)
        general = general.view(len(lengths), len(model.blocks), model.n_patterns)
        calls, logits = [], ctrl.logits
        ctrl.logits = lambda *a, **k: calls.append(a[1]) or logits(*a, **k)
        record: list = []
        out = model(batch, ctrl.policy(model, record=record))
    assert calls == []  # the inline path ran, not the general one
    assert len(record) == len(out.decisions) == len(model.blocks)
    for i, (decision, probs) in enumerate(zip(out.decisions, record, strict=True)):
        assert torch.equal(decision.levels, general[:, i].argmax(-1))
        torch.testing.assert_close(probs, torch.softmax(general[:, i], -1), atol=1e-6, rtol=0)
    assert len({int(v) for d in out.decisions for v in d.levels}) > 1


def test_a_batch_known_unpadded_spares_the_controller_its_padding_check():
    """``pad`` marks a batch whose rows all have ``T`` words (``Batch.unpadded``); the encoder then hands the
    policy no mask, so a controller pools without asking the mask, and decides exactly as with it. Rows
    selected from an unpadded batch stay marked; a ragged batch, or rows selected from one, are not."""
    from model_utils import tiny_model as make

    from metasparse.model.features import EncodedSentence, pad
    from metasparse.model.patterns import PatternSpec

    def sentence(n: int) -> EncodedSentence:
        return EncodedSentence(list(range(5, 5 + n)), list(range(n)), [1] * n, [[1, 2, 3]] * n)

    even, ragged = pad([sentence(2), sentence(2)]), pad([sentence(3), sentence(1)])
    assert even.unpadded and even.select([1]).unpadded
    assert not ragged.unpadded and not ragged.select([1]).unpadded
    assert not ragged.select([0]).unpadded  # no padding, but not known without asking the mask

    model = make([PatternSpec(0, 0), PatternSpec(0.5, 0.5), PatternSpec(1, 1)])
    ctrl = Controller(model, ControllerSpec(placement="upfront", uncertainty_task=None))
    batch = random_batch([6, 6, 6])
    seen: list = []
    with torch.no_grad():
        for net in ctrl.nets:
            net[2].weight.normal_(0, 1.0)
        for unpadded in (False, True):
            batch.unpadded = unpadded
            policy = ctrl.policy(model)
            out = model(batch, lambda i, x, mask, p=policy: seen.append(mask) or p(i, x, mask))
            levels = torch.stack([d.levels for d in out.decisions], 1)
            if not unpadded:
                reference = levels
    assert all(m is not None for m in seen[: len(model.blocks)])
    assert all(m is None for m in seen[len(model.blocks) :])
    assert torch.equal(levels, reference) and len(set(reference.flatten().tolist())) > 1


@pytest.mark.parametrize("lengths", [[7], LENGTHS])
def test_inference_kernels_equal_the_autograd_path(lengths):
    """Without autograd a block stacks its q/k/v prefixes into one matmul and attends with one fused SDPA
    call; with autograd it runs the plain matmuls second-order meta-learning needs. Both give the same
    output, with and without padding, for every width."""
    model, batch = tiny_model(), random_batch(lengths)
    model.eval()
    block, mask = model.blocks[0], batch.word_mask
    x = torch.randn(*mask.shape, model.spec.d_model, generator=torch.Generator().manual_seed(3))
    scores = torch.randn(*mask.shape, generator=torch.Generator().manual_seed(5))
    for pattern in model.codebook:
        reference = block.forward_sliced(x, mask, pattern, scores)
        assert reference.requires_grad or pattern.skip  # the autograd path really ran
        with torch.no_grad():
            fast = block.forward_sliced(x, mask, pattern, scores)
        torch.testing.assert_close(fast[mask], reference.detach()[mask], atol=1e-5, rtol=0)


def test_stacked_qkv_is_rebuilt_when_weights_change():
    """The stacked q/k/v copy is cached; an in-place update (an optimizer step) or a load must not leave it
    stale."""
    model, batch = tiny_model(), random_batch(LENGTHS)
    model.eval()
    block, mask, full = model.blocks[0], batch.word_mask, model.full
    x = torch.randn(*mask.shape, model.spec.d_model, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before = block.forward_sliced(x, mask, full, None)
        block.q.weight.mul_(1.5)  # in place, as an optimizer step changes it
        after_step = block.forward_sliced(x, mask, full, None)
    assert (after_step - before).abs().max() > 1e-3
    torch.testing.assert_close(after_step, block.forward_sliced(x, mask, full, None).detach(), atol=1e-5, rtol=0)
    block.load_state_dict(tiny_model().blocks[1].state_dict())
    with torch.no_grad():
        after_load = block.forward_sliced(x, mask, full, None)
    assert (after_load - after_step).abs().max() > 1e-3  # the load really changed the weights
    torch.testing.assert_close(after_load, block.forward_sliced(x, mask, full, None).detach(), atol=1e-5, rtol=0)
