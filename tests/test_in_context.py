"""The cost table's calibration to whole forwards: uniform plans priced at their measured forward times,
scales pooled over lengths, implausible scales clipped with a warning, and measured tables carrying it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from model_utils import hand_made_table, tiny_model

from metasparse.baselines.latency_static import latency_knapsack
from metasparse.control.budget import LatencyCost, decision_fraction, expected_fraction
from metasparse.runtime.cost_measure import measure
from metasparse.runtime.costs import CostTable
from metasparse.runtime.in_context import context_scales, pattern_weights


def _calibrated(model, scale_of, fixed_in_context=0.3, outlier=None, single_scale=None):
    """A hand-made table (cells: 1 ms a call per unit share, skip 0) with ``context_ms`` built so that
    pattern p runs ``scale_of(p)`` times its cells inside whole forwards, the fixed part at
    ``fixed_in_context``; ``outlier``: (length bucket, pattern, factor) for one noisy bucket;
    ``single_scale``: the same scale for every pattern on a single layer (``single_ms``)."""
    share = lambda p: (p.n_heads + p.n_groups) / (model.spec.heads + model.spec.ffn_groups)  # noqa: E731
    t = hand_made_table(model, lambda p, n, b: share(p) * n / 4, lengths=(4, 8, 16), fixed_ms=0.5)
    L = len(model.blocks)
    ctx = np.array(
        [[[fixed_in_context + scale_of(p) * L * share(p) * n / 4 for p in model.codebook] for n in t.lengths]]
    )
    if outlier is not None:
        ti, p, factor = outlier
        ctx[0, ti, p] *= factor
    t.context_ms = ctx.tolist()
    if single_scale is not None:
        one = [[[fixed_in_context + single_scale * share(p) * n / 4 for p in model.codebook] for n in t.lengths]]
        t.single_ms, t.pattern_weights = one, pattern_weights(model)
    return t


def test_a_uniform_plan_is_priced_at_its_whole_forward_time():
    """Wide patterns slower in context than alone (1.4x), narrow ones as timed (1.0x): every uniform plan's
    prediction equals its forward's time, and a mixed plan reads each pattern's own scale."""
    model = tiny_model()
    full = model.codebook.index(model.full)
    scale_of = lambda p: 1.4 if p == model.full else 1.0  # noqa: E731
    t = _calibrated(model, scale_of)
    L = len(model.blocks)
    for p in range(model.n_patterns):
        for ti, n in enumerate(t.lengths):
            assert t.predict_ms([[p]] * L, n) == pytest.approx(t.context_ms[0][ti][p])
    narrow = next(i for i, p in enumerate(model.codebook) if not p.skip and i != full)
    mixed = t.predict_ms([[full]] + [[narrow]] * (L - 1), 8)
    alone = CostTable(**{**t.__dict__, "context_ms": []})  # the same cells, uncalibrated
    skip = next(i for i, p in enumerate(model.codebook) if p.skip)
    cell = lambda p: (alone.predict_ms([[p]] * L, 8) - alone.predict_ms([[skip]] * L, 8)) / L  # noqa: E731
    assert mixed == pytest.approx(0.3 + 1.4 * cell(full) + (L - 1) * cell(narrow))
    # the calibrated dense forward is dearer, so a narrow plan's ratio against it falls
    ratio = lambda tab: tab.predict_ms([[narrow]] * L, 8) / tab.predict_ms([[full]] * L, 8)  # noqa: E731
    assert ratio(t) < ratio(alone)


def test_one_noisy_length_bucket_does_not_move_the_scale():
    model = tiny_model()
    full = model.codebook.index(model.full)
    t = _calibrated(model, lambda p: 1.2, outlier=(1, full, 1.5))
    scale, single, fixed = context_scales(
        np.asarray(t.layer_ms), np.asarray(t.fixed_ms), np.asarray(t.context_ms), t.codebook
    )
    assert single is None  # no single-layer forwards in this table
    live = [i for i, p in enumerate(model.codebook) if not p.skip]
    assert np.allclose(scale[0][:, live], 1.2)  # the median over three lengths ignores the one outlier
    assert np.allclose(fixed, 0.3)  # the all-skip forward's time, not the cell timed alone (0.5)


def test_an_implausible_scale_is_clipped_and_reported(caplog):
    model = tiny_model()
    t = _calibrated(model, lambda p: 9.0)
    with caplog.at_level(logging.WARNING, logger="metasparse.runtime.in_context"):
        scale, _, _ = context_scales(
            np.asarray(t.layer_ms), np.asarray(t.fixed_ms), np.asarray(t.context_ms), t.codebook
        )
    assert scale.max() == 4.0 and "clipped" in caplog.text


def test_a_measured_table_is_calibrated_to_forwards_and_round_trips():
    model = tiny_model()
    t = measure(model, batches=(1, 4), lengths=(4, 8), rounds=2, min_ms=0.1, threads=1)
    ctx = np.asarray(t.context_ms)
    assert ctx.shape == (2, 2, model.n_patterns) and (ctx > 0).all()
    again = CostTable.from_json(t.to_json())
    assert again == t
    plan = [[0]] * len(model.blocks)
    assert again.predict_ms(plan, 8) == t.predict_ms(plan, 8)
    wrong = json.loads(t.to_json())
    wrong["context_ms"] = [[[1.0]]]  # one pattern where the codebook has several
    with pytest.raises(ValueError, match="bad.json: .*context_ms"):
        CostTable.from_json(json.dumps(wrong), "bad.json")


def test_a_plan_reading_fewer_weights_is_priced_towards_its_single_layer_time():
    """Full layers run 1.4x their cells on every layer and 1.0x on a single layer: a plan running one full
    layer is priced at its single-layer forward, the all-full plan at its uniform one, and a plan in
    between by where its footprint lies; hard decisions and one-hot expectations agree on it."""
    model = tiny_model()
    L, full = len(model.blocks), model.codebook.index(model.full)
    skip = next(i for i, p in enumerate(model.codebook) if p.skip)
    t = _calibrated(model, lambda p: 1.4 if p == model.full else 1.0, single_scale=1.0)
    n, ti = 8, 1  # the 8-word length bucket
    assert t.predict_ms([[full]] * L, n) == pytest.approx(t.context_ms[0][ti][full])
    assert t.predict_ms([[full]] + [[skip]] * (L - 1), n) == pytest.approx(t.single_ms[0][ti][full])
    cell = (t.context_ms[0][ti][full] - 0.3) / 1.4 / L  # one full layer's cell
    two = t.predict_ms([[full], [full]] + [[skip]] * (L - 2), n)  # footprint 2 of 1..L: halfway when L = 3
    assert two == pytest.approx(0.3 + 2 * cell * (1.0 + 0.4 * (2 - 1) / (L - 1)))
    cost, lengths = LatencyCost(t, 1), torch.tensor([n, n])
    levels = torch.tensor([[full, full] + [skip] * (L - 2), [full] * L])
    one_hot = [torch.nn.functional.one_hot(levels[:, i], model.n_patterns).float() for i in range(L)]
    hard = decision_fraction(cost, levels, lengths)
    assert torch.allclose(expected_fraction(cost, one_hot, lengths), hard)
    shared = decision_fraction(cost, levels[:1].expand(2, -1), lengths)  # a batch that shares one plan
    assert shared[0] * t.predict_ms([[full]] * L, n) == pytest.approx(two, rel=1e-5)
    logits = torch.zeros(2, model.n_patterns, requires_grad=True)  # the price is detached, not the gradient
    expected_fraction(cost, [logits.softmax(-1)] * L, lengths).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_the_knapsack_meets_the_target_at_its_plans_own_footprint():
    """Single layers far cheaper than on every layer (0.5x): priced as on every layer a plan keeps fewer
    units than the target allows; re-priced at its footprint the knapsack keeps more, and the plan it
    returns meets the target as :meth:`CostTable.predict_ms` prices it."""
    model = tiny_model()
    L = len(model.blocks)
    t = _calibrated(model, lambda p: 1.0, single_scale=0.5)
    values = np.tile(np.arange(model.n_patterns, dtype=float), (L, 1))  # wider keeps more, in every layer
    as_uniform = CostTable(**{**t.__dict__, "single_ms": [], "pattern_weights": []})
    lengths, target = [8] * 4, 0.5
    plain = latency_knapsack(model, values, as_uniform, lengths, target)
    aware = latency_knapsack(model, values, t, lengths, target)
    assert aware.value > plain.value
    full = model.codebook.index(model.full)
    ratio = t.predict_ms([[p] for p in aware.levels], 8) / t.predict_ms([[full]] * L, 8)
    assert ratio == pytest.approx(aware.latency_fraction, rel=1e-4) and ratio <= target + 1e-6


def test_a_stream_of_changing_plans_is_priced_at_the_union_of_consecutive_plans():
    """Two plans, each one full layer on a different layer, alone priced at the single-layer forward: in a
    stream alternating between them each forward reads both layers' weights, so a forward priced with
    the plan before it costs a footprint of 2, and the budget prices each example's plan against its
    batch's mix (a batch sharing one plan at its own footprint, an alternating one at 1.5 on average)."""
    model = tiny_model()
    L, full = len(model.blocks), model.codebook.index(model.full)
    skip = next(i for i, p in enumerate(model.codebook) if p.skip)
    t = _calibrated(model, lambda p: 1.4 if p == model.full else 1.0, single_scale=1.0)
    n, ti = 8, 1
    cell = (t.context_ms[0][ti][full] - 0.3) / 1.4 / L  # one full layer's cell
    at = lambda footprint: 0.3 + cell * (1.0 + 0.4 * (footprint - 1) / (L - 1))  # noqa: E731
    a = [[full]] + [[skip]] * (L - 1)
    b = [[skip], [full]] + [[skip]] * (L - 2)
    assert t.predict_ms(a, n) == pytest.approx(t.single_ms[0][ti][full])
    assert t.predict_ms(a, n, previous=a) == pytest.approx(t.predict_ms(a, n))  # the same plan again
    assert t.predict_ms(a, n, previous=b) == pytest.approx(at(2.0))

    cost, lengths = LatencyCost(t, 1), torch.tensor([n, n])
    dense = t.predict_ms([[full]] * L, n)
    plan_a, plan_b = [full] + [skip] * (L - 1), [skip, full] + [skip] * (L - 2)
    shared = decision_fraction(cost, torch.tensor([plan_a, plan_a]), lengths)
    assert shared[0] * dense == pytest.approx(at(1.0), rel=1e-5)
    alternating = decision_fraction(cost, torch.tensor([plan_a, plan_b]), lengths)
    assert alternating[0] * dense == pytest.approx(at(1.5), rel=1e-5)  # half the time after the other plan
    probs = [
        torch.nn.functional.one_hot(torch.tensor([x, y]), model.n_patterns).float()
        for x, y in zip(plan_a, plan_b, strict=True)
    ]
    assert torch.allclose(expected_fraction(cost, probs, lengths), alternating)
