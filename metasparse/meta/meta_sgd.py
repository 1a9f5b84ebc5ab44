"""Meta-SGD (Li et al. 2017): MAML with a learned inner learning rate per parameter element."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from metasparse.meta.maml import MAML


class MetaSGD(MAML):
    """Like :class:`MAML`, but the inner rates are meta-parameters (initialised at ``lr`` x ``lr_scale``).

    The rates live in ``self.rates`` (a ParameterDict keyed by the parameter name with dots replaced),
    so an optimiser over ``MetaSGD.parameters()`` learns them alongside the module's parameters. Meta-learned
    parameters get one rate per element; inner-only ones (embedding tables: millions of elements) one rate
    per tensor, learned all the same.
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
    ) -> None:
        super().__init__(module, lr, first_order, adapt, inner_only, lr_scale, inner_optimizer)
        params = dict(module.named_parameters())

        def initial(n: str) -> torch.Tensor:
            shape = () if n in self.inner_only else params[n].shape
            return torch.full(shape, lr * self.lr_scale[n], dtype=params[n].dtype)

        self.rates = nn.ParameterDict({n.replace(".", "__"): nn.Parameter(initial(n)) for n in self.adapt_names})

    def inner_rates(self) -> dict[str, torch.Tensor | float]:
        return {n: self.rates[n.replace(".", "__")] for n in self.adapt_names}
