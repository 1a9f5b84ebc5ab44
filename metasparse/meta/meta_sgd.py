"""Meta-SGD (Li et al. 2017): MAML with a learned inner learning rate per parameter element."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from metasparse.meta.maml import MAML


class MetaSGD(MAML):
    """Like :class:`MAML`, but the inner rates are meta-parameters (initialised at ``lr``).

    The rates live in ``self.rates`` (a ParameterDict keyed by the parameter name with dots replaced),
    so an optimiser over ``MetaSGD.parameters()`` learns them alongside the module's parameters.
    """

    def __init__(
        self, module: nn.Module, lr: float, first_order: bool = False, adapt: Callable[[str], bool] | None = None
    ) -> None:
        super().__init__(module, lr, first_order, adapt)
        params = dict(module.named_parameters())
        self.rates = nn.ParameterDict(
            {n.replace(".", "__"): nn.Parameter(torch.full_like(params[n], lr)) for n in self.adapt_names}
        )

    def inner_rates(self) -> dict[str, torch.Tensor | float]:
        return {n: self.rates[n.replace(".", "__")] for n in self.adapt_names}
