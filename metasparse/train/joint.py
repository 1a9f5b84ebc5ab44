"""The joint phase: backbone and a multitask controller trained together under the budget, with
self-distillation from the dense model, after the random-pattern pretraining. Cached and resumable like
the backbone; meta-training starts from its backbone and controller.

Why: pretrained under random patterns, the backbone works about equally under any pattern, so which
pattern an input gets barely matters and learned per-input choices are no better than random ones
(measured). Mixture-of-Depths finds learned routing beats random only when the model co-adapts to the
router. Each step here trains:

* the dense model on the labels (dense quality must hold),
* the gated model under the controller's relaxed decisions (straight-through Gumbel, masked path) on the
  labels and toward the dense model's own predictions (KL, the teacher detached: self-distillation), or,
  with ``joint.teacher=frozen``, both passes toward a frozen copy of the pretrained backbone,
* the controller toward the budget (expected cost fraction; ``joint.budget_warmup`` anneals it from dense,
  0 in the jobs' config: annealed, the controller saturated before the budget arrived and kept no
  budget gradient, README "A saturated controller").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from metasparse.checkpoint import load_checkpoint, optimizer_state, restore_optimizer_state, save_checkpoint
from metasparse.control.budget import (
    FlopsCost,
    LatencyCost,
    annealed_target,
    budget_cost,
    budget_penalty,
    expected_fraction,
)
from metasparse.control.controller import Controller, ControllerSpec
from metasparse.control.relax import anneal_temperature
from metasparse.data.prepare import DataBundle
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import GatedEncoder
from metasparse.model.features import IGNORE_INDEX
from metasparse.model.loss import task_loss
from metasparse.tracking import log_scalars
from metasparse.train.backbone_cache import backbone_weights_id, load_backbone, spec_to_json
from metasparse.train.pretraining import _rows

log = logging.getLogger(__name__)


def distillation(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], labels) -> torch.Tensor:
    """Mean token KL(teacher || student) summed over tasks, on real words only (teacher detached)."""
    total = 0.0
    for t, s in student.items():
        m = labels[t] != IGNORE_INDEX
        p = F.log_softmax(teacher[t].detach()[m], -1)
        q = F.log_softmax(s[m], -1)
        total = total + F.kl_div(q, p, log_target=True, reduction="batchmean")
    return total


def lr_factor(schedule: str, step: int, total: int) -> float:
    """The share of the configured rates step ``step`` (0-based) of ``total`` runs at: 1 for ``constant``;
    for ``linear`` from 1 down to ``1 / total`` at the last step (a pure function of the step: resume-safe)."""
    return 1.0 if schedule == "constant" else (total - step) / total


def joint_key(backbone_key: str, joint, controller: ControllerSpec, cost_table: str | None = None) -> str:
    """Hash of what the joint weights depend on: the backbone, the joint settings, the controller and, for a
    budget in latency, the cost table's name (machine, threads, decision timed)."""
    spec = {
        "backbone": backbone_key,
        # teacher=dense was the only teacher once, and the plain softmax the only budget view: left out then,
        # so those folders keep their keys
        "joint": {
            k: v
            for k, v in dataclasses.asdict(joint).items()
            if k != "checkpoint_every"
            and not (k == "teacher" and v == "dense")
            and not (k == "budget_spread" and v is None)
            and not (k == "schedule" and v == "constant")
            and not (k == "unit" and v == "flops")
        },
        "controller": dataclasses.asdict(controller),
    }
    if cost_table is not None:
        spec["cost_table"] = cost_table
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def load_joint(folder: Path, controller: ControllerSpec) -> tuple[GatedEncoder, Controller, dict]:
    """A finished joint folder: the co-trained backbone, its controller and the phase's state."""
    model, state = load_backbone(folder)
    tensors, _ = load_checkpoint(folder)
    ctrl = Controller(model, controller)
    ctrl.load_state_dict({k.removeprefix("controller."): v for k, v in tensors.items() if k.startswith("controller.")})
    return model, ctrl.eval(), state


def joint_train(
    cfg, bundle: DataBundle, backbone: GatedEncoder, backbone_dir: Path
) -> tuple[GatedEncoder, Controller, dict, Path]:
    """Run (or load from the cache) the joint phase on a pretrained ``backbone``.

    Args:
        cfg: a config with ``joint`` (:class:`metasparse.config.JointConfig`), ``controller``, ``seed``.
        backbone_dir: the pretrained backbone's cache folder (the joint folder is its sibling).

    Returns:
        (co-trained backbone, its controller, the phase's metrics, its folder).
    """
    j = cfg.joint
    cost = _budget_cost(j, backbone, backbone_dir, cfg.controller)
    table = Path(cost.source).name if isinstance(cost, LatencyCost) else None
    key = joint_key(backbone_weights_id(backbone_dir), j, cfg.controller, table)
    folder = backbone_dir.with_name(f"{backbone_dir.name}-joint-{key}")
    if (folder / "state.json").exists():
        model, ctrl, state = load_joint(folder, cfg.controller)
        log.info("joint-phase cache hit: %s", folder)
        return model, ctrl, state["metrics"], folder
    model = GatedEncoder(backbone.spec)
    model.load_state_dict(backbone.state_dict())
    torch.manual_seed(cfg.seed * 31 + 1)
    ctrl = Controller(model, cfg.controller)
    partial = folder.with_name(f"{folder.name}.partial")
    # the frozen teacher is the pretrained backbone itself: what trains is ``model``, a copy of it; the
    # teacher only ever runs in eval mode under no_grad
    teacher = backbone.eval() if cfg.joint.teacher == "frozen" else None
    metrics = _train(cfg, bundle, model, ctrl, partial, teacher, cost)
    state = {"spec": spec_to_json(model.spec), "metrics": metrics, "key": key, "backbone": str(backbone_dir)}
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"controller.{k}": v for k, v in ctrl.state_dict().items()})
    save_checkpoint(folder, tensors, state)
    if partial.exists():
        shutil.rmtree(partial)
    return model.eval(), ctrl.eval(), metrics, folder


def _budget_cost(j, backbone: GatedEncoder, backbone_dir: Path, controller: ControllerSpec):
    """How the phase prices decisions: analytic FLOPs of the model being trained, or the pretrained
    backbone's cost table (the architecture sets a pattern's time, not the weights) at batch 1."""
    if j.unit == "flops":
        return None  # FlopsCost of the model in training, built per step as before
    with torch.random.fork_rng():  # whether the table was cached must not change the phase's random state
        return budget_cost("latency", backbone, backbone_dir, batch=1, controller=controller)


def _step_loss(cfg, model: GatedEncoder, ctrl: Controller, batch, step: int, total: int, teacher=None, cost=None):
    j = cfg.joint
    torch.manual_seed(cfg.seed * 7919 + 17 + step)  # dropout and Gumbel noise: a function of the step (resume)
    dense = model(batch)
    if teacher is not None:
        with torch.no_grad():
            anchor = teacher(batch).logits
    tau = anneal_temperature(step, total, j.tau_start, j.tau_end)
    probs: list[torch.Tensor] = []
    policy = ctrl.policy(model, hard=False, tau=tau, record=probs, budget_spread=j.budget_spread)
    gated = model(batch, policy, mode="masked")
    target = annealed_target(step, total, j.target, j.budget_warmup)
    frac = expected_fraction(cost if cost is not None else FlopsCost(model), probs, batch.lengths, ctrl)
    ce_dense = task_loss(dense.logits, batch.labels)
    ce_gated = task_loss(gated.logits, batch.labels)
    if teacher is None:
        kd = distillation(gated.logits, dense.logits, batch.labels)
    else:  # both passes toward the frozen pretrained model: the anchor dense quality is measured against
        kd = distillation(gated.logits, anchor, batch.labels) + distillation(dense.logits, anchor, batch.labels)
    logged = {"ce_dense": ce_dense, "ce_gated": ce_gated, "kd": kd, "flops": frac.mean()}
    loss = ce_dense + ce_gated + j.distill_weight * kd + j.budget_weight * budget_penalty(frac, target, "square")
    return loss, {k: float(v.detach()) for k, v in logged.items()}


def _train(
    cfg, bundle: DataBundle, model: GatedEncoder, ctrl: Controller, partial: Path, teacher=None, cost=None
) -> dict:
    j = cfg.joint
    train = EncodedCorpus.build(
        bundle.dataset, _rows(bundle, "train"), bundle.tokenizer, bundle.tasks, model.spec.suffix_buckets
    )
    groups = [
        {"params": list(model.parameters()), "lr": j.lr, "weight_decay": 0.0},
        {"params": list(ctrl.parameters()), "lr": j.controller_lr, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups)
    named = {**{f"model.{n}": p for n, p in model.named_parameters()}, **dict(ctrl.named_parameters(prefix="ctrl"))}
    start = 0
    if partial.exists():
        tensors, state = load_checkpoint(partial)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ctrl.load_state_dict({k[11:]: v for k, v in tensors.items() if k.startswith("controller.")})
        restore_optimizer_state(opt, named, tensors, state["optimizer"])
        start = state["step"]
        log.info("resuming the joint phase from step %d/%d (%s)", start, j.steps, partial)
    model.train()
    ctrl.train()
    per_epoch = len(train.batches(j.max_words, shuffle=True, seed=cfg.seed + 1, epoch=0))
    batches: dict[int, list] = {}
    bar = tqdm(total=j.steps, initial=start, desc="joint", unit="step", mininterval=5.0)
    t0, last = time.time(), {}
    for step in range(start, j.steps):
        epoch, pos = divmod(step, per_epoch)
        if epoch not in batches:
            batches = {epoch: train.batches(j.max_words, shuffle=True, seed=cfg.seed + 1, epoch=epoch)}
        epoch_batches = batches[epoch]
        batch = train.batch(epoch_batches[pos % len(epoch_batches)])
        loss, last = _step_loss(cfg, model, ctrl, batch, step, j.steps, teacher, cost)
        for group, rate in zip(opt.param_groups, (j.lr, j.controller_lr), strict=True):
            group["lr"] = rate * lr_factor(j.schedule, step, j.steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*model.parameters(), *ctrl.parameters()], 1.0)
        opt.step()
        bar.update(1)
        bar.set_postfix(flops=f"{last['flops']:.3f}", kd=f"{last['kd']:.3f}", refresh=False)
        log_scalars("joint", last, step + 1)
        done = step + 1
        if done % j.checkpoint_every == 0 and done < j.steps:
            opt_t, opt_s = optimizer_state(opt, named)
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
            tensors.update({f"controller.{k}": v for k, v in ctrl.state_dict().items()})
            tensors.update(opt_t)
            save_checkpoint(partial, tensors, {"step": done, "optimizer": opt_s})
    bar.close()
    model.eval()
    ctrl.eval()
    return {"steps": j.steps, "minutes": round((time.time() - t0) / 60, 2), "last_step": last}


def backbone_with_controller(cfg, bundle: DataBundle) -> tuple[GatedEncoder, dict, Path, Controller | None]:
    """The backbone every job that selects one runs: pretrained (cached), then co-trained with a controller
    when ``joint.steps > 0`` (cached too).

    Returns:
        (backbone, its metrics (with ``joint`` when co-trained), its folder, the joint controller or None).
    """
    from metasparse.train.pretraining import pretrain

    model, metrics, folder = pretrain(cfg, bundle)
    if cfg.joint.steps == 0:
        return model, metrics, folder, None
    model, ctrl, joint_metrics, joint_folder = joint_train(cfg, bundle, model, folder)
    return model, {**metrics, "joint": joint_metrics}, joint_folder, ctrl
