"""Controllers that are not meta-learned, the comparison the meta-learning claim needs.

* multitask: trained jointly (non-episodically) on the source cells' sentences toward the budget, then
  fine-tuned on a target with the same steps, shots and inner loop as the meta-learned controller;
* scratch: a fresh controller trained only on the target cell, with the same few steps, and to
  convergence on the cell's whole train split (the ceiling for the adaptation gap).

All are trained with :func:`metasparse.control.train.train_controller` on the frozen backbone and their
bias calibrated so hard decisions meet the budget.
"""

from __future__ import annotations

import torch

from metasparse.control.budget import CostModel
from metasparse.control.controller import Controller, ControllerSpec
from metasparse.control.train import ControllerTrainConfig, calibrate_bias, train_controller
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import GatedEncoder


def trained_controller(
    model: GatedEncoder,
    train: EncodedCorpus,
    calib: EncodedCorpus,
    target: float,
    *,
    spec: ControllerSpec | None = None,
    steps: int = 300,
    max_words: int = 1024,
    seed: int = 0,
    progress: bool = False,
    cost: CostModel | None = None,
    init: Controller | None = None,
) -> Controller:
    """A controller trained on ``train`` toward ``target`` and calibrated on ``calib``, the budget priced by
    ``cost`` (default analytic FLOPs): a fresh one, or a copy of ``init`` (e.g. the joint phase's
    controller, which co-trained with the backbone) when given; ``init`` itself is left as it is."""
    torch.manual_seed(seed)
    ctrl = Controller(model, spec)
    if init is not None:
        ctrl.load_state_dict(init.state_dict())  # refuses another shape with the keys that differ
    cfg = ControllerTrainConfig(target=target, steps=steps, max_words=max_words)
    train_controller(model, ctrl, train, cfg, seed=seed, progress=progress, cost=cost)
    calibrate_bias(model, ctrl, calib, target, cost=cost)
    return ctrl.eval()
