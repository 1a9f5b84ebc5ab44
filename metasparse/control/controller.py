"""Lightweight per-layer controllers that pick an execution pattern per input and route tokens.

Each layer has its own tiny MLP over the layer input pooled across words, plus, optionally
(``uncertainty_task``), one uncertainty feature: the mean entropy of an early tag distribution (the model's
own UPOS head applied to the layer input), so uncertain inputs can be given broader patterns. The main job
goes without it: at batch 1 it doubles a decision's ops, and a cheaper decision leaves more of a latency
budget to the layers. Token routing scores come from a
linear router plus the per-token entropy, so uncertain tokens are the ones the FFN keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metasparse.control.relax import gumbel_softmax_st
from metasparse.errors import require
from metasparse.model.encoder import Decision, GatedEncoder
from metasparse.model.uncertainty import normalized_entropy
from metasparse.scoring.methods import PolicyMethod

PLACEMENTS = ("per_layer", "upfront")
# The widest range of pattern logits :func:`budget_view` reads as it is, unless told otherwise.
BUDGET_SPREAD = 4.0


@dataclass
class ControllerSpec:
    """Controller size and inputs.

    Attributes:
        hidden: hidden width of each layer's MLP.
        uncertainty_task: task whose head gives the early tag distribution (None: no uncertainty feature).
        token_router: learn per-token routing scores (used by patterns with tokens < 1).
        placement: ``per_layer`` (each layer decides from its own input) or ``upfront`` (one network
            decides every layer's pattern from the embeddings: one decision per forward instead of one
            per layer, which is what a controller costs at batch 1, where every small op is overhead).

    The jobs' config group (``conf/controller/default.yaml``) sets ``placement: upfront`` and no
    uncertainty feature, the values the measurements chose (README, "After the runtime fixes"); these
    defaults are the Python API's, unchanged so that code written against it keeps its behaviour.
    """

    hidden: int = 64
    uncertainty_task: str | None = "upos"
    token_router: bool = True
    placement: str = "per_layer"

    def __post_init__(self) -> None:
        require(self.hidden >= 1, "controller.hidden", ">= 1", self.hidden)
        require(self.placement in PLACEMENTS, "controller.placement", ", ".join(PLACEMENTS), self.placement)


class Controller(nn.Module):
    """One small decision network per layer of a :class:`GatedEncoder`.

    Args:
        model: the encoder it will control (sizes are read from it; it is not registered as a child).
        spec: controller settings.
    """

    def __init__(self, model: GatedEncoder, spec: ControllerSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or ControllerSpec()
        d, L, P = model.spec.d_model, model.spec.layers, model.n_patterns
        if self.spec.uncertainty_task is not None and self.spec.uncertainty_task not in model.spec.tasks:
            raise ValueError(
                f"controller.uncertainty_task={self.spec.uncertainty_task!r} is not a model task; "
                f"available: {', '.join(model.spec.tasks)}"
            )
        self.upfront = self.spec.placement == "upfront"
        self.n_layers, self.n_patterns = L, P
        n_in = d + (1 if self.spec.uncertainty_task else 0)
        n_out = L * P if self.upfront else P
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Linear(n_in, self.spec.hidden), nn.ReLU(), nn.Linear(self.spec.hidden, n_out))
            for _ in range(1 if self.upfront else L)
        )
        self.routers = nn.ModuleList(nn.Linear(d, 1) for _ in range(L)) if self.spec.token_router else None
        for net in self.nets:  # every pattern equally likely at first: the budget term decides how lean to go
            nn.init.zeros_(net[2].weight)
            nn.init.zeros_(net[2].bias)

    def flops_per_layer(self, model: GatedEncoder, n: int) -> int:
        """Matmul FLOPs the controller spends on one layer of a sentence of ``n`` words."""
        d = model.spec.d_model
        n_in = self.nets[0][0].in_features
        f = 2 * n_in * self.spec.hidden + 2 * self.spec.hidden * self.nets[0][2].out_features
        if self.spec.uncertainty_task:
            f += 2 * n * d * model.spec.tasks[self.spec.uncertainty_task]
        router = 2 * n * d if self.routers is not None and any(p.tokens < 1.0 for p in model.codebook) else 0
        if self.upfront:  # one pass decides every layer; a router, if needed, still runs per layer
            return f / self.n_layers + router
        return f + router  # the router runs only when some pattern routes tokens

    def logits(
        self, model: GatedEncoder, layer: int, x: torch.Tensor, mask: torch.Tensor | None, need_tokens: bool = True
    ):
        """Pattern logits ``[B, P]`` and token scores ``[B, T]`` (or None) for one layer's input.

        Token scores are only computed when ``need_tokens`` (some pattern routes tokens): at batch 1
        every small op is dispatch overhead, which is most of what a controller costs there.
        """
        tok_scores, per_word = None, x
        if self.spec.uncertainty_task:
            ent = normalized_entropy(model.heads[self.spec.uncertainty_task](x))  # [B, T] in [0, 1]
            per_word = torch.cat([x, ent.unsqueeze(-1)], dim=-1)  # one pooling for both features
            tok_scores = ent
        feats = _pool(per_word, mask)
        if need_tokens and self.routers is not None:
            r = self.routers[layer](x).squeeze(-1)
            tok_scores = r if tok_scores is None else tok_scores + r
        return self._mlp(layer, feats), (tok_scores if need_tokens else None)

    def _mlp(self, layer: int, feats: torch.Tensor) -> torch.Tensor:
        """``nets[layer](feats)`` with functional calls: the same kernels without three module dispatches,
        which at batch 1 cost as much as the arithmetic."""
        first, last = self.nets[layer][0], self.nets[layer][2]
        return F.linear(torch.relu(F.linear(feats, first.weight, first.bias)), last.weight, last.bias)

    def _upfront_argmax_policy(self, record: list | None):
        """The inference path of the main job's controller (upfront, hard, no token scores, no uncertainty
        feature): the same decisions as :meth:`policy`'s general path in one closure with the ops inline.

        Why its own path: at batch 1 the decision is a handful of tiny ops, each run once per forward
        right after the embeddings, and there the Python around them (method calls, a dict, per-layer
        branches) cost about as much as the ops. Timed in place (bench.speed's ``TimedPolicy``) on the legal
        run's controller, 64 test sentences: 3.2-3.4% of dense latency before, 2.6-2.7% with this path; in
        bench.speed's shorter sentences 4.1% -> 3.4%. Each op costs 5-15 us there against 1-3 us in a warm
        loop: after a forward's weights went through the caches, little of the dispatcher's state is left.

        Two more cuts, timed the same way on bench.speed's 64 batch-1 sentences (3.2% -> 2.8% of dense):
        an unpadded batch pools by ``sum`` with the ``1 / T`` folded into the first matmul's ``alpha``
        (``mean`` over words took 16 us there, ``sum`` 6 us), and every layer's :class:`Decision` is built
        with the levels, so layers 1.. only index a list (4 us each before).
        """
        first, last = self.nets[0][0], self.nets[0][2]
        L, P = self.n_layers, self.n_patterns
        decisions: list[Decision] = []

        def decide(layer: int, x: torch.Tensor, mask: torch.Tensor | None) -> Decision:
            if layer == 0:
                if mask is None:  # no padding: the mean is the sum scaled inside the first matmul
                    feats, scale = x.sum(1), 1.0 / x.shape[1]
                else:
                    feats, scale = _pool(x, mask), 1.0
                hidden = torch.addmm(first.bias, feats, first.weight.t(), alpha=scale).relu_()
                logits = torch.addmm(last.bias, hidden, last.weight.t()).view(-1, L, P)
                decisions[:] = [Decision(token_scores=None, hard_levels=lv) for lv in logits.argmax(-1).unbind(1)]
                if record is not None:
                    record.extend(F.softmax(logits, dim=-1).unbind(1))
            return decisions[layer]

        return decide

    def decision_biases(self) -> dict[str, torch.Tensor]:
        """Each decision network's output bias (``nets.<i>.2.bias``): what a calibration shifts."""
        return {f"nets.{i}.2.bias": net[2].bias for i, net in enumerate(self.nets)}

    def policy(
        self,
        model: GatedEncoder,
        *,
        hard: bool = True,
        tau: float = 1.0,
        record: list | None = None,
        budget_spread: float | None = None,
    ):
        """A policy for ``model.forward``.

        Args:
            model: the controlled encoder.
            hard: deterministic argmax decisions (inference); else straight-through Gumbel samples.
            tau: Gumbel temperature.
            record: if given, each layer's pattern probabilities ``[B, P]`` are appended (for the budget):
                the softmax of the logits, or with ``budget_spread`` and soft decisions as :func:`budget_view`
                reads them.
            budget_spread: :func:`budget_view`'s ``spread`` for the recorded probabilities of soft decisions
                (``joint.budget_spread``); None: the plain softmax.
        """

        need_tokens = any(p.tokens < 1.0 for p in model.codebook)
        if self.upfront and hard and not need_tokens and not self.spec.uncertainty_task:
            return self._upfront_argmax_policy(record)

        cache: dict = {}

        def decide(layer: int, x: torch.Tensor, mask: torch.Tensor | None) -> Decision:
            if self.upfront:
                if layer == 0:  # one pass over the layer-0 input decides every layer
                    logits, _ = self.logits(model, 0, x, mask, False)
                    cache["logits"] = logits.view(-1, self.n_layers, self.n_patterns)
                    if hard:  # every layer's argmax at once: later layers only read theirs (no op each)
                        cache["levels"] = cache["logits"].argmax(-1).unbind(1)
                tok = None
                if need_tokens:
                    tok = self.routers[layer](x).squeeze(-1) if self.routers is not None else model.token_uncertainty(x)
                if hard:
                    if record is not None:
                        record.append(F.softmax(cache["logits"][:, layer], dim=-1))
                    return Decision(token_scores=tok, hard_levels=cache["levels"][layer])
                logits = cache["logits"][:, layer]
            else:
                logits, tok = self.logits(model, layer, x, mask, need_tokens)
            if record is not None:
                record.append(
                    F.softmax(logits, dim=-1) if hard or budget_spread is None else budget_view(logits, budget_spread)
                )
            if hard:
                return Decision(token_scores=tok, hard_levels=logits.argmax(-1))
            w = gumbel_softmax_st(logits, tau)
            gate = None
            if tok is not None:  # straight-through gradient into the router
                s = torch.sigmoid(tok)
                gate = 1.0 + s - s.detach()
            return Decision(w, tok, gate)

        return decide


def budget_view(logits: torch.Tensor, spread: float = BUDGET_SPREAD) -> torch.Tensor:
    """Pattern probabilities ``[B, P]`` as a budget can read them: the softmax of ``logits`` tempered per
    row so their range (largest minus smallest) is at most ``spread``; rows within it are read as they are.
    The temperature is a constant to the gradient. Used by the joint phase with ``joint.budget_spread``.

    Why: a saturated controller has no budget gradient. The joint phase's controller, its budget annealed
    from dense, ended with every sentence and layer on the 0.75 pattern by margins of about 12 logits (its
    expected FLOPs 0.75 against a target of 0.5), and meta-training from it stayed on those decisions for
    90-150 of its 150 steps (README, "A saturated controller"). Read through the tempered softmax every
    pattern keeps a share of at least about ``exp(-spread)`` of the top one, so the budget's gradient moves
    the logits until they are back within ``spread``. (The default joint phase now meets its budget from
    the first step instead, ``joint.budget_warmup: 0``, which measured as well.)
    """
    values = logits.detach()
    temperature = ((values.amax(-1) - values.amin(-1)) / spread).clamp(min=1.0)
    return F.softmax(logits / temperature.unsqueeze(-1), dim=-1)


def _pool(per_word: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over each row's real words; ``mask`` None (a batch known to have no padding) or without
    padding: the plain mean, one op instead of four."""
    return per_word.mean(1) if mask is None or bool(mask.all()) else _masked_mean(per_word, mask)


def _masked_mean(per_word: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each row's real words (``mask``), ``[B, T, F] -> [B, F]``."""
    m = mask.to(per_word.dtype)
    return (per_word * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)


def controlled(model: GatedEncoder, ctrl: Controller, name: str = "meta") -> PolicyMethod:
    """A trained controller as a method: hard argmax decisions, its cost counted per layer, its pattern
    probabilities recorded for diagnostics."""
    ctrl.eval()
    return PolicyMethod(
        model,
        lambda record: ctrl.policy(model, record=record),
        lambda n: ctrl.flops_per_layer(model, n),
        name,
        decisions_per_forward=1 if ctrl.upfront else None,
    )
