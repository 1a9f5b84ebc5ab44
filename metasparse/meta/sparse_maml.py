"""sparse-MAML (von Oswald et al. 2021, "Learning where to learn"): MAML with a meta-learned binary mask
over which parameter elements the inner loop may change.

Each adapted parameter ``w`` gets real-valued mask scores ``s`` of its shape; the inner step is
``w - rate * m * g`` with ``m = 1[s >= 0]``. The outer loop learns ``s`` through a straight-through
estimator (the forward pass uses the hard 0/1 mask, the backward pass treats ``m`` as ``s``), so an element
whose inner updates hurt the query loss is switched off, and one that helps stays on. This works under
first-order MAML too: the step is linear in ``m`` whatever the inner gradient is, so the meta-gradient of
the mask is ``-rate * g * dL_query/dw'`` without second-order terms.

Inner-only parameters (the embedding tables: millions of elements, never meta-learned) are not masked:
which of their rows adapt is already decided by the support set (only looked-up rows move), and an
unmasked table keeps the row-sparse inner step (see :class:`~metasparse.meta.maml.Learner`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from metasparse.meta.maml import MAML


def straight_through_mask(scores: torch.Tensor) -> torch.Tensor:
    """``1[scores >= 0]`` in the forward pass, the identity in the backward pass."""
    hard = (scores >= 0).to(scores.dtype)
    return hard + scores - scores.detach()


class SparseMAML(MAML):
    """Like :class:`MAML`, plus mask scores (``self.mask_scores``, a ParameterDict keyed by the parameter
    name with dots replaced) that an optimiser over ``SparseMAML.parameters()`` learns with the module.

    Args:
        mask_init: the initial score of every element (> 0: every element adapts at first; its size sets
            how many outer steps of consistent evidence switch an element off).
        (the rest as :class:`MAML`)
    """

    def __init__(
        self,
        module: nn.Module,
        lr: float,
        first_order: bool = False,
        adapt: Callable[[str], bool] | None = None,
        inner_only: Callable[[str], bool] | None = None,
        lr_scale: Callable[[str], float] | None = None,
        inner_optimizer: str = "sgd",
        mask_init: float = 0.01,
    ) -> None:
        super().__init__(module, lr, first_order, adapt, inner_only, lr_scale, inner_optimizer)
        if mask_init <= 0:
            raise ValueError(f"mask_init must be > 0 (every element adapts at first), got {mask_init}")
        params = dict(module.named_parameters())
        self.masked = [n for n in self.adapt_names if n not in self.inner_only]
        self.mask_scores = nn.ParameterDict(
            {n.replace(".", "__"): nn.Parameter(torch.full_like(params[n], float(mask_init))) for n in self.masked}
        )

    def masks(self) -> dict[str, torch.Tensor]:
        """The hard masks (straight-through), by parameter name (meta-learned parameters only)."""
        return {n: straight_through_mask(self.mask_scores[n.replace(".", "__")]) for n in self.masked}

    def inner_rates(self) -> dict[str, torch.Tensor | float]:
        masks = self.masks()
        return {n: self.lr * self.lr_scale[n] * masks.get(n, 1.0) for n in self.adapt_names}

    @torch.no_grad()
    def kept_fraction(self, part_of: Callable[[str], str | None] = lambda n: n) -> dict[str, float]:
        """Share of the masked (meta-learned) elements the mask lets adapt, grouped by ``part_of(name)``
        (default: per parameter)."""
        kept: dict[str, list[float]] = {}
        for n in self.masked:
            on = self.mask_scores[n.replace(".", "__")] >= 0
            k = kept.setdefault(str(part_of(n)), [0, 0])
            k[0] += int(on.sum())
            k[1] += on.numel()
        return {g: a / b for g, (a, b) in kept.items()}
