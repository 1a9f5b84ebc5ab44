"""The meta-learning core in learn2learn's spirit: clone parity, first-order reference, second-order
meta-gradients against finite differences, ANIL/Meta-SGD/Reptile behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metasparse.meta import MAML, MetaSGD, Reptile


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def _data(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)


def _loss(f, xy):
    x, y = xy
    return ((f(x) - y) ** 2).mean()


def test_clone_computes_what_the_original_does():
    net = _net()
    x, _ = _data(0)
    learner = MAML(net, lr=0.1).clone()
    torch.testing.assert_close(learner(x), net(x))


def test_first_order_gradient_equals_hand_computed_reference():
    net, sup, qry = _net(), _data(1), _data(2)
    learner = MAML(net, lr=0.3, first_order=True).clone()
    learner.adapt(_loss(learner, sup))
    _loss(learner, qry).backward()
    got = [p.grad.clone() for p in net.parameters()]
    # Reference: SGD step on a copy, then the query gradient at the adapted weights.
    ref = _net()
    g = torch.autograd.grad(_loss(ref, sup), list(ref.parameters()))
    with torch.no_grad():
        for p, gi in zip(ref.parameters(), g, strict=True):
            p -= 0.3 * gi
    want = torch.autograd.grad(_loss(ref, qry), list(ref.parameters()))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def _meta_loss(net, sup, qry, lr, steps=2):
    learner = MAML(net, lr=lr).clone()
    for _ in range(steps):
        learner.adapt(_loss(learner, sup))
    return _loss(learner, qry)


def test_second_order_meta_gradient_matches_finite_differences():
    net, sup, qry = _net(), _data(3), _data(4)
    _meta_loss(net, sup, qry, 0.2).backward()
    eps = 1e-6
    for p in net.parameters():
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for i in range(0, flat.numel(), 3):
            old = flat[i].item()
            flat[i] = old + eps
            up = _meta_loss(net, sup, qry, 0.2).item()
            flat[i] = old - eps
            down = _meta_loss(net, sup, qry, 0.2).item()
            flat[i] = old
            assert abs((up - down) / (2 * eps) - grad[i].item()) < 1e-6


def test_second_order_differs_from_first_order():
    sup, qry = _data(5), _data(6)
    a, b = _net(), _net()
    _meta_loss(a, sup, qry, 0.5).backward()
    learner = MAML(b, lr=0.5, first_order=True).clone()
    for _ in range(2):
        learner.adapt(_loss(learner, sup))
    _loss(learner, qry).backward()
    assert any((pa.grad - pb.grad).abs().max() > 1e-6 for pa, pb in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("adapt", ["controller", "controller+head"])
def test_anil_as_meta_training_builds_it_adapts_only_the_controllers_output_layers(adapt):
    from model_utils import tiny_model

    from metasparse.config import MetaTrainConfig
    from metasparse.control.controller import Controller
    from metasparse.meta.outer import build_algorithm
    from metasparse.meta.system import GatedSystem

    model = tiny_model()
    cfg = MetaTrainConfig()
    cfg.meta.algorithm, cfg.meta.adapt = "anil", adapt
    algo = build_algorithm(GatedSystem(model, Controller(model)), cfg)
    heads = ["backbone.heads.deprel.bias", "backbone.heads.deprel.weight", "backbone.heads.upos.bias"]
    heads.append("backbone.heads.upos.weight")
    out_layers = [f"controller.nets.{i}.2.{p}" for i in range(3) for p in ("bias", "weight")]
    assert sorted(algo.adapt_names) == sorted(out_layers + (heads if adapt == "controller+head" else []))
    learner = algo.clone()
    assert sorted(learner.fast) == sorted(algo.adapt_names)


def test_meta_sgd_learns_its_rates():
    net, sup, qry = _net(), _data(8), _data(9)
    meta = MetaSGD(net, lr=0.1)
    learner = meta.clone()
    learner.adapt(_loss(learner, sup))
    _loss(learner, qry).backward()
    assert all(r.grad is not None and r.grad.abs().sum() > 0 for r in meta.rates.values())


def test_a_test_time_lr_rescales_meta_sgds_learned_rates_instead_of_replacing_them():
    net, sup = _net(), _data(11)
    meta = MetaSGD(net, lr=0.1)
    with torch.no_grad():
        for r in meta.rates.values():  # learned rates that differ per element
            r.copy_(torch.linspace(0.01, 0.2, r.numel()).view_as(r))
    plain, scaled = meta.clone(first_order=True), meta.clone(first_order=True, lr_scale=0.5)
    before = {n: p.detach().clone() for n, p in plain.fast.items()}
    plain.adapt(_loss(plain, sup))
    scaled.adapt(_loss(scaled, sup))
    for n in before:  # the same per-element step shape, half as long
        torch.testing.assert_close(scaled.fast[n] - before[n], 0.5 * (plain.fast[n] - before[n]))


def test_reptile_moves_toward_the_adapted_weights():
    net, sup = _net(), _data(10)
    rep = Reptile(net, lr=0.1)
    learner = rep.clone()
    for _ in range(3):
        learner.adapt(_loss(learner, sup))
    before = [p.detach().clone() for p in net.parameters()]
    rep.meta_grads([learner])
    torch.optim.SGD(net.parameters(), lr=1.0).step()  # epsilon = 1: land on the adapted weights
    for (n, p), b in zip(net.named_parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), learner.fast[n].detach())
        assert not torch.equal(p.detach(), b)


def test_sparse_maml_masked_elements_never_move_and_the_rest_step_as_sgd():
    from metasparse.meta import SparseMAML

    net, sup = _net(), _data(12)
    meta = SparseMAML(net, lr=0.3, first_order=True, mask_init=0.5)
    off = {}
    with torch.no_grad():
        for n, s in meta.mask_scores.items():  # switch every other element off
            flat = s.view(-1)
            flat[::2] = -1.0
            off[n.replace("__", ".")] = (s < 0).clone()
    learner = meta.clone()
    before = {n: p.detach().clone() for n, p in learner.fast.items()}
    grads = dict(zip(before, torch.autograd.grad(_loss(learner, sup), list(learner.fast.values())), strict=True))
    learner.adapt(_loss(learner, sup))
    for n, b in before.items():
        moved = learner.fast[n].detach() - b
        assert torch.all(moved[off[n]] == 0)  # masked: not one element changed
        torch.testing.assert_close(moved[~off[n]], -0.3 * grads[n][~off[n]])  # kept: a plain SGD step


def test_sparse_maml_mask_gradient_is_the_straight_through_first_order_one():
    """dL_query/ds = -rate * g_support * dL_query/dw' (the step is linear in the mask), first order."""
    from metasparse.meta import SparseMAML

    net, sup, qry = _net(), _data(13), _data(14)
    meta = SparseMAML(net, lr=0.2, first_order=True, mask_init=0.1)
    learner = meta.clone()
    g_sup = torch.autograd.grad(_loss(learner, sup), list(learner.fast.values()))
    learner.adapt(_loss(learner, sup))
    adapted = {n: v.detach().requires_grad_(True) for n, v in learner.fast.items()}
    g_qry = torch.autograd.grad(
        _loss(lambda x: torch.func.functional_call(net, adapted, (x,)), qry), list(adapted.values())
    )
    _loss(learner, qry).backward()
    for (n, _), gs, gq in zip(adapted.items(), g_sup, g_qry, strict=True):
        torch.testing.assert_close(meta.mask_scores[n.replace(".", "__")].grad, -0.2 * gs * gq)


def test_sparse_maml_learns_to_switch_off_an_element_whose_update_hurts():
    """Support and query disagree on one output: adapting the weights that feed it hurts the query, so the
    outer loop drives their mask scores below zero while the agreeing output's weights stay on."""
    from metasparse.meta import SparseMAML

    torch.manual_seed(0)
    net = nn.Linear(3, 2, bias=False).double()
    nn.init.zeros_(net.weight)  # the support step then moves each weight toward its support value
    meta = SparseMAML(net, lr=0.5, first_order=True, mask_init=0.05)
    opt = torch.optim.Adam(meta.mask_scores.parameters(), lr=0.02)
    x = torch.linalg.qr(torch.randn(32, 3, dtype=torch.float64))[0] * 32**0.5  # uncorrelated inputs
    w_true = torch.tensor([[1.0, -1.0, 0.5], [0.3, 0.2, -0.4]], dtype=torch.float64)
    y_sup, y_qry = x @ w_true.T, (x @ w_true.T) * torch.tensor([1.0, -1.0], dtype=torch.float64)
    for _ in range(60):
        opt.zero_grad()
        learner = meta.clone()
        learner.adapt(((learner(x) - y_sup) ** 2).mean())
        ((learner(x) - y_qry) ** 2).mean().backward()
        opt.step()
    kept = meta.mask_scores["weight"] >= 0
    assert kept[0].all() and not kept[1].any()
    assert meta.kept_fraction() == {"weight": 0.5}


def test_sparse_maml_runs_in_meta_training_and_its_mask_survives_a_reload(tmp_path):
    from model_utils import tiny_model

    from metasparse.config import MetaTrainConfig
    from metasparse.control.controller import Controller
    from metasparse.meta.load import load_algorithm_state
    from metasparse.meta.outer import build_algorithm
    from metasparse.meta.run import final_tensors
    from metasparse.meta.sparse_maml import SparseMAML
    from metasparse.meta.system import GatedSystem

    cfg = MetaTrainConfig()
    cfg.meta.algorithm, cfg.meta.adapt = "sparse_maml", "controller+heads+embeddings"
    model = tiny_model()
    algo = build_algorithm(GatedSystem(model, Controller(model)), cfg)
    assert isinstance(algo, SparseMAML) and algo.first_order
    # the embedding tables (inner-only) are not masked and keep the row-sparse step
    assert all(not n.endswith("_emb.weight") for n in algo.masked) and algo.inner_only
    assert sorted(algo.clone().row_rates) == sorted(algo.inner_only)
    with torch.no_grad():
        for s in algo.mask_scores.values():
            s.copy_(torch.randn_like(s))
    tensors = {k: v.detach().clone() for k, v in final_tensors(algo.module, algo).items() if k.startswith("algo.")}
    assert tensors and all(k.startswith("algo.mask_scores.") for k in tensors)
    fresh_model = tiny_model()
    fresh = build_algorithm(GatedSystem(fresh_model, Controller(fresh_model)), cfg)
    load_algorithm_state(fresh, tensors, tmp_path)
    for k, v in algo.mask_scores.items():
        torch.testing.assert_close(fresh.mask_scores[k], v)
    with pytest.raises(KeyError, match="no meta-parameter"):
        load_algorithm_state(fresh, {"algo.rates.x": torch.zeros(())}, tmp_path)


def test_validation_dips_are_judged_at_one_budget_target_only(tmp_path, monkeypatch):
    """While the budget anneals, a lower validation accuracy at a lower target is the budget biting, not a
    dip: it becomes the best at its target. At the same target a fall past the margin restores the best."""
    import metasparse.meta.outer as outer
    from metasparse.config import MetaTrainConfig

    saved, loaded = [], []
    monkeypatch.setattr(outer, "_save", lambda folder, *a: saved.append(a[-1].step) or folder.mkdir(exist_ok=True))
    monkeypatch.setattr(outer, "_load", lambda folder, algo, opt: loaded.append(folder) or outer.MetaState(best_step=7))
    cfg, opt = MetaTrainConfig(), torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    state = outer.MetaState(outer_lr=1.0)
    for step, target, acc in ((25, 0.7, 0.85), (50, 0.5, 0.80), (75, 0.5, 0.81), (100, 0.5, 0.78)):
        state.step = step
        rec = {"target": target, "val_acc": acc, "val_cost": target}  # on budget: only targets and accuracies matter
        outer._keep_best_or_restore(rec, None, None, opt, state, cfg, tmp_path)
    assert saved == [25, 50, 75]  # step 50: a new target, not a fall from 0.85
    assert len(loaded) == 1 and state.restorations == 1 and rec["restored_from"] == 7  # step 100: 0.78 < 0.81 - 0.02
    assert state.best_target == 0.5 and state.outer_lr == cfg.meta.restore_lr_factor


def test_a_validation_over_its_budget_is_neither_a_best_nor_a_dip(tmp_path, monkeypatch):
    """A state whose hard decisions spend more than ``best_budget_slack`` over the target is not compared:
    its higher accuracy is the compute it spent (the 0.3 runs went back to such a state twice)."""
    import metasparse.meta.outer as outer
    from metasparse.config import MetaTrainConfig

    saved, loaded = [], []
    monkeypatch.setattr(outer, "_save", lambda folder, *a: saved.append(a[-1].step) or folder.mkdir(exist_ok=True))
    monkeypatch.setattr(
        outer, "_load", lambda folder, algo, opt: loaded.append(folder) or outer.MetaState(best_step=125)
    )
    cfg, opt = MetaTrainConfig(), torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    assert cfg.meta.best_budget_slack == 0.25
    state, records = outer.MetaState(outer_lr=1.0), []
    # (step, accuracy, cost) at target 0.3: near dense, on budget, near dense again, at the slack's edge, a dip
    for step, acc, cost in (
        (50, 0.87, 0.91),
        (75, 0.84, 0.33),
        (100, 0.88, 0.80),
        (125, 0.85, 0.375),
        (150, 0.80, 0.31),
    ):
        state.step = step
        records.append({"target": 0.3, "val_acc": acc, "val_cost": cost})
        outer._keep_best_or_restore(records[-1], None, None, opt, state, cfg, tmp_path)
    assert saved == [75, 125]  # 50 and 100 spent nearly dense compute; 125 sits exactly at 0.3 * 1.25
    assert state.best_val == 0.85 and state.best_step == 125
    assert len(loaded) == 1 and records[-1]["restored_from"] == 125 and "restored_from" not in records[2]
    assert state.restorations == 1
