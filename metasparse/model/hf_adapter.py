"""The same gating on a Hugging Face BERT-family encoder (BertModel and relatives with the same layout).

Heads, FFN channel groups, FFN tokens, top-k attention and whole layers are switched off per input,
with sliced execution grouped by pattern like the native encoder. BERT is post-LN: a routed-out
token keeps its post-attention state, and a skipped layer is the identity. The output projections
are copied input-major once at construction so prefixes of input units are contiguous slices.

Units run as prefixes: reorder a pretrained checkpoint's heads and FFN groups by importance first
(:func:`metasparse.model.hf_importance.reorder_by_importance`), so that a prefix is the best subset; with
all units on the outputs equal the plain model's either way.

Example:
    >>> bert = BertModel.from_pretrained(path).eval()
    >>> gated = GatedBertAdapter(bert)
    >>> hidden = gated(input_ids, attention_mask)  # all units on: equals bert(...).last_hidden_state
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from metasparse.model.attention import attend, attend_topk_masked
from metasparse.model.encoder import Policy
from metasparse.model.grouped import run_grouped
from metasparse.model.patterns import DEFAULT_CODEBOOK, Pattern, PatternSpec, resolve_codebook
from metasparse.model.tokens import select_tokens

_ACTS = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


class GatedBertAdapter(nn.Module):
    """Gateable view of a ``transformers`` BertModel (weights shared, not copied, except two transposes).

    Args:
        bert: a BertModel, or a relative with ``embeddings`` and
            ``encoder.layer[i].{attention,intermediate,output}``.
        codebook: execution patterns (fractions of heads / FFN groups).
        ffn_groups: number of FFN channel groups (must divide ``intermediate_size``).
    """

    def __init__(
        self, bert: nn.Module, codebook: Sequence[PatternSpec] = DEFAULT_CODEBOOK, ffn_groups: int = 8
    ) -> None:
        super().__init__()
        cfg = bert.config
        if cfg.intermediate_size % ffn_groups:
            raise ValueError(f"ffn_groups={ffn_groups} must divide intermediate_size={cfg.intermediate_size}")
        if cfg.hidden_act not in _ACTS:
            raise ValueError(f"hidden_act={cfg.hidden_act!r} is not supported; supported: {', '.join(_ACTS)}")
        self.bert = bert
        self.n_heads, self.d_head = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
        self.group_size = cfg.intermediate_size // ffn_groups
        self.act = _ACTS[cfg.hidden_act]
        self.codebook: list[Pattern] = resolve_codebook(codebook, self.n_heads, ffn_groups)
        self.full = Pattern(self.n_heads, ffn_groups)
        self.o_t = [layer.attention.output.dense.weight.detach().T.contiguous() for layer in bert.encoder.layer]
        self.w2_t = [layer.output.dense.weight.detach().T.contiguous() for layer in bert.encoder.layer]

    @property
    def n_patterns(self) -> int:
        return len(self.codebook)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        policy: Policy | None = None,
        *,
        mode: str = "sliced",
    ) -> torch.Tensor:
        """Last hidden states ``[B, T, d]``; ``policy`` decides per layer as for :class:`GatedEncoder`."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        mask = attention_mask.bool()
        for i in range(len(self.bert.encoder.layer)):
            if policy is None:
                x = self._sliced(i, x, mask, self.full, None)
                continue
            dec = policy(i, x, mask)
            if mode == "masked":
                x = self._masked(i, x, mask, dec.one_hot_or_weights(self.n_patterns, x.dtype), dec.token_scores)
            else:
                # no early exit here (the adapter's forward lets no token go), so ``act`` is always None
                step = lambda xs, ms, p, s, act, i=i: self._sliced(i, xs, ms, p, s)  # noqa: E731
                x = run_grouped(step, x, mask, dec.levels, self.codebook, dec.token_scores)
        return x

    def _qkv(self, layer, h: torch.Tensor, n: int, heads: int):
        B, T, _ = h.shape
        a = layer.attention.self
        return [
            F.linear(h, lin.weight[:n], lin.bias[:n]).view(B, T, heads, self.d_head).transpose(1, 2)
            for lin in (a.query, a.key, a.value)
        ]

    def _sliced(self, i: int, x: torch.Tensor, mask: torch.Tensor, p: Pattern, scores: torch.Tensor | None):
        if p.skip:
            return x
        layer = self.bert.encoder.layer[i]
        B, T, d = x.shape
        n = p.n_heads * self.d_head
        q, k, v = self._qkv(layer, x, n, p.n_heads)
        ctx = attend(q, k, v, mask, p.topk).transpose(1, 2).reshape(B * T, n)
        attn = torch.addmm(layer.attention.output.dense.bias, ctx, self.o_t[i][:n]).view(B, T, d)
        x1 = layer.attention.output.LayerNorm(attn + x)
        f = p.n_groups * self.group_size
        inter = layer.intermediate.dense
        if p.tokens >= 1.0:
            hmid = self.act(F.linear(x1, inter.weight[:f], inter.bias[:f])).reshape(B * T, f)
            y = torch.addmm(layer.output.dense.bias, hmid, self.w2_t[i][:f]).view(B, T, d)
            return layer.output.LayerNorm(y + x1)
        if scores is None:
            raise ValueError("a pattern with tokens < 1 needs token scores from the policy")
        flat = select_tokens(scores, mask, p.tokens).reshape(-1).nonzero().squeeze(1)
        xs = x1.reshape(B * T, d).index_select(0, flat)
        y = torch.addmm(
            layer.output.dense.bias,
            self.act(F.linear(xs, inter.weight[:f], inter.bias[:f])),
            self.w2_t[i][:f],
        )
        return x1.reshape(B * T, d).index_copy(0, flat, layer.output.LayerNorm(y + xs)).view(B, T, d)

    def _masked(self, i: int, x: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, scores):
        """Reference: full computation per pattern, mixed by ``weights`` (exact for one-hot decisions)."""
        layer = self.bert.encoder.layer[i]
        B, T, d = x.shape
        H = self.n_heads
        q, k, v = self._qkv(layer, x, H * self.d_head, H)
        out = torch.zeros_like(x)
        for j, p in enumerate(self.codebook):
            w = weights[:, j, None, None]
            if p.skip:
                out = out + w * x
                continue
            hm = (torch.arange(H) < p.n_heads).to(x.dtype)[None, :, None, None]
            ctx = (attend_topk_masked(q, k, v, mask, p.topk) * hm).transpose(1, 2).reshape(B, T, H * self.d_head)
            x1 = layer.attention.output.LayerNorm(ctx @ self.o_t[i] + layer.attention.output.dense.bias + x)
            cm = (torch.arange(self.w2_t[i].shape[0]) < p.n_groups * self.group_size).to(x.dtype)
            y = (self.act(layer.intermediate.dense(x1)) * cm) @ self.w2_t[i] + layer.output.dense.bias
            x2 = layer.output.LayerNorm(y + x1)
            if p.tokens < 1.0:
                tok = select_tokens(scores, mask, p.tokens).to(x.dtype)[..., None]
                x2 = tok * x2 + (1 - tok) * x1
            out = out + w * x2
        return out
