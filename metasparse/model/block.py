"""One transformer block whose heads, FFN channel groups, FFN tokens and attention span can be switched
off per input. Pre-LN (the package's own backbones) or post-LN (BERT-family checkpoints converted by
:mod:`metasparse.model.pretrained`): in a post-LN block a sub-block that is off is skipped whole, norm
included, so a skipped layer is the identity and a routed-out token keeps its post-attention state.

Two execution paths share the weights:

* ``forward_sliced``: one hard :class:`Pattern` for a (sub-)batch. Heads and FFN channels are prefixes,
  so the weights used are zero-copy slices (``W[:n]``); fewer units means smaller matmuls. This is
  what inference and benchmarks run.
* ``forward_masked``: per-example pattern weights (one-hot, or relaxed for training) multiply masks
  onto a full computation. It saves nothing; it is the differentiable training path and the reference
  the sliced path is tested against.

The output projections are stored input-major (``[units, d]``) so their prefixes are contiguous too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metasparse.model.adapters import PathwayAdapter
from metasparse.model.attention import attend, attend_topk_masked
from metasparse.model.block_post import forward_masked_post
from metasparse.model.patterns import Pattern
from metasparse.model.profiling import region
from metasparse.model.tokens import select_tokens


class GatedBlock(nn.Module):
    """Transformer block with gateable units.

    Args:
        d_model: width.
        n_heads: attention heads.
        d_ffn: FFN hidden channels.
        n_groups: FFN channel groups (``d_ffn`` must divide evenly).
        dropout: dropout on the residual branches.
        norm: ``pre`` (norm before each sub-block) or ``post`` (after the residual sum, as in BERT).
        eps: the layer norms' epsilon.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ffn: int,
        n_groups: int,
        dropout: float = 0.0,
        norm: str = "pre",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if d_model % n_heads or d_ffn % n_groups:
            raise ValueError(f"d_model={d_model} must divide by heads={n_heads}, ffn={d_ffn} by groups={n_groups}")
        if norm not in ("pre", "post"):
            raise ValueError(f"norm={norm!r}; allowed: pre, post")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.n_groups, self.group_size = n_groups, d_ffn // n_groups
        self.post = norm == "post"
        self.ln1, self.ln2 = nn.LayerNorm(d_model, eps=eps), nn.LayerNorm(d_model, eps=eps)
        self.q, self.k, self.v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.o_weight = nn.Parameter(torch.empty(d_model, d_model))  # [heads * d_head, d_model]
        self.o_bias = nn.Parameter(torch.zeros(d_model))
        self.w1 = nn.Linear(d_model, d_ffn)
        self.w2_weight = nn.Parameter(torch.empty(d_ffn, d_model))  # [channels, d_model]
        self.w2_bias = nn.Parameter(torch.zeros(d_model))
        self.drop = nn.Dropout(dropout)
        # Set by metasparse.model.adapters.attach_adapters. An instance attribute, not a class default: a
        # class attribute would shadow the submodule nn.Module keeps in _modules once one is attached.
        self.adapter: PathwayAdapter | None = None
        for w in (self.q.weight, self.k.weight, self.v.weight, self.o_weight, self.w1.weight, self.w2_weight):
            nn.init.normal_(w, std=0.02)
        for b in (self.q.bias, self.k.bias, self.v.bias, self.w1.bias):
            nn.init.zeros_(b)

    # ----- where the norms sit: the only difference between pre-LN and post-LN -----------------
    def attn_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.post else self.ln1(x)

    def attn_residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.ln1(x + self.drop(y)) if self.post else x + self.drop(y)

    def ffn_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.post else self.ln2(x)

    def ffn_residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.ln2(x + self.drop(y)) if self.post else x + self.drop(y)

    # ----- hard, sliced -------------------------------------------------------------------------
    def forward_sliced(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        p: Pattern,
        token_scores: torch.Tensor | None,
        active: torch.Tensor | None = None,
    ):
        """Run ``x`` ``[B, T, d]`` under one pattern with sliced weights; with ``active`` ``[B, T]`` (tokens
        that have not exited), only those are updated, packed (see :meth:`_forward_packed`)."""
        if p.skip:
            return x
        if active is not None and not bool(torch.equal(active, mask)):
            return self._forward_packed(x, mask, p, token_scores, active)
        if p.n_heads == 0:  # static pruning can remove every head of a layer but keep some FFN groups
            with region("ffn"):
                return self._ffn_sliced(x, mask, p, token_scores)
        B, T, _ = x.shape
        n = p.n_heads * self.d_head
        with region("attention"):
            q, k, v = (t.view(B, T, p.n_heads, self.d_head).transpose(1, 2) for t in self.qkv_prefix(x, n))
            ctx = attend(q, k, v, mask, p.topk).transpose(1, 2).reshape(B * T, n)
            x = self.attn_residual(x, self.heads_out(ctx, p.n_heads).view(B, T, -1))
        if p.n_groups == 0:
            return x
        with region("ffn"):
            return self._ffn_sliced(x, mask, p, token_scores)

    def _forward_packed(self, x, mask, p: Pattern, token_scores, active) -> torch.Tensor:
        """Per-token early exit, executed packed: the running tokens of each row are gathered to the front
        (``A`` = the most any row has), and only they form queries and go through the FFN; every valid
        token, exited or not, is a key and a value. Exited tokens' states come back unchanged."""
        B, T, d = x.shape
        n_act = active.sum(1)
        A = int(n_act.max())
        if A == 0:
            return x
        order = torch.sort((~active).to(torch.int8), dim=1, stable=True).indices[:, :A]  # running tokens first
        qmask = torch.arange(A, device=x.device)[None, :] < n_act[:, None]
        idx = order[..., None].expand(B, A, d)
        old = x.gather(1, idx)
        xs = old
        scores = None if token_scores is None else token_scores.gather(1, order)
        if p.n_heads > 0:
            n = p.n_heads * self.d_head
            with region("attention"):
                h = self.attn_input(x)
                q = self.out_prefix("q", h.gather(1, idx), n).view(B, A, p.n_heads, self.d_head).transpose(1, 2)
                k = self.out_prefix("k", h, n).view(B, T, p.n_heads, self.d_head).transpose(1, 2)
                v = self.out_prefix("v", h, n).view(B, T, p.n_heads, self.d_head).transpose(1, 2)
                ctx = attend(q, k, v, mask, p.topk).transpose(1, 2).reshape(B * A, n)
                xs = self.attn_residual(xs, self.heads_out(ctx, p.n_heads).view(B, A, -1))
        if p.n_groups > 0:
            with region("ffn"):
                xs = self._ffn_sliced(xs, qmask, p, scores)
        xs = torch.where(qmask[..., None], xs, old)  # padding slots write back what they gathered
        return x.scatter(1, idx, xs)

    def _ffn_sliced(self, x: torch.Tensor, mask: torch.Tensor, p: Pattern, token_scores: torch.Tensor | None):
        B, T, _ = x.shape
        f = p.n_groups * self.group_size
        h2 = self.ffn_input(x)
        if p.tokens >= 1.0:
            a = F.gelu(self.out_prefix("w1", h2.reshape(B * T, -1), f))
            return self.ffn_residual(x, self.ffn_out(a, p.n_groups).view(B, T, -1))
        if token_scores is None:
            raise ValueError("a pattern with tokens < 1 needs token scores from the policy")
        flat = select_tokens(token_scores, mask, p.tokens).reshape(-1).nonzero().squeeze(1)
        hs = h2.reshape(B * T, -1).index_select(0, flat)
        y = self.ffn_out(F.gelu(self.out_prefix("w1", hs, f)), p.n_groups)
        rows = x.reshape(B * T, -1)  # routed tokens get the FFN; the others pass through unchanged
        return rows.index_copy(0, flat, self.ffn_residual(rows.index_select(0, flat), y)).view(B, T, -1)

    # ----- the units' output projections, with their pathway adapters when attached -------------
    def heads_out(self, ctx: torch.Tensor, n_heads: int) -> torch.Tensor:
        """The first ``n_heads`` heads' context ``[N, n_heads * d_head]`` projected back to ``[N, d]``."""
        n = n_heads * self.d_head
        if self.adapter is None:
            return self.in_prefix("o", ctx, n)
        out = self.in_prefix("o", self.adapter.head_context(ctx, n_heads), n)
        delta = self.adapter.head_delta(ctx, n_heads)
        return out if delta is None else out + delta

    def ffn_out(self, act: torch.Tensor, n_groups: int) -> torch.Tensor:
        """The first ``n_groups`` groups' activations ``[N, n_groups * group_size]`` projected to ``[N, d]``."""
        f = n_groups * self.group_size
        if self.adapter is None:
            return self.in_prefix("w2", act, f)
        out = self.in_prefix("w2", self.adapter.ffn_activation(act, n_groups), f)
        delta = self.adapter.ffn_delta(act, n_groups)
        return out if delta is None else out + delta

    # ----- the four kinds of sliced linear; an int8 runtime replaces them per prefix -------------
    packed: dict | None = None  # (name, units) -> prepacked int8 weights (metasparse.runtime.quantized)

    def qkv_prefix(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values ``[B, T, n]`` of the first ``n // d_head`` heads, from the block input.

        Without autograd the three projections run as one matmul on their stacked prefixes (at batch 1 a
        call's dispatch costs about what its arithmetic does). The stacked copy is cached per ``n`` and
        rebuilt whenever a weight is replaced or changed in place (an optimizer step or a load bumps its
        version), so adapted or reloaded weights are never read stale."""
        h = self.attn_input(x)
        if self.packed is not None or torch.is_grad_enabled():
            return self.out_prefix("q", h, n), self.out_prefix("k", h, n), self.out_prefix("v", h, n)
        weight, bias = self._stacked_qkv(n)
        return F.linear(h, weight, bias).split(n, dim=-1)

    def _stacked_qkv(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        tensors = [t for lin in (self.q, self.k, self.v) for t in (lin.weight, lin.bias)]
        versions = [t._version for t in tensors]
        cache = self.__dict__.setdefault("_qkv_cache", {})  # not a buffer: derived, never saved
        hit = cache.get(n)
        # the cache holds the source tensors themselves: identity cannot be fooled by a reused address
        if hit is None or any(a is not b for a, b in zip(hit[0], tensors, strict=True)) or hit[1] != versions:
            w = torch.cat([self.q.weight[:n], self.k.weight[:n], self.v.weight[:n]])
            b = torch.cat([self.q.bias[:n], self.k.bias[:n], self.v.bias[:n]])
            hit = cache[n] = (tensors, versions, w, b)
        return hit[2], hit[3]

    def out_prefix(self, name: str, x: torch.Tensor, n: int) -> torch.Tensor:
        """``x @ W[:n].T + b[:n]`` for q, k, v, w1 (a prefix of output units: contiguous rows)."""
        if self.packed is not None:
            return torch.ops.quantized.linear_dynamic(x, self.packed[name, n])
        lin = getattr(self, name)
        return F.linear(x, lin.weight[:n], lin.bias[:n])

    def in_prefix(self, name: str, x: torch.Tensor, n: int) -> torch.Tensor:
        """``x @ W[:n] + b`` for o, w2 (stored input-major, so a prefix of input units is contiguous rows)."""
        if self.packed is not None:
            return torch.ops.quantized.linear_dynamic(x, self.packed[name, n])
        return torch.addmm(getattr(self, f"{name}_bias"), x, getattr(self, f"{name}_weight")[:n])

    # ----- per-example weights over a codebook, masked (reference and relaxed training) ---------
    def forward_masked(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        codebook: list[Pattern],
        weights: torch.Tensor,
        token_scores: torch.Tensor | None,
        token_gate: torch.Tensor | None = None,
        active: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Full computation with per-example masks mixed by ``weights`` ``[B, len(codebook)]``.

        With one-hot weights this equals :meth:`forward_sliced` of each example's pattern. ``token_gate``
        (``[B, T]``, optional) multiplies the FFN token masks, so a router can get a straight-through
        gradient. ``active`` (``[B, T]``, optional): tokens that have not exited; the others come back
        unchanged (and are not routed), as on the packed sliced path.
        """
        if self.post:
            return forward_masked_post(self, x, mask, codebook, weights, token_scores, token_gate, active)
        x_in = x
        act = mask if active is None else active
        B, T, _ = x.shape
        H, dh = self.n_heads, self.d_head
        dev = x.device
        alive = weights.new_zeros(B)
        head_masks: dict[int | None, torch.Tensor] = {}
        unit_h = torch.arange(H, device=dev)
        for i, p in enumerate(codebook):
            if p.skip:
                continue
            alive = alive + weights[:, i]
            hm = (unit_h < p.n_heads).to(x.dtype)[None, :] * weights[:, i : i + 1]
            head_masks[p.topk] = head_masks.get(p.topk, 0) + hm
        h = self.ln1(x)
        q = self.q(h).view(B, T, H, dh).transpose(1, 2)
        k = self.k(h).view(B, T, H, dh).transpose(1, 2)
        v = self.v(h).view(B, T, H, dh).transpose(1, 2)
        ctx = x.new_zeros(B, H, T, dh)
        for topk, hm in head_masks.items():
            ctx = ctx + attend_topk_masked(q, k, v, mask, topk) * hm[:, :, None, None]
        ctx = ctx.transpose(1, 2).reshape(B, T, H * dh)
        x = x + self.drop(self._masked_heads_out(ctx) + self.o_bias * alive[:, None, None])

        out = x + self.drop(self._masked_ffn(x, act, codebook, weights, token_scores, token_gate))
        return out if active is None else torch.where(active[..., None], out, x_in)

    def _masked_ffn(self, x, act, codebook, weights, token_scores, token_gate) -> torch.Tensor:
        """The FFN branch of :meth:`forward_masked`: each pattern's groups on its tokens (among ``act``, the
        tokens still running), mixed by ``weights``."""
        B, T, _ = x.shape
        a = F.gelu(self.w1(self.ln2(x)))  # [B, T, F]
        unit_f = torch.arange(a.shape[-1], device=x.device) // self.group_size
        m = a.new_zeros(B, T, a.shape[-1])
        tok_alive = a.new_zeros(B, T)
        for i, p in enumerate(codebook):
            if p.skip:
                continue
            if p.tokens >= 1.0:
                tok = act.to(x.dtype)
            else:
                if token_scores is None:
                    raise ValueError("a pattern with tokens < 1 needs token scores from the policy")
                tok = select_tokens(token_scores, act, p.tokens).to(x.dtype)
                if token_gate is not None:
                    tok = tok * token_gate
            wt = weights[:, i, None] * tok  # [B, T]
            m = m + wt[:, :, None] * (unit_f < p.n_groups).to(x.dtype)[None, None, :]
            tok_alive = tok_alive + wt
        return self._masked_ffn_out(a, m) + self.w2_bias * tok_alive[:, :, None]

    # The masked path multiplies the masks in before any adapter sees the activations, so a switched-off
    # unit's adapter gets exactly zero input, output and gradient, as on the sliced path.
    def _masked_heads_out(self, ctx: torch.Tensor) -> torch.Tensor:
        if self.adapter is None:
            return ctx @ self.o_weight
        out = self.adapter.head_context(ctx, self.n_heads) @ self.o_weight
        delta = self.adapter.head_delta(ctx, self.n_heads)
        return out if delta is None else out + delta

    def _masked_ffn_out(self, act: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        if self.adapter is None:
            return (act * m) @ self.w2_weight
        out = (self.adapter.ffn_activation(act, self.n_groups) * m) @ self.w2_weight
        delta = self.adapter.ffn_delta(act * m, self.n_groups)
        return out if delta is None else out + delta

    # ----- one gate per head and per FFN group, the same for every input (static baselines) ------
    def forward_unit_gated(
        self, x: torch.Tensor, mask: torch.Tensor, head_gate: torch.Tensor, group_gate: torch.Tensor
    ) -> torch.Tensor:
        """Dense computation with each head's context scaled by ``head_gate[h]`` and each FFN group's
        activations by ``group_gate[g]``. Gates of ones give the dense block; gradients with respect to
        the gates are Michel et al.'s head importance, and L0 training samples them from hard-concrete
        distributions."""
        B, T, _ = x.shape
        H, dh = self.n_heads, self.d_head
        h = self.attn_input(x)
        q = self.q(h).view(B, T, H, dh).transpose(1, 2)
        k = self.k(h).view(B, T, H, dh).transpose(1, 2)
        v = self.v(h).view(B, T, H, dh).transpose(1, 2)
        ctx = attend(q, k, v, mask, None) * head_gate.view(1, H, 1, 1)
        any_head = (head_gate != 0).any().to(x.dtype)  # a layer with no head left drops the output bias too
        y = ctx.transpose(1, 2).reshape(B, T, H * dh) @ self.o_weight + self.o_bias * any_head
        # post-LN: a sub-block with no unit left is skipped whole, norm included, as on the sliced path
        x = self.attn_residual(x, y) if (not self.post or bool(any_head)) else x
        a = F.gelu(self.w1(self.ffn_input(x)))
        a = a * group_gate.repeat_interleave(self.group_size).view(1, 1, -1)
        any_group = (group_gate != 0).any().to(x.dtype)
        y = a @ self.w2_weight + self.w2_bias * any_group
        return self.ffn_residual(x, y) if (not self.post or bool(any_group)) else x
