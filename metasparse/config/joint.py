"""Schema of the joint phase (``conf/joint/*.yaml``): backbone and controller co-trained after pretraining."""

from __future__ import annotations

from dataclasses import dataclass

from metasparse.errors import require


@dataclass
class JointConfig:
    """The joint phase after pretraining: backbone and a multitask controller trained together under the
    budget, with self-distillation from the dense model (``metasparse.train.joint``). Cached beside the
    backbone; every job that selects a backbone then uses the co-trained one.

    Attributes:
        steps: optimisation steps (0: no joint phase, the random-pattern backbone as it is).
        lr: the backbone's AdamW learning rate.
        controller_lr: the controller's.
        schedule: ``constant``: both rates as given for every step (the joint phases before the option, their
            cache keys); ``linear``: both decay linearly to 0 at the last step, as pretraining's do, so the
            phase ends on settled weights instead of leaving the backbone at a quarter of pretraining's peak
            rate.
        target: budget the controller is trained toward, a fraction of dense in ``unit`` (annealed from dense
            over ``budget_warmup``).
        unit: ``flops`` (analytic; the joint phases before the option, their cache keys) or ``latency``: the
            pretrained backbone's cost table for this machine and thread count at batch 1 (measured and
            stored beside it on first use), the price the main job's budget uses; the folder's key then
            names the table, so another machine co-trains its own.
        budget_weight: weight of the squared budget gap.
        budget_warmup: share of the steps over which the budget anneals from 1.0 (the jobs' config,
            ``conf/joint/default.yaml``, sets 0: annealed, the controller saturated; this default is the
            Python API's, unchanged so that code written against it keeps its behaviour).
        budget_spread: the widest range of pattern logits the budget reads as it is
            (:func:`metasparse.control.controller.budget_view`); None: the plain softmax, as in the joint
            phases before it (their cache keys), through which a saturated controller has no budget gradient.
        distill_weight: weight of the KL toward the teacher on each word.
        teacher: ``dense``: the dense pass of the model being trained (detached) teaches the gated pass;
            ``frozen``: a frozen copy of the pretrained backbone teaches both the dense and the gated pass,
            an anchor that keeps dense quality from drifting while the shared weights co-adapt.
        tau_start, tau_end: Gumbel temperature schedule.
        max_words: padded words per batch.
        checkpoint_every: steps between resumable checkpoints.
    """

    steps: int = 0
    lr: float = 5e-4
    controller_lr: float = 3e-3
    schedule: str = "constant"
    target: float = 0.5
    unit: str = "flops"
    budget_weight: float = 20.0
    budget_warmup: float = 0.3
    budget_spread: float | None = None
    distill_weight: float = 1.0
    teacher: str = "dense"
    tau_start: float = 2.0
    tau_end: float = 0.3
    max_words: int = 2048
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        require(self.steps >= 0, "joint.steps", ">= 0", self.steps)
        require(self.lr > 0 and self.controller_lr > 0, "joint.lr/controller_lr", "> 0", (self.lr, self.controller_lr))
        require(self.schedule in ("constant", "linear"), "joint.schedule", "constant | linear", self.schedule)
        require(0 < self.target <= 1, "joint.target", "(0, 1]", self.target)
        require(self.unit in ("flops", "latency"), "joint.unit", "flops, latency", self.unit)
        require(self.budget_weight >= 0, "joint.budget_weight", ">= 0", self.budget_weight)
        require(0 <= self.budget_warmup <= 1, "joint.budget_warmup", "[0, 1]", self.budget_warmup)
        spread = self.budget_spread
        require(spread is None or spread > 0, "joint.budget_spread", "> 0 or null", spread)
        require(self.distill_weight >= 0, "joint.distill_weight", ">= 0", self.distill_weight)
        require(self.teacher in ("dense", "frozen"), "joint.teacher", "dense | frozen", self.teacher)
        require(self.max_words >= 64, "joint.max_words", ">= 64", self.max_words)
        require(self.checkpoint_every >= 1, "joint.checkpoint_every", ">= 1", self.checkpoint_every)
