"""The joint phase: distillation on real words only, cache and exact resume like pretraining, a controller
that trains toward the budget, and the pretrain CLI's learned-vs-random report."""

from __future__ import annotations

import json

import pytest
import torch
from cli_utils import run_module
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import metasparse.train.joint as J
from metasparse.config import CONF_DIR
from metasparse.data.prepare import prepare
from metasparse.model.features import IGNORE_INDEX

TINY = [
    "model=tiny",
    "data.treebanks=[UD_Korean-PUD,UD_Turkish-PUD]",
    "tokenizer.vocab_size=2500",
    "pretrain.max_words=512",
    "pretrain.epochs=0.5",
    "joint.steps=6",
    "joint.max_words=512",
    "joint.checkpoint_every=2",
]


def _cfg(*extra):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("pretrain", overrides=[*TINY, *extra]))


def test_distillation_is_zero_for_the_teacher_itself_and_ignores_padding():
    torch.manual_seed(0)
    t = {"upos": torch.randn(2, 4, 17)}
    labels = {"upos": torch.tensor([[1, 2, 3, IGNORE_INDEX], [4, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])}
    assert float(J.distillation(t, t, labels)) == pytest.approx(0.0, abs=1e-6)
    s = {"upos": t["upos"].clone()}
    s["upos"][0, 3] += 5.0  # a padding position: not counted
    assert float(J.distillation(s, t, labels)) == pytest.approx(0.0, abs=1e-6)
    s["upos"][0, 0] += 5.0
    assert float(J.distillation(s, t, labels)) > 0.0
    student = {"upos": t["upos"].clone().requires_grad_(True)}
    J.distillation(student, {"upos": t["upos"] + 1.0 * torch.randn(2, 4, 17)}, labels).backward()
    assert student["upos"].grad[0, 3].abs().sum() == 0 and student["upos"].grad[0, 0].abs().sum() > 0


def test_existing_joint_cache_keys_hold_and_a_frozen_teacher_gets_its_own():
    from metasparse.config import JointConfig
    from metasparse.control.controller import ControllerSpec

    # the default legal backbone's co-trained folder, made before joint.teacher existed: still found
    assert J.joint_key("256809ca4b008236", JointConfig(steps=300), ControllerSpec()) == "a341ffacd960ce88"
    frozen = J.joint_key("256809ca4b008236", JointConfig(steps=300, teacher="frozen"), ControllerSpec())
    assert frozen != "a341ffacd960ce88"
    # a budget read through the tempered softmax (joint.budget_spread) trains other weights: its own key
    spread = J.joint_key("256809ca4b008236", JointConfig(steps=300, budget_spread=4.0), ControllerSpec())
    assert spread not in ("a341ffacd960ce88", frozen)
    # a decaying rate (joint.schedule=linear) ends on other weights: its own key; constant keeps the old one
    linear = J.joint_key("256809ca4b008236", JointConfig(steps=300, schedule="linear"), ControllerSpec())
    assert linear not in ("a341ffacd960ce88", frozen, spread)
    constant = J.joint_key("256809ca4b008236", JointConfig(steps=300, schedule="constant"), ControllerSpec())
    assert constant == "a341ffacd960ce88"


def test_joint_schedule_decays_linearly_to_the_last_step_and_refuses_unknown_names():
    from metasparse.config import JointConfig
    from metasparse.errors import ConfigValueError

    assert [J.lr_factor("constant", s, 4) for s in range(4)] == [1.0, 1.0, 1.0, 1.0]
    assert [J.lr_factor("linear", s, 4) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    with pytest.raises(ConfigValueError, match=r"joint\.schedule.*constant \| linear"):
        JointConfig(schedule="cosine")


def test_frozen_teacher_anchors_the_dense_pass_and_never_trains():
    from types import SimpleNamespace

    from model_utils import random_batch, tiny_model

    from metasparse.config import JointConfig
    from metasparse.control.controller import Controller

    model = tiny_model(seed=1).train()
    teacher = tiny_model(seed=1).eval().requires_grad_(False)  # same weights: the dense pass starts on the anchor
    batch = random_batch([5, 3, 7], seed=2)
    g = torch.Generator().manual_seed(3)
    batch.labels = {
        t: torch.randint(0, n, batch.word_mask.shape, generator=g).masked_fill(~batch.word_mask, IGNORE_INDEX)
        for t, n in model.spec.tasks.items()
    }
    ctrl = Controller(model)
    cfg = SimpleNamespace(joint=JointConfig(steps=10, teacher="frozen"), seed=0)
    loss, logged = J._step_loss(cfg, model, ctrl, batch, 0, 10, teacher)
    with torch.no_grad():
        dense_only = J.distillation(model(batch).logits, teacher(batch).logits, batch.labels)
    assert float(dense_only) == pytest.approx(0.0, abs=1e-6)  # nothing to pull at the start
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    with torch.no_grad():  # moved away from the anchor, the dense pass is pulled back
        model.heads["upos"].bias.add_(torch.randn_like(model.heads["upos"].bias))
    _, moved = J._step_loss(cfg, model, ctrl, batch, 0, 10, teacher)
    assert moved["kd"] > logged["kd"] + 1e-3


def test_joint_budget_spread_gives_a_saturated_controller_its_budget_gradient_back():
    """``joint.budget_spread``: a controller saturated on the widest pattern (a margin of 12 logits, as the
    default joint phase's ended) gets a budget gradient through the tempered softmax; through the plain one
    (None, the joint phases measured before it) next to none."""
    from types import SimpleNamespace

    from model_utils import random_batch, tiny_model

    from metasparse.config import JointConfig
    from metasparse.control.controller import Controller

    model = tiny_model(seed=1).train()
    batch = random_batch([5, 3, 7], seed=2)
    g = torch.Generator().manual_seed(3)
    batch.labels = {
        t: torch.randint(0, n, batch.word_mask.shape, generator=g).masked_fill(~batch.word_mask, IGNORE_INDEX)
        for t, n in model.spec.tasks.items()
    }
    grads = {}
    for spread in (None, 4.0):
        ctrl = Controller(model)
        with torch.no_grad():
            for net in ctrl.nets:
                net[2].bias.fill_(-6.0)[model.codebook.index(model.full)] = 6.0
        cfg = SimpleNamespace(joint=JointConfig(steps=10, budget_warmup=0.0, budget_spread=spread), seed=0)
        loss, logged = J._step_loss(cfg, model, ctrl, batch, 9, 10)
        assert logged["flops"] > (0.9 if spread is None else 0.5)  # the tempered view still reads it as wide
        loss.backward()
        grads[spread] = torch.stack([net[2].bias.grad.abs().max() for net in ctrl.nets]).max()
        model.zero_grad()
    assert grads[None] < 1e-3 and grads[4.0] > 100 * grads[None]


def test_a_latency_budget_prices_the_joint_phase_by_the_cost_table_and_names_it_in_the_key(tmp_path, monkeypatch):
    """``joint.unit=latency``: the phase's budget term reads the pretrained backbone's cost table (measured
    once, stored beside it, the global random state untouched) instead of FLOPs, and the folder's key names
    the table, so another machine's table co-trains its own backbone; ``flops`` keeps the keys it had."""
    import dataclasses
    from types import SimpleNamespace

    from model_utils import hand_made_table, random_batch, tiny_model

    from metasparse.config import JointConfig
    from metasparse.control.budget import FlopsCost, LatencyCost, decision_fraction
    from metasparse.control.controller import Controller, ControllerSpec
    from metasparse.runtime import cost_measure

    flops, latency = JointConfig(steps=300), JointConfig(steps=300, unit="latency")
    assert J.joint_key("256809ca4b008236", flops, ControllerSpec()) == "a341ffacd960ce88"  # unchanged
    keys = {J.joint_key("256809ca4b008236", latency, ControllerSpec(), t) for t in ("a-t2-x.json", "b-t2-x.json")}
    assert len(keys) == 2 and "a341ffacd960ce88" not in keys

    model = tiny_model(seed=1).train()
    # skipping a layer is priced at half a full one, far more than its FLOPs (none): a table, not FLOPs
    table = hand_made_table(
        model, lambda p, n, b: b * (0.5 + (p.n_heads + p.n_groups) * n / 64), lengths=(4, 8, 16), batches=(1, 8)
    )
    table = dataclasses.replace(table, threads=torch.get_num_threads())  # the phase prices at the current count
    measured = []

    def fake_measure(m, **kw):
        measured.append(1)
        torch.rand(1000)  # a measurement draws from the global generator
        return table

    monkeypatch.setattr(cost_measure, "measure", fake_measure)
    # a folder of its own: a table of the same architecture in a sibling backbone folder (another test's,
    # in the same pytest base directory) would be re-used, as the store does across backbones
    folder = tmp_path / "backbones" / "pretrained"
    folder.mkdir(parents=True)
    assert J._budget_cost(flops, model, folder, ControllerSpec()) is None
    before = torch.random.get_rng_state()
    cost = J._budget_cost(latency, model, folder, ControllerSpec())
    assert torch.equal(before, torch.random.get_rng_state())
    assert isinstance(cost, LatencyCost) and str(folder) in cost.source and measured == [1]
    assert J._budget_cost(latency, model, folder, ControllerSpec()).source == cost.source and measured == [1]

    batch = random_batch([5, 3, 7], seed=2)
    batch.labels = {t: torch.zeros_like(batch.word_mask, dtype=torch.long) for t in model.spec.tasks}
    skip = model.codebook.index(next(p for p in model.codebook if p.skip))
    ctrl = Controller(model)
    with torch.no_grad():  # every layer skipped, by a margin the Gumbel noise cannot flip
        for net in ctrl.nets:
            net[2].bias.fill_(-30.0)[skip] = 30.0
    levels = torch.full((3, model.spec.layers), skip)
    cfg = SimpleNamespace(joint=JointConfig(steps=10, budget_warmup=0.0, unit="latency"), seed=0)
    for priced, c in ((cost, cost), (FlopsCost(model), None)):
        _, logged = J._step_loss(cfg, model, ctrl, batch, 9, 10, cost=c)
        want = decision_fraction(priced, levels, batch.lengths, ctrl).mean()
        assert logged["flops"] == pytest.approx(float(want), rel=1e-4)
    assert float(decision_fraction(cost, levels, batch.lengths, ctrl).mean()) > 0.3  # priced, not free


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_joint_phase_caches_and_resumes_exactly(monkeypatch, tmp_path, ud_root):
    monkeypatch.setenv("METASPARSE_CACHE_DIR", str(tmp_path))
    cfg = _cfg()
    bundle = prepare(cfg)
    model, metrics, folder, ctrl = J.backbone_with_controller(cfg, bundle)
    assert ctrl is not None and set(metrics["macro"]) == {"upos", "deprel"}  # the pretraining metrics are kept
    assert metrics["joint"]["steps"] == 6 and "-joint-" in folder.name
    pre = folder.with_name(folder.name.split("-joint-")[0])
    assert (pre / "state.json").exists()  # the pretrained backbone stays cached beside it
    from metasparse.train.backbone_cache import load_backbone

    pretrained, _ = load_backbone(pre)
    before, after = pretrained.state_dict(), model.state_dict()
    moved = any(not torch.equal(before[k], after[k]) for k in before)
    assert moved  # the joint phase trained the backbone too

    # Cache hit: nothing trains again.
    monkeypatch.setattr(J, "_step_loss", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained again")))
    again, _, folder2, ctrl2 = J.backbone_with_controller(cfg, bundle)
    assert folder2 == folder
    for a, b in ((model, again), (ctrl, ctrl2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    monkeypatch.undo()
    monkeypatch.setenv("METASPARSE_CACHE_DIR", str(tmp_path))

    # Killed after its second periodic checkpoint, then resumed: identical backbone and controller.
    import shutil

    shutil.rmtree(folder)
    real_save, calls = J.save_checkpoint, []

    def save_then_die(path, tensors, state):
        real_save(path, tensors, state)
        if path.name.endswith(".partial"):
            calls.append(state["step"])
            if len(calls) == 2:
                raise _Killed

    monkeypatch.setattr(J, "save_checkpoint", save_then_die)
    rates: list[list[float]] = []  # the rate each optimiser step of the killed and the resumed run ran at

    class RecordingAdamW(torch.optim.AdamW):
        def step(self, closure=None):
            rates.append([g["lr"] for g in self.param_groups])
            return super().step(closure)

    monkeypatch.setattr(J.torch.optim, "AdamW", RecordingAdamW)  # the pretrained backbone is a cache hit
    with pytest.raises(_Killed):
        J.backbone_with_controller(cfg, bundle)
    monkeypatch.setattr(J, "save_checkpoint", real_save)
    assert calls == [2, 4] and folder.with_name(f"{folder.name}.partial").exists()
    resumed, _, _, ctrl3 = J.backbone_with_controller(cfg, bundle)
    # the default linear schedule: backbone and controller rates fall by a sixth per step, across the resume
    j = cfg.joint
    assert j.schedule == "linear"
    expected = [rate * (6 - s) / 6 for s in range(6) for rate in (j.lr, j.controller_lr)]
    assert [r for step in rates for r in step] == pytest.approx(expected)
    for a, b in ((model, resumed), (ctrl, ctrl3)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not folder.with_name(f"{folder.name}.partial").exists()


@pytest.mark.slow
def test_pretrain_cli_reports_learned_against_random(tmp_path, ud_root):
    env = {**__import__("os").environ, "METASPARSE_CACHE_DIR": str(tmp_path / "cache")}
    run_module("metasparse.pretrain", *TINY, f"hydra.run.dir={tmp_path / 'pt'}", env=env)
    metrics = json.loads((tmp_path / "pt" / "metrics.json").read_text())
    cmp_ = metrics["joint"]["comparison"]
    assert {"dense", "learned", "random", "learned_minus_random"} <= set(cmp_)
    assert cmp_["dense"]["flops"] == pytest.approx(1.0)
    for name in ("learned", "random"):
        assert 0 < cmp_[name]["flops"] <= 0.5 + 0.05, (name, cmp_[name])
        assert 0 <= cmp_[name]["upos"] <= 1
    d = cmp_["learned_minus_random"]
    assert d["upos"] == pytest.approx(cmp_["learned"]["upos"] - cmp_["random"]["upos"])
    before = metrics["joint"]["comparison_before"]  # the backbone before the joint phase, a frozen-trained controller
    assert {"dense", "learned", "random"} <= set(before) and 0 < before["learned"]["flops"] <= 0.55
    assert before["dense"]["upos"] != pytest.approx(cmp_["dense"]["upos"], abs=1e-9)  # two different backbones
    report = (tmp_path / "pt" / "report.md").read_text()
    assert "Co-trained backbone (joint phase): learned vs random" in report and "before the joint phase" in report
    assert "-joint-" in metrics["checkpoint"]
