"""Per-token early exit: the packed execution equals the masked reference, exited tokens' states stay as
they were when they exited (while still serving as keys and values), and FLOPs count what runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_utils import EVERY_UNIT, random_batch, tiny_model
from torch.utils.flop_counter import FlopCounterMode

from metasparse.model.encoder import Decision
from metasparse.model.flops import exit_flops, gated_flops, token_score_flops
from metasparse.model.patterns import PatternSpec
from metasparse.scoring.methods import PlanMethod

LENGTHS = [7, 3, 5, 1, 6, 4, 7, 2]


def _median_uncertainty_after_layer0(criterion: str = "upos") -> float:
    model, batch = tiny_model(exit_criterion=criterion), random_batch(LENGTHS)
    with torch.no_grad():
        x = model.blocks[0].forward_sliced(model.embed(batch), batch.word_mask, model.full, None)
        u = model.exit_uncertainty(x)[batch.word_mask].sort().values
        k = len(u) // 2  # halfway between two tokens: no token sits on the threshold, where float noise decides
        return float((u[k - 1] + u[k]) / 2)


@pytest.fixture(scope="module", params=["upos", "all"])
def exit_model(request):
    """The tiny model with exit variants of every unit type, thresholded so that about half the tokens exit,
    under each exit criterion (the UPOS head's entropy; the largest over every task head's)."""
    t = _median_uncertainty_after_layer0(request.param)
    extra = [
        PatternSpec(1.0, 1.0, exit=t),
        PatternSpec(0.5, 0.5, exit=t),
        PatternSpec(1.0, 1.0, tokens=0.5, exit=t),
        PatternSpec(0.75, 0.75, topk=2, exit=t),
        PatternSpec(0.0, 0.0, exit=t),  # a skipped layer can still let tokens go
    ]
    return tiny_model(EVERY_UNIT + extra, exit_criterion=request.param)


def _policy(levels, scores, n):
    return lambda i, x, mask: Decision(F.one_hot(levels[i], n).to(x.dtype), scores[i])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("lengths", [LENGTHS, [6]])
def test_packed_early_exit_equals_the_masked_reference(exit_model, seed, lengths):
    model, batch = exit_model, random_batch(lengths, seed=seed)
    B, T = batch.word_mask.shape
    g = torch.Generator().manual_seed(seed)
    exits = [i for i, p in enumerate(model.codebook) if p.exit is not None]
    # a mix per row: exit patterns early so later layers see exited tokens, any pattern later
    levels = [torch.tensor(exits)[torch.randint(0, len(exits), (B,), generator=g)]]
    levels += [torch.randint(0, model.n_patterns, (B,), generator=g) for _ in model.blocks[1:]]
    scores = [torch.randn(B, T, generator=g) for _ in model.blocks]
    pol = _policy(levels, scores, model.n_patterns)
    with torch.no_grad():
        sliced = model(batch, pol, mode="sliced")
        masked = model(batch, pol, mode="masked")
    m = batch.word_mask
    for task in sliced.logits:
        torch.testing.assert_close(sliced.logits[task][m], masked.logits[task][m], atol=1e-5, rtol=1e-5)
    if sliced.exited_at is None:  # no token passed the threshold: neither path may report an exit
        assert masked.exited_at is None and masked.active_counts is None and sliced.active_counts is None
    else:
        assert torch.equal(sliced.exited_at, masked.exited_at)
        assert torch.equal(sliced.active_counts, masked.active_counts)


def test_exited_tokens_keep_their_state_and_still_serve_as_keys(exit_model):
    model, batch = exit_model, random_batch(LENGTHS, seed=3)
    B, T = batch.word_mask.shape
    mask = batch.word_mask
    exit_full = next(i for i, p in enumerate(model.codebook) if p.exit is not None and p.n_heads == 4 and p.tokens == 1)
    full = model.codebook.index(model.full)
    plan = [exit_full, full, full]
    with torch.no_grad():
        out = model(batch, plan=plan)
        x0 = model.blocks[0].forward_sliced(model.embed(batch), mask, model.full, None)
    exited = out.exited_at == 0
    assert exited.any() and (mask & ~exited).any()  # about half went
    assert (out.exited_at[mask & ~exited] == len(model.blocks)).all()
    # an exited token's final state is its state after layer 0
    torch.testing.assert_close(out.hidden[exited], model.final_ln(x0)[exited], atol=1e-6, rtol=1e-6)
    # the running tokens still attend to the exited ones: removing the exited tokens as keys changes them
    with torch.no_grad():
        alone = model.blocks[1].forward_sliced(x0, mask & ~exited, model.full, None)
        packed = model.blocks[1].forward_sliced(x0, mask, model.full, None, mask & ~exited)
    running = mask & ~exited
    assert not torch.allclose(alone[running], packed[running], atol=1e-4)
    assert torch.equal(packed[exited], x0[exited])
    assert out.active_counts[:, 0].tolist() == mask.sum(1).tolist()
    assert out.active_counts[:, 1].tolist() == running.sum(1).tolist()


def test_threshold_zero_lets_no_token_go():
    model = tiny_model(EVERY_UNIT + [PatternSpec(1.0, 1.0, exit=0.0)])
    batch = random_batch(LENGTHS)
    ex, full = model.n_patterns - 1, model.codebook.index(model.full)
    with torch.no_grad():
        a, b = model(batch, plan=[ex, ex, ex]), model(batch, plan=[full, full, full])
    assert a.exited_at is None and a.active_counts is None
    torch.testing.assert_close(a.logits["upos"], b.logits["upos"])


@pytest.mark.parametrize("n", [1, 6, 9])
def test_flops_with_exits_match_the_flop_counter(exit_model, n):
    model, batch = exit_model, random_batch([n], seed=n)
    exits = [i for i, p in enumerate(model.codebook) if p.exit is not None and p.topk is None]
    for first in exits:
        plan = [first, exits[0], model.codebook.index(model.full)]
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            out = model(batch, plan=plan)
        running = None if out.active_counts is None else out.active_counts[0].tolist()
        analytic = gated_flops(model.spec, [model.codebook[i] for i in plan], n, 0, running)
        if model.codebook[first].tokens < 1.0:  # a static plan scores tokens with the UPOS head: one pass
            analytic += token_score_flops(model.spec, n)
        assert fc.get_total_flops() == analytic, (first, running)
        assert PlanMethod(model, plan)(batch).flops[0] == analytic


def test_the_all_tasks_criterion_waits_until_every_head_is_sure():
    """``exit_criterion=all``: a token's exit uncertainty is the largest of every task head's normalised
    entropy, so it exits only where each head alone would let it; an exit check runs every head."""
    from metasparse.model.uncertainty import normalized_entropy

    upos, every = (tiny_model(exit_criterion=c) for c in ("upos", "all"))
    batch = random_batch(LENGTHS)
    with torch.no_grad():
        x = every.blocks[0].forward_sliced(every.embed(batch), batch.word_mask, every.full, None)
        h = every.final_ln(x)
        per_head = {t: normalized_entropy(head(h)) for t, head in every.heads.items()}
        u_all, u_upos = every.exit_uncertainty(x), upos.exit_uncertainty(x)
    assert torch.equal(u_upos, per_head["upos"])
    assert torch.equal(u_all, torch.maximum(per_head["upos"], per_head["deprel"]))
    m = batch.word_mask
    assert (u_all[m] > u_upos[m]).any()  # DEPREL is the less sure head somewhere: the criteria differ
    n, d = 5, every.spec.d_model
    assert exit_flops(upos.spec, n) == 2 * n * d * 17
    assert exit_flops(every.spec, n) == 2 * n * d * (17 + 37)


def test_an_unknown_exit_criterion_is_refused_by_name():
    from metasparse.config.evaluation import ExitBenchOptions
    from metasparse.model.spec import ModelConfig

    with pytest.raises(ValueError, match="model.exit_criterion"):
        ModelConfig(exit_criterion="deprel")
    with pytest.raises(ValueError, match="exits.criterion"):
        ExitBenchOptions(criterion="deprel")
    with pytest.raises(ValueError, match="model.exit_criterion"):
        tiny_model(exit_criterion="max")
