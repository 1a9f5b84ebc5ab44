"""The cost table and the latency budget: storage round trip, stale tables re-measured (never used),
interpolation, gradients into the pattern logits, and calibration in the budget's unit."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from model_utils import hand_made_table, random_batch, tiny_model

from metasparse.control.budget import (
    FlopsCost,
    LatencyCost,
    budget_penalty,
    decision_fraction,
    expected_flops_fraction,
    expected_fraction,
)
from metasparse.control.controller import Controller
from metasparse.runtime import cost_measure, cost_store, identity
from metasparse.runtime.controller_timing import controller_signature
from metasparse.runtime.cost_measure import measure
from metasparse.runtime.cost_store import load_or_measure
from metasparse.runtime.costs import CostTable
from metasparse.runtime.identity import machine_fingerprint
from metasparse.runtime.synthetic import synthetic_batch


@pytest.fixture(scope="module")
def table() -> CostTable:
    return measure(tiny_model(), batches=(1, 8), lengths=(4, 8, 16), rounds=2, min_ms=0.1, threads=1)


def _synthetic_table(model) -> CostTable:
    """A hand-made table: pattern cost grows with its units, linear in length."""
    share = lambda p: (p.n_heads + p.n_groups) / (model.spec.heads + model.spec.ffn_groups)  # noqa: E731
    return hand_made_table(
        model,
        lambda p, n, b: b * (0.1 + share(p) * n / 8),
        lengths=(4, 8, 16),
        batches=(1, 8),
        fixed_ms=0.2,  # per length bucket below: constant, enough for these tests
        controller_ms=0.01,
    )


def test_measured_table_has_a_positive_time_for_every_cell(table):
    model = tiny_model()
    import numpy as np

    arr = np.asarray(table.layer_ms)
    assert arr.shape == (len(model.blocks), 2, 3, model.n_patterns)
    skip = [i for i, p in enumerate(model.codebook) if p.skip]
    live = [i for i in range(model.n_patterns) if i not in skip]
    assert (arr[..., live] > 0).all() and (np.asarray(table.fixed_ms) > 0).all()
    split = np.asarray(table.grouping_ms)  # batch buckets (1, 8): nothing to split in a batch of one
    assert split.shape == (2, 3) and (split[0] == 0).all() and (split[1] > 0).all()
    assert table.threads == 1 and table.machine == machine_fingerprint() and table.rounds == 2


def test_table_round_trips_through_json(table):
    again = CostTable.from_json(table.to_json())
    assert again == table
    c1, c2 = table.per_example([3, 9, 40], 1), again.per_example([3, 9, 40], 1)
    assert all(torch.equal(c1[k], c2[k]) for k in c1)


def test_a_broken_table_names_its_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="bad.json: not a metasparse cost table"):
        CostTable.from_json(path.read_text(), str(path))
    good = json.loads(_synthetic_table(tiny_model()).to_json())
    path.write_text(json.dumps({**good, "grouping_ms": [[0.1]]}))  # a grouping row of the wrong shape
    with pytest.raises(ValueError, match="bad.json: .*grouping_ms"):
        CostTable.from_json(path.read_text(), str(path))


def test_interpolation_between_buckets_and_beyond():
    model = tiny_model()
    t = _synthetic_table(model)
    full = t.full_index()
    c = t.per_example([4, 6, 8, 16, 32, 2], batch=1)
    layer0 = c["layers"][0, :, full]
    assert torch.allclose(layer0[1], (layer0[0] + layer0[2]) / 2)  # 6 words: halfway between 4 and 8
    assert torch.allclose(layer0[4], 2 * layer0[3])  # past the last bucket: proportional to length
    assert torch.allclose(layer0[5], layer0[0])  # below the first bucket: its value
    per_sentence_at_8 = t.per_example([8], batch=8)["dense"]
    assert torch.allclose(per_sentence_at_8, t.per_example([8], batch=1)["dense"])  # b x ms / b sentences
    assert t.batch_bucket(32) == 1 and t.batch_bucket(2) == 0


def test_a_batch_is_priced_by_the_groups_that_run_together():
    """Sentences of one batch that chose different patterns run as separate calls (model.grouped), each
    priced at its own size, interpolated between batch buckets; a skipped layer costs its skip cell; a
    layer split into groups also pays the split (grouping row: 0.4 ms for a batch of 8, none for one group)."""
    model = tiny_model()
    skip = next(i for i, p in enumerate(model.codebook) if p.skip)
    full = model.codebook.index(model.full)
    narrow = next(i for i, p in enumerate(model.codebook) if not p.skip and i != full)
    # 1 ms a call plus 0.1 ms a sentence; a skip costs nothing
    t = hand_made_table(
        model, lambda p, n, b: 0.0 if p.skip else 1.0 + 0.1 * b, batches=(1, 8), controller_ms=0.25, grouping_ms=0.05
    )
    L = len(model.blocks)
    dense = t.predict_ms([[full] * 8] * L, 8)
    assert dense == pytest.approx(L * 1.8 + 8 * 0.5)  # one call of 8 per layer, plus the fixed part
    split = [[full] * 4 + [narrow] * 4] + [[full] * 8] * (L - 1)
    assert t.predict_ms(split, 8) == pytest.approx(dense - 1.8 + 2 * 1.4 + 0.4)  # two calls of 4 at layer 0
    skipped = [[full] * 4 + [skip] * 4] + [[full] * 8] * (L - 1)
    assert t.predict_ms(skipped, 8) == pytest.approx(dense - 1.8 + 1.4 + 0.4)
    assert t.predict_ms([[full] * 16] * L, 8) == pytest.approx(2 * dense)  # past the largest: proportional
    assert t.predict_ms([[full]] * L, 8, decisions=2) == pytest.approx(L * 1.1 + 0.5 + 2 * 0.25)


def test_a_latency_cannot_fall_with_length():
    model = tiny_model()
    t = _synthetic_table(model)
    t.layer_ms[0][0][2] = [0.0] * model.n_patterns  # noise: the 16-word bucket measured faster than 8
    c = t.per_example([8, 16], batch=1)["layers"][0]
    assert (c[1] >= c[0]).all()


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"machine": "other|cpu"}, "another machine"),
        ({"threads": 7}, "7 threads"),
        ({"backbone": "0000"}, "backbone 0000"),
        ({"codebook": "every top-k changed"}, "another codebook"),
        ({"timing": "warm"}, "timed as 'warm'"),  # a table from before cold-cache timing
        ({"timing": "cold-l2"}, "timed as 'cold-l2'"),  # a table from before the fused inference kernels
        ({"grouping_ms": []}, "no grouping row"),  # a table from before the split was priced
    ],
)
def test_a_stale_table_is_remeasured_not_used(tmp_path, monkeypatch, caplog, change, reason):
    model = tiny_model()
    good = _synthetic_table(model)
    path = cost_store.table_path(tmp_path, 1, identity.backbone_identity(model))
    path.parent.mkdir(parents=True)
    if "codebook" in change:  # same number of patterns, different ones
        change = {"codebook": [[h, g, tok, 99] for h, g, tok, _ in good.codebook]}
    stale = CostTable(**{**good.__dict__, **change})
    path.write_text(stale.to_json())
    calls = []

    def fake_measure(m, **kw):
        calls.append(kw)
        return good

    monkeypatch.setattr(cost_measure, "measure", fake_measure)
    with caplog.at_level(logging.WARNING, logger="metasparse.runtime.cost_store"):
        got, where, fresh = load_or_measure(model, tmp_path, threads=1)
    assert fresh and len(calls) == 1 and where == path
    assert reason in caplog.text and "re-measuring" in caplog.text
    assert CostTable.from_json(path.read_text()) == good  # the stale file was replaced, atomically
    again, _, fresh_again = load_or_measure(model, tmp_path, threads=1)  # now it matches: loaded, not measured
    assert not fresh_again and len(calls) == 1 and again == good


def test_a_table_of_the_same_architecture_is_reused_across_backbones(tmp_path, monkeypatch):
    """Another seed's backbone (same shapes) is priced with the table already measured: latency does not
    depend on weight values, and every seed of an experiment then sees the same prices."""
    model = tiny_model()
    good = _synthetic_table(model)
    seed0, seed1 = tmp_path / "backbones" / "aaaa", tmp_path / "backbones" / "bbbb"
    first = cost_store.table_path(seed0, 1, identity.backbone_identity(model))
    first.parent.mkdir(parents=True)
    first.write_text(good.to_json())
    calls = []
    monkeypatch.setattr(cost_measure, "measure", lambda m, **kw: calls.append(kw) or good)
    got, where, fresh = load_or_measure(model, seed1, threads=1)
    assert not fresh and not calls and got == good
    assert where == cost_store.table_path(seed1, 1, identity.backbone_identity(model)) and where.exists()
    other = CostTable(**{**good.__dict__, "threads": 7})  # a sibling for another thread count is not used
    for table_file in (first, where):
        table_file.write_text(other.to_json())
    _, _, fresh_other = load_or_measure(model, tmp_path / "backbones" / "cccc", threads=1)
    assert fresh_other and len(calls) == 1
    # a backbone that also reads a tag lexicon has another fixed cost: another architecture, another table
    import dataclasses

    from metasparse.model.encoder import GatedEncoder

    with_lexicon = GatedEncoder(dataclasses.replace(model.spec, tag_lexicon=8))
    assert identity.backbone_identity(with_lexicon) != identity.backbone_identity(model)
    from metasparse.runtime.synthetic import synthetic_batch

    timed_on = synthetic_batch(with_lexicon, 2, 5)  # and the batches it is timed on carry its features
    assert timed_on.lexicon is not None and with_lexicon.embed(timed_on).shape == (2, 5, model.spec.d_model)


def test_the_controller_row_is_retimed_for_another_controller_and_the_layers_kept(tmp_path, monkeypatch):
    """A table measured without a controller (a static baseline's) would price a controller at 0; one measured
    for another controller priced this one at that one's cost."""
    from metasparse.control.controller import Controller, ControllerSpec

    model = tiny_model()
    bare = _synthetic_table(model)
    bare = CostTable(**{**bare.__dict__, "controller_ms": [[0.0] * len(bare.lengths)] * len(bare.batches)})
    path = cost_store.table_path(tmp_path, 1, identity.backbone_identity(model))
    path.parent.mkdir(parents=True)
    path.write_text(bare.to_json())
    monkeypatch.setattr(cost_measure, "measure", lambda m, **kw: pytest.fail("the layer cells were measured again"))
    with_feature = Controller(model, ControllerSpec(uncertainty_task="upos"))
    got, _, fresh = load_or_measure(model, tmp_path, threads=1, rounds=3, controller=with_feature)
    assert not fresh and got.controller == controller_signature(with_feature) and "upos" in got.controller
    assert all(ms > 0 for row in got.controller_ms for ms in row) and got.layer_ms == bare.layer_ms
    assert CostTable.from_json(path.read_text()) == got  # stored
    calls = []
    monkeypatch.setattr(cost_measure, "retime_controller", lambda *a, **k: calls.append(1) or got)
    again, _, _ = load_or_measure(model, tmp_path, threads=1, controller=Controller(model, ControllerSpec()))
    assert again == got and not calls  # the same settings (other weights): the stored row is used
    load_or_measure(model, tmp_path, threads=1, controller=Controller(model, ControllerSpec(uncertainty_task=None)))
    assert calls == [1]  # other settings: timed again
    assert load_or_measure(model, tmp_path, threads=1)[0] == got  # no controller to price: any row does


@pytest.mark.parametrize("placement", ["per_layer", "upfront"])
def test_the_controller_is_timed_inside_dense_forwards(placement):
    from metasparse.control.controller import Controller, ControllerSpec
    from metasparse.runtime.controller_timing import in_place_ms

    model = tiny_model()
    ctrl = Controller(model, ControllerSpec(placement=placement))
    calls, ran = [], []
    decide = ctrl.policy
    ctrl.policy = lambda m, **k: (lambda d: lambda i, x, mask: calls.append(i) or d(i, x, mask))(decide(m, **k))
    for block in model.blocks:  # every layer runs, and runs its full width: the caches a real forward leaves
        block.forward_sliced = (lambda f: lambda x, m, p, *a: ran.append(p) or f(x, m, p, *a))(block.forward_sliced)
    grid = [[synthetic_batch(model, b, t, seed=0) for t in (4, 8)] for b in (1, 3)]
    ms = in_place_ms(model, ctrl, grid, rounds=3, level=model.codebook.index(model.full))
    assert ms.shape == (2, 2) and (ms > 0).all()
    assert len(calls) == 4 * 4 * len(model.blocks)  # 4 buckets, 3 rounds after a warm-up, every layer asked
    assert {(p.n_heads, p.n_groups) for p in ran} == {(model.spec.heads, model.spec.ffn_groups)}


def test_a_noisy_measurement_is_repeated_and_never_kept_silently(tmp_path, monkeypatch, caplog):
    """A table measured while something else used the CPU (median IQR 30%) is measured again with twice
    the rounds; the quieter one is stored, and a warning says so when both are noisy."""
    model = tiny_model()
    good = _synthetic_table(model)
    spreads, calls = [0.30, 0.06], []

    def fake_measure(m, **kw):
        calls.append(kw.get("rounds"))
        return CostTable(**{**good.__dict__, "spread": spreads[len(calls) - 1]})

    monkeypatch.setattr(cost_measure, "measure", fake_measure)
    with caplog.at_level(logging.WARNING, logger="metasparse.runtime.cost_store"):
        got, path, fresh = load_or_measure(model, tmp_path / "backbones" / "a", threads=1, rounds=5)
    assert fresh and calls == [5, 10] and got.spread == 0.06
    assert CostTable.from_json(path.read_text()).spread == 0.06 and "measuring again" in caplog.text
    assert "still noisy" not in caplog.text
    spreads[:], calls[:] = [0.30, 0.40], []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="metasparse.runtime.cost_store"):
        got, _, _ = load_or_measure(model, tmp_path / "backbones" / "a", threads=1, remeasure=True)
    assert (
        got.spread == 0.30 and "still noisy (median IQR 30%)" in caplog.text and "costs.remeasure=true" in caplog.text
    )


def test_latency_budget_gradient_reaches_the_pattern_logits():
    model = tiny_model()
    ctrl = Controller(model)
    batch = random_batch([6, 3, 8])
    probs: list[torch.Tensor] = []
    with torch.no_grad():
        model(batch, ctrl.policy(model, hard=False, tau=1.0, record=probs), mode="masked")
    logits = [torch.zeros_like(p, requires_grad=True) for p in probs]
    cost = LatencyCost(_synthetic_table(model), batch=1)
    frac = expected_fraction(cost, [torch.softmax(lg, -1) for lg in logits], batch.lengths, ctrl)
    budget_penalty(frac, 0.3, "square").backward()
    for lg in logits:
        assert lg.grad is not None and lg.grad.abs().sum() > 0
        wide, skip = model.codebook.index(model.full), next(i for i, p in enumerate(model.codebook) if p.skip)
        assert (lg.grad[:, wide] > lg.grad[:, skip]).all()  # above budget: the costly pattern is pushed down


def test_one_hot_expectation_equals_the_hard_decision_cost():
    model = tiny_model()
    ctrl = Controller(model)
    lengths = torch.tensor([6, 3, 8])
    levels = torch.tensor([[0, 3, 6], [1, 1, 1], [6, 6, 6]])
    for cost in (FlopsCost(model), LatencyCost(_synthetic_table(model), 1)):
        one_hot = [torch.nn.functional.one_hot(levels[:, i], model.n_patterns).float() for i in range(3)]
        assert torch.allclose(
            expected_fraction(cost, one_hot, lengths, ctrl), decision_fraction(cost, levels, lengths, ctrl)
        )
    dense = torch.full((3, 3), model.codebook.index(model.full))
    assert torch.allclose(decision_fraction(LatencyCost(_synthetic_table(model), 1), dense, lengths), torch.ones(3))


def test_flops_cost_model_is_the_old_flops_fraction():
    model = tiny_model()
    ctrl = Controller(model)
    lengths = torch.tensor([6, 3, 8])
    probs = [torch.softmax(torch.randn(3, model.n_patterns), -1) for _ in model.blocks]
    per_layer = torch.tensor([float(ctrl.flops_per_layer(model, int(n))) for n in lengths])
    old = expected_flops_fraction(model, probs, lengths, per_layer)
    assert torch.allclose(expected_fraction(FlopsCost(model), probs, lengths, ctrl), old)


def test_calibration_meets_a_latency_target(ud_free_corpus):
    from metasparse.control.train import calibrate_bias, corpus_fraction

    model, corpus = ud_free_corpus
    torch.manual_seed(0)
    ctrl = Controller(model)
    with torch.no_grad():  # a trained-looking controller: inputs disagree, so the fraction moves in small steps
        for net in ctrl.nets:
            net[2].weight.normal_(0, 1.0)
    cost = LatencyCost(_synthetic_table(model), 1)
    calibrate_bias(model, ctrl, corpus, 0.6, cost=cost)
    got = corpus_fraction(model, ctrl, corpus, cost)
    assert 0.45 < got <= 0.6
    flops_after = corpus_fraction(model, ctrl, corpus, None)
    assert flops_after != pytest.approx(got)  # the two units price the same decisions differently


@pytest.fixture
def ud_free_corpus():
    """A tiny labelled corpus built from random batches (no treebank needed)."""
    from metasparse.model.corpus import EncodedCorpus
    from metasparse.model.features import EncodedSentence

    g = torch.Generator().manual_seed(0)
    items, labels = [], {"upos": [], "deprel": []}
    for i in range(40):
        n = 2 + i % 12
        items.append(
            EncodedSentence(
                torch.randint(4, 100, (n,), generator=g).tolist(),
                list(range(n)),
                torch.randint(1, 64, (n,), generator=g).tolist(),
                torch.randint(1, 64, (n, 3), generator=g).tolist(),
            )
        )
        labels["upos"].append(torch.randint(0, 17, (n,), generator=g).tolist())
        labels["deprel"].append(torch.randint(0, 37, (n,), generator=g).tolist())
    import numpy as np

    corpus = EncodedCorpus(np.arange(40), items, labels, ["x"] * 40, ["x"] * 40)
    return tiny_model(), corpus


def test_a_runs_latency_budget_prices_the_backbone_with_its_adapters(tmp_path, monkeypatch):
    """The run's cost table is for the architecture that runs: measured after the pathway adapters are
    attached (they add matmuls to every unit). Measuring it leaves the global random state as loading a
    cached one does, so a run's results do not depend on whether its table was cached."""
    from metasparse.config import MetaTrainConfig
    from metasparse.meta.load import new_system

    cfg = MetaTrainConfig()
    cfg.budget.unit, cfg.budget.threads, cfg.meta.adapt = "latency", 1, "light"
    priced = []

    def fake_measure(m, **kw):
        priced.append(identity.backbone_identity(m))
        torch.rand(1000)  # a measurement that draws random inputs from the global generator
        return _synthetic_table(m)

    monkeypatch.setattr(cost_measure, "measure", fake_measure)
    states = []
    for _ in range(2):  # measured, then loaded from the backbone folder
        system = new_system(tiny_model(), cfg, tmp_path)
        states.append(torch.rand(3))
    assert system.backbone.spec.adapter is not None and len(priced) == 1
    assert priced[0] == identity.backbone_identity(system.backbone)  # adapters included
    assert priced[0] != identity.backbone_identity(tiny_model())
    assert torch.equal(states[0], states[1])


@pytest.mark.parametrize("placement", ["per_layer", "upfront"])
def test_the_speed_prediction_counts_the_decisions_a_controller_makes(placement):
    """evaluate's predicted latency counts a controller's decision as the budget does: once per layer for
    per-layer controllers, once per forward for an upfront one (the table holds one decision)."""
    from metasparse.control.controller import ControllerSpec, controlled
    from metasparse.protocol.speed import predicted_ratio
    from metasparse.scoring.methods import Dense

    model = tiny_model()
    ctrl = Controller(model, ControllerSpec(uncertainty_task=None, placement=placement))
    with_ctrl = hand_made_table(model, lambda p, n, b: 1.0, lengths=(4, 8), controller_ms=0.25)
    without = hand_made_table(model, lambda p, n, b: 1.0, lengths=(4, 8), controller_ms=0.0)
    batches = [random_batch([6]), random_batch([5])]
    method, dense = controlled(model, ctrl), Dense(model)
    L = len(model.blocks)
    # every pattern costs 1 ms a layer here, so the decisions' price is the whole difference
    extra = predicted_ratio(method, dense, batches, with_ctrl) - predicted_ratio(method, dense, batches, without)
    dense_ms = L * 1.0 + 0.5  # layers plus the fixed part, per sentence
    decisions = 1 if placement == "upfront" else L
    assert extra == pytest.approx(decisions * 0.25 / dense_ms)


def test_each_timed_call_follows_a_cache_eviction():
    """Cells are timed cold (as a real forward leaves the caches): the eviction buffer is rewritten before
    every repetition, outside the timed part."""
    from metasparse.runtime.latency import cold_call_ms, interleaved_samples

    calls, evict = [], torch.zeros(8)
    ms = cold_call_ms(lambda: calls.append(float(evict[0])), 3, evict)
    assert calls == [1.0, 2.0, 3.0] and ms >= 0.0  # each call saw a fresh eviction
    samples = interleaved_samples([lambda: None, lambda: None], rounds=4, min_ms=0.01)
    assert [len(s) for s in samples] == [4, 4]


def test_interleaved_runs_each_call_after_its_own_warm_up_in_a_seeded_random_order():
    """Every timed call of a function follows its ``before`` work (untimed), warm-up rounds included; the
    order changes between rounds (a rotation kept each function behind the same neighbour) and the seed
    fixes it."""
    from metasparse.runtime.latency import interleaved

    def trace(seed):
        log = []
        fns = {n: (lambda n=n: log.append(n)) for n in "abcd"}
        before = {n: (lambda n=n: log.append("warm " + n)) for n in "abcd"}
        times = interleaved(fns, repeats=6, warmup=1, before=before, seed=seed)
        assert all(len(t) == 6 for t in times.values())
        return log

    log = trace(0)
    assert len(log) == 2 * 4 * 7
    assert all(w == "warm " + n for w, n in zip(log[::2], log[1::2], strict=True))
    calls = log[1::2]
    rounds = [tuple(calls[i : i + 4]) for i in range(0, len(calls), 4)]
    assert all(sorted(r) == list("abcd") for r in rounds)
    followers = {(r[i - 1], r[i]) for r in rounds for i in range(1, 4)}
    assert len(followers) > 4  # a rotation of four names has only four neighbour pairs
    assert trace(0) == log and trace(1) != log
