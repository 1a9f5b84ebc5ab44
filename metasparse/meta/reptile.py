"""Reptile (Nichol et al. 2018): plain SGD on each task, then move the initialisation toward the result.

``Reptile.meta_grads(learners)`` sets ``p.grad = p - mean(adapted p)``, so any optimiser step with
learning rate epsilon performs ``p <- p + epsilon * (mean adapted - p)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from metasparse.meta.maml import MAML, Learner


class Reptile(MAML):
    """First-order only: the inner loop never builds a graph back to the module's parameters."""

    def __init__(
        self,
        module: nn.Module,
        lr: float,
        adapt: Callable[[str], bool] | None = None,
        lr_scale: Callable[[str], float] | None = None,
        inner_only: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(module, lr, first_order=True, adapt=adapt, lr_scale=lr_scale, inner_only=inner_only)

    def clone(self, first_order: bool | None = None, lr_scale: float = 1.0) -> Learner:
        learner = super().clone(first_order=True, lr_scale=lr_scale)
        learner.fast = {n: p.detach().clone().requires_grad_(True) for n, p in learner.fast.items()}
        return learner

    def meta_grads(self, learners: Sequence[Learner], total: int | None = None) -> None:
        """Accumulate the Reptile direction into ``.grad`` of the adapted parameters.

        ``total`` is the whole meta-batch's size when ``learners`` are one rank's share of it (the shares'
        directions are then summed across ranks); by default the learners are the whole meta-batch.
        """
        params = dict(self.module.named_parameters())
        n_total = total or len(learners)
        for n in [n for n in self.adapt_names if n not in self.inner_only]:  # inner-only: never meta-learned
            g = torch.stack([params[n].detach() - lr.fast[n].detach() for lr in learners]).sum(0) / n_total
            params[n].grad = g if params[n].grad is None else params[n].grad + g
