"""The latency-aware static baseline (HALP-style): the knapsack is exact, the pruned backbone keeps the
most important units of the chosen pattern, and it meets its budget in predicted time, not FLOPs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from model_utils import hand_made_table, random_batch, tiny_model

from metasparse.baselines.latency_static import latency_knapsack, latency_pruned, layer_values, solve_knapsack
from metasparse.model.patterns import PatternSpec
from metasparse.runtime.costs import CostTable

CODEBOOK = [PatternSpec(0.0, 0.0), PatternSpec(0.5, 0.5), PatternSpec(1.0, 1.0, tokens=0.5), PatternSpec(1.0, 1.0)]


def _brute_force(values, costs_, capacity):
    best, arg = -np.inf, None
    for combo in itertools.product(range(values.shape[1]), repeat=values.shape[0]):
        c = sum(costs_[i, p] for i, p in enumerate(combo))
        v = sum(values[i, p] for i, p in enumerate(combo))
        if c <= capacity and v > best:
            best, arg = v, list(combo)
    return best, arg


@pytest.mark.parametrize("seed", range(6))
def test_knapsack_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    values, costs_ = rng.random((4, 5)), rng.random((4, 5)) * 10
    capacity = float(costs_.min(1).sum() + rng.random() * 15)
    levels = solve_knapsack(values, costs_, capacity)
    best, _ = _brute_force(values, costs_, capacity)
    assert sum(costs_[i, p] for i, p in enumerate(levels)) <= capacity
    # exact up to the grid's rounding (costs rounded up to 1/4000 of the capacity can exclude a tight optimum)
    assert sum(values[i, p] for i, p in enumerate(levels)) >= best - 0.05 * abs(best)


def test_knapsack_refuses_an_impossible_budget():
    assert solve_knapsack(np.ones((2, 2)), np.full((2, 2), 5.0), 9.0) is None


def _table(model, skip_ms: float, layer_ms: float) -> CostTable:
    """Every layer: skip costs ``skip_ms``; other patterns cost ``layer_ms`` x (0.5 + 0.5 x their unit share):
    a floor, narrow is not free."""
    share = lambda p: (p.n_heads + p.n_groups) / (model.spec.heads + model.spec.ffn_groups)  # noqa: E731
    return hand_made_table(model, lambda p, n, b: skip_ms if p.skip else layer_ms * (0.5 + 0.5 * share(p)))


def test_latency_knapsack_skips_layers_when_narrow_is_barely_cheaper():
    model = tiny_model(CODEBOOK)
    values = layer_values(model, torch.ones(3, 4), torch.ones(3, 4))
    assert values[0, 2] == -np.inf  # token routing is not a unit choice
    table = _table(model, skip_ms=0.0, layer_ms=1.0)
    # dense: 3 layers x 1.0 + 0.5 = 3.5 ms; half-width layers cost 0.75 each. Budget 0.5: 1.75 ms, so
    # 1.25 ms for layers: one full layer (1.0) or one half layer (0.75), never two half layers (1.5).
    choice = latency_knapsack(model, values, table, [8, 8], 0.5)
    assert sorted(choice.levels) == [0, 0, 3] and choice.latency_fraction <= 0.5
    with pytest.raises(ValueError, match="below what skipping every layer costs"):
        latency_knapsack(model, values, table, [8], 0.1)


class _TwoSentences:
    """A calibration corpus of two 8-word sentences (all the knapsack reads of it)."""

    def lengths(self):
        return np.array([8, 8])


def test_latency_pruned_keeps_the_most_important_units(monkeypatch):
    import metasparse.baselines.latency_static as LS

    model = tiny_model(CODEBOOK)
    head_imp = torch.tensor([[1.0, 9.0, 2.0, 8.0], [5.0, 4.0, 3.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    group_imp = torch.tensor([[3.0, 1.0, 7.0, 2.0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    monkeypatch.setattr(LS, "unit_importance", lambda m, corpus: (head_imp, group_imp))

    table = _table(model, skip_ms=0.0, layer_ms=1.0)
    # dense 3.5 ms, budget 0.8: 2.3 ms for layers. Full layers 0 and 1 (2.0 ms) keep 33 + 24 of importance;
    # three half layers (2.25 ms) keep 27 + 16 + 4; full + two halves (2.5 ms) does not fit.
    m = latency_pruned(model, None, _TwoSentences(), 0.80, table)
    assert [(p.n_heads, p.n_groups) for p in m.patterns] == [(4, 4), (4, 4), (0, 0)]
    blk, ref = m.model.blocks[0], model.blocks[0]
    dh = blk.d_head
    assert torch.equal(blk.q.weight[:dh], ref.q.weight[dh : 2 * dh])  # head 1, the most important, first
    assert torch.equal(blk.q.weight[dh : 2 * dh], ref.q.weight[3 * dh : 4 * dh])  # then head 3
    b = random_batch([5, 3])
    out = m(b)
    assert out.flops[0] < out.dense_flops[0]
    plan = model.forward_with(b, lambda i, blk, x, mask: x if i == 2 else blk.forward_sliced(x, mask, model.full, None))
    for t in out.logits:  # reordering inside full layers changes nothing: the same as skipping layer 2
        torch.testing.assert_close(out.logits[t][b.word_mask], plan.logits[t][b.word_mask], atol=1e-5, rtol=1e-5)


def _mix_setup(monkeypatch, target):
    import metasparse.baselines.latency_mix as LM

    model = tiny_model(CODEBOOK)
    head_imp = torch.tensor([[1.0, 9.0, 2.0, 8.0], [5.0, 4.0, 3.0, 2.0], [1.0, 6.0, 1.5, 1.0]])
    group_imp = torch.tensor([[3.0, 1.0, 7.0, 2.0], [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 1.0, 5.0]])
    monkeypatch.setattr(LM, "unit_importance", lambda m, corpus: (head_imp, group_imp))

    table = _table(model, skip_ms=0.0, layer_ms=1.0)
    return model, LM.latency_mixed(model, None, _TwoSentences(), target, table), table, (head_imp, group_imp)


def test_latency_mix_spends_the_budget_between_two_knapsack_steps(monkeypatch):
    """At a budget between two structures the knapsack can reach, the mix draws the broad one for the share
    of sentences that brings the expected predicted latency to the budget."""
    model, mix, table, _ = _mix_setup(monkeypatch, 0.5)
    lean, broad = mix.plans.tolist()
    c = table.per_example([8, 8], 1)
    dense, fixed = float(c["dense"].sum()), float(c["fixed"].sum())
    cost = lambda plan: (fixed + sum(float(c["layers"][li, :, p].sum()) for li, p in enumerate(plan))) / dense  # noqa: E731
    assert cost(lean) <= 0.5 < cost(broad)
    assert (1 - mix.share) * cost(lean) + mix.share * cost(broad) == pytest.approx(0.5, abs=1e-6)
    assert 0 < mix.share < 1


def test_latency_mix_runs_each_sentence_as_its_static_structure_would(monkeypatch):
    """Both structures run on one reordered backbone as prefix patterns: each sentence's labels equal the
    latency-aware static structure's that it drew, and its draw does not depend on the batch around it."""
    import metasparse.baselines.latency_static as LS

    model, mix, table, imp = _mix_setup(monkeypatch, 0.5)
    monkeypatch.setattr(LS, "unit_importance", lambda m, corpus: imp)
    b = random_batch([5, 3, 6, 4, 7, 2, 5, 6], seed=3)
    out = mix.forward(b)
    levels = torch.stack([d.levels for d in out.decisions], 1)
    lean, broad = mix.plans
    assert {tuple(r) for r in levels.tolist()} == {tuple(lean.tolist()), tuple(broad.tolist())}
    for plan in (lean, broad):
        static = LS.StaticMethod(*_kept_model(model, imp, [model.codebook[p] for p in plan.tolist()]), "ref").forward(b)
        rows = (levels == plan).all(1)
        for t in out.logits:
            m = b.word_mask[rows]
            torch.testing.assert_close(out.logits[t][rows][m], static.logits[t][rows][m], atol=1e-5, rtol=1e-5)
    alone = torch.stack([d.levels for d in mix.forward(b.select([2])).decisions], 1)
    assert torch.equal(alone[0], levels[2])


def _kept_model(model, imp, patterns):
    from metasparse.baselines.units import KeptUnits, reorder_units

    order = lambda x, li, n: torch.argsort(x[li], descending=True, stable=True)[:n].tolist()  # noqa: E731
    kept = KeptUnits(
        [order(imp[0], li, p.n_heads) for li, p in enumerate(patterns)],
        [order(imp[1], li, p.n_groups) for li, p in enumerate(patterns)],
    )
    return reorder_units(model, kept), kept.patterns()
