"""MAML (Finn et al. 2017) on ``torch.func.functional_call``, shaped like learn2learn's API.

    maml = MAML(model, lr=0.1, first_order=False, adapt=lambda name: name.startswith("controller."))
    learner = maml.clone()              # fast weights start at the module's parameters
    learner.adapt(support_loss(learner))
    query_loss(learner).backward()      # meta-gradient reaches the module's parameters

Only the parameters selected by ``adapt`` change in the inner loop (ANIL is ``adapt`` = the head only);
the rest are used as they are. Parameters selected by ``inner_only`` adapt in the inner loop from the
module's values but are not meta-learned: the learner starts from a detached copy, so no meta-gradient
reaches them (the embedding tables: their outer update would be plain multi-task fine-tuning of the
backbone, at the cost of a dense gradient of every table per episode). Second order keeps the inner
graph (``create_graph=True``); first order treats the inner gradients as constants, so the meta-gradient
is the query gradient at the adapted weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call


def _select(
    module: nn.Module, adapt: Callable[[str], bool] | None, inner_only: Callable[[str], bool] | None = None
) -> list[str]:
    names = [
        n
        for n, p in module.named_parameters()
        if (p.requires_grad or (inner_only is not None and inner_only(n))) and (adapt is None or adapt(n))
    ]
    if not names:
        raise ValueError("no trainable parameter is selected for adaptation")
    return names


class Learner:
    """A task-specific copy of the adapted parameters; calling it runs the module with them.

    Embedding tables in ``row_rates`` (name -> plain SGD rate) take a row-sparse step: the learner owns a
    private copy of each, its lookups produce sparse gradients, and a step changes only the rows the loss
    looked up, in place. The dense step would fill, scale and subtract the whole table (millions of values)
    for the few hundred rows a support set touches: three quarters of a light inner step's time. It is the
    same SGD step; it is used only where nothing differentiates through it (see :meth:`MAML.clone`).
    """

    def __init__(
        self,
        module: nn.Module,
        fast: dict[str, torch.Tensor],
        step: Callable[[dict, dict], dict],
        first_order: bool,
        row_rates: dict[str, float] | None = None,
    ) -> None:
        self.module, self.fast, self._step, self.first_order = module, fast, step, first_order
        self.row_rates = dict(row_rates or {})
        self._tables = [module.get_submodule(n.rpartition(".")[0]) for n in self.row_rates]

    def __call__(self, *args, **kwargs):
        flags = [t.sparse for t in self._tables]
        for t in self._tables:  # sparse gradients for the row-sparse tables, for this call only
            t.sparse = True
        try:
            return functional_call(self.module, self.fast, args, kwargs, strict=False)
        finally:
            for t, f in zip(self._tables, flags, strict=True):
                t.sparse = f

    def adapt(self, loss: torch.Tensor) -> None:
        """One inner step on ``loss`` (computed with this learner)."""
        names = list(self.fast)
        grads = torch.autograd.grad(
            loss, [self.fast[n] for n in names], create_graph=not self.first_order, allow_unused=True
        )
        grads = dict(zip(names, grads, strict=True))
        with torch.no_grad():
            for n, rate in self.row_rates.items():
                g = grads.pop(n)
                if g is not None:
                    g = g.coalesce()
                    self.fast[n].index_add_(0, g.indices()[0], g.values(), alpha=-rate)
        grads = {n: (torch.zeros_like(self.fast[n]) if g is None else g) for n, g in grads.items()}
        if self.first_order:
            grads = {n: g.detach() for n, g in grads.items()}
        dense = {n: self.fast[n] for n in grads}
        self.fast = {**self.fast, **self._step(dense, grads)}


class MAML(nn.Module):
    """Model-agnostic meta-learning wrapper.

    Args:
        module: the network whose selected parameters adapt per task.
        lr: inner-loop learning rate.
        first_order: drop second-order terms (FOMAML).
        adapt: predicate on parameter names: which parameters adapt (default: all trainable ones).
        inner_only: predicate on parameter names: parameters that adapt in the inner loop (even if frozen
            in the module) but are never meta-learned.
        lr_scale: per-parameter multiplier of ``lr`` (a rate per group); default 1 for every parameter.
        inner_optimizer: ``sgd`` (``w - rate * g``) or ``adam`` (``w - rate * m / sqrt(v)``, bias-corrected,
            state per learner): Adam's per-element step sizes suit embedding rows, whose gradients differ by
            orders of magnitude between frequent and rare words.
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
        super().__init__()
        if lr <= 0:
            raise ValueError(f"inner lr must be > 0, got {lr}")
        if inner_optimizer not in ("sgd", "adam"):
            raise ValueError(f"inner_optimizer={inner_optimizer!r}; allowed: sgd, adam")
        self.module, self.lr, self.first_order, self.inner_optimizer = module, lr, first_order, inner_optimizer
        self.adapt_names = _select(module, adapt, inner_only)
        self.inner_only = [n for n in self.adapt_names if inner_only is not None and inner_only(n)]
        self.lr_scale = {n: 1.0 if lr_scale is None else float(lr_scale(n)) for n in self.adapt_names}

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def inner_rates(self) -> dict[str, torch.Tensor | float]:
        return {n: self.lr * self.lr_scale[n] for n in self.adapt_names}

    def clone(self, first_order: bool | None = None, lr_scale: float = 1.0) -> Learner:
        """A learner whose fast weights are (graph-connected) views of the module's parameters.

        Args:
            first_order: overrides the wrapper's setting for this learner (e.g. plain fine-tuning at test time).
            lr_scale: multiplies every inner rate (a test-time learning rate other than the meta-trained one);
                Meta-SGD's learned per-element rates keep their shape, only their scale changes.
        """
        first_order = self.first_order if first_order is None else first_order
        params = dict(self.module.named_parameters())
        fast = {n: params[n] for n in self.adapt_names}
        rates = self.inner_rates()
        if lr_scale != 1.0:
            rates = {n: r * lr_scale for n, r in rates.items()}
        rows = {n: float(rates[n]) for n in self.inner_only if self._row_sparse(n, rates[n], first_order)}
        for n in self.inner_only:
            # a row-sparse table is stepped in place: the learner's own copy, never the module's
            fast[n] = (params[n].detach().clone() if n in rows else params[n].detach()).requires_grad_(True)
        dense_rates = {n: r for n, r in rates.items() if n not in rows}
        step = _sgd(dense_rates) if self.inner_optimizer == "sgd" else _adam(dense_rates)
        return Learner(self.module, fast, step, first_order, row_rates=rows)

    def _row_sparse(self, name: str, rate, first_order: bool) -> bool:
        """Whether an inner-only parameter can take the row-sparse step: an embedding table under first-order
        SGD at a rate that is not learned (a learned rate or mask, second-order terms and Adam's state all
        need the dense, differentiable step)."""
        learned = isinstance(rate, torch.Tensor) and rate.requires_grad
        table = self.module.get_submodule(name.rpartition(".")[0])
        return first_order and self.inner_optimizer == "sgd" and not learned and isinstance(table, nn.Embedding)


def _sgd(rates: dict) -> Callable[[dict, dict], dict]:
    return lambda fast, grads: {n: fast[n] - rates[n] * grads[n] for n in fast}


def _adam(rates: dict, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Callable[[dict, dict], dict]:
    """Adam as a (differentiable) inner step; a row whose gradient has always been zero does not move."""
    state: dict = {"t": 0, "m": {}, "v": {}}

    def step(fast: dict, grads: dict) -> dict:
        state["t"] += 1
        t, out = state["t"], {}
        for n, g in grads.items():
            m = b1 * state["m"].get(n, 0.0) + (1 - b1) * g
            v = b2 * state["v"].get(n, 0.0) + (1 - b2) * g * g
            state["m"][n], state["v"][n] = m, v
            # sqrt(v + tiny): finite derivative at v = 0 under second-order MAML
            update = (m / (1 - b1**t)) / ((v / (1 - b2**t) + 1e-30).sqrt() + eps)
            out[n] = fast[n] - rates[n] * update
        return out

    return step


def anil(module: nn.Module, lr: float, head: Callable[[str], bool], first_order: bool = True) -> MAML:
    """ANIL (Raghu et al. 2020): MAML whose inner loop adapts only the "head" parameters (``head(name)``);
    the body is learned in the outer loop only."""
    return MAML(module, lr, first_order, adapt=head)
