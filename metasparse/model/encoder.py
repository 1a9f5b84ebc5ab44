"""The gated encoder: lexical embeddings, gateable blocks, word-level task heads.

The transformer runs over words, not subwords: each word's input is the mean of its subword
embeddings plus a word-form embedding, hashed suffix embeddings and, with a tag lexicon, a projection of
the word's tag distribution counted in the train split. Mean-pooling subwords is
what moved UPOS most in the measurements behind the design, the hashed forms act as a lexical memory
(the lookup baseline is strong on this data), and running over words shortens sequences ~2.4x.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metasparse.model.adapters import attach_adapters
from metasparse.model.block import GatedBlock
from metasparse.model.features import CHAR_BUCKETS, Batch
from metasparse.model.grouped import run_grouped
from metasparse.model.patterns import Pattern, resolve_codebook
from metasparse.model.profiling import region
from metasparse.model.spec import EncoderSpec, ModelConfig
from metasparse.model.uncertainty import normalized_entropy

CHAR_KERNEL = 3  # characters the convolution sees at once

__all__ = ["Decision", "EncoderOutput", "EncoderSpec", "GatedEncoder", "ModelConfig", "Policy"]


@dataclass
class Decision:
    """A policy's choice for one layer.

    Attributes:
        weights: ``[B, n_patterns]``; relaxed (or one-hot) weights; None when only ``hard_levels`` is given.
        token_scores: ``[B, T]`` scores for token routing (needed by patterns with tokens < 1).
        token_gate: ``[B, T]`` optional straight-through gate on routed tokens (masked path only).
        hard_levels: ``[B]`` pattern indices of a hard decision (inference: no one-hot is built).
    """

    weights: torch.Tensor | None = None
    token_scores: torch.Tensor | None = None
    token_gate: torch.Tensor | None = None
    hard_levels: torch.Tensor | None = None

    @property
    def levels(self) -> torch.Tensor:
        """Hard pattern index per example."""
        return self.hard_levels if self.hard_levels is not None else self.weights.argmax(-1)

    def one_hot_or_weights(self, n_patterns: int, dtype: torch.dtype) -> torch.Tensor:
        return self.weights if self.weights is not None else F.one_hot(self.hard_levels, n_patterns).to(dtype)


# A policy sees (layer index, layer input [B, T, d], word mask [B, T]) and decides. The mask is None when
# the batch is known to have no padding (``Batch.unpadded``): a policy that pools over words need not ask.
Policy = Callable[[int, torch.Tensor, torch.Tensor | None], Decision]


@dataclass
class EncoderOutput:
    """What a forward produced.

    Attributes:
        logits: task -> ``[B, T, labels]``.
        hidden: ``[B, T, d]`` final states.
        decisions: each layer's decision (None: the layer ran dense).
        exited_at: ``[B, T]`` the layer after which each token exited early (``layers``: it never did), or
            None when no token exited.
        active_counts: ``[B, layers]`` tokens still running at each layer's input, or None when no token
            exited (then every valid token ran every layer).
    """

    logits: dict[str, torch.Tensor]
    hidden: torch.Tensor
    decisions: list[Decision | None]
    exited_at: torch.Tensor | None = None
    active_counts: torch.Tensor | None = None


class GatedEncoder(nn.Module):
    """Word-level transformer encoder whose units a policy can switch off per input and layer."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        d = spec.d_model
        self.subword_emb = nn.Embedding(spec.vocab_size, d, padding_idx=0)
        embeddings = [self.subword_emb]
        if spec.lexical:
            self.word_emb = nn.Embedding(spec.word_buckets, d, padding_idx=0)
            self.suffix_emb = nn.Embedding(spec.suffix_buckets, d, padding_idx=0)
            embeddings += [self.word_emb, self.suffix_emb]
        if spec.piece_ends:
            self.first_piece_emb = nn.Embedding(spec.vocab_size, d, padding_idx=0)
            self.last_piece_emb = nn.Embedding(spec.vocab_size, d, padding_idx=0)
            embeddings += [self.first_piece_emb, self.last_piece_emb]
        self.pos_emb = nn.Embedding(spec.max_positions, d)
        if spec.char_dim:
            self.char_emb = nn.Embedding(CHAR_BUCKETS, spec.char_dim, padding_idx=0)
            self.char_conv = nn.Conv1d(spec.char_dim, spec.char_channels, CHAR_KERNEL, padding=CHAR_KERNEL // 2)
            self.char_proj = nn.Linear(spec.char_channels, d)
        if spec.tag_lexicon:
            self.lexicon_proj = nn.Linear(spec.tag_lexicon, d)
        eps = spec.layer_norm_eps
        self.emb_ln = nn.LayerNorm(d, eps=eps)
        self.emb_drop = nn.Dropout(spec.dropout)
        self.blocks = nn.ModuleList(
            GatedBlock(d, spec.heads, spec.d_ffn, spec.ffn_groups, spec.dropout, spec.norm, eps)
            for _ in range(spec.layers)
        )
        # post-LN blocks end normalised; a final norm would be one the pretrained layers never saw
        self.final_ln = nn.LayerNorm(d, eps=eps) if spec.norm == "pre" else nn.Identity()
        self.heads = nn.ModuleDict({t: nn.Linear(d, n) for t, n in spec.tasks.items()})
        for emb in (*embeddings, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)
        if spec.adapter is not None:
            attach_adapters(self, spec.adapter)
        self.codebook: list[Pattern] = resolve_codebook(spec.codebook, spec.heads, spec.ffn_groups)
        self.full = Pattern(spec.heads, spec.ffn_groups)
        # each pattern's early-exit threshold (nan: none), indexed by a decision's levels
        self.exit_thresholds = torch.tensor([float("nan") if p.exit is None else p.exit for p in self.codebook])
        # without exit patterns a forward skips the per-layer exit check and running-token counts: small
        # ops, but at batch 1 the per-input path's extras came to 4% of dense (measured by replaying a run's
        # decisions through it and through the plain layers), under 1% after this and the changes beside it
        self.has_exits = any(p.exit is not None for p in self.codebook)

    @property
    def n_patterns(self) -> int:
        return len(self.codebook)

    def token_uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised entropy ``[B, T]`` of the UPOS head (else the first task's) applied to ``x``: a
        training-free token score (static plans route the most uncertain tokens through the FFN)."""
        return normalized_entropy(self.heads[self.spec.primary_task](x))

    def exit_uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised entropy ``[B, T]`` of the criterion's task heads (``spec.exit_criterion``: UPOS, or the
        largest over every task) on the final norm of ``x``: how unsure the model would be if each token
        stopped here (the early-exit criterion)."""
        h = self.final_ln(x)
        per_task = [normalized_entropy(self.heads[t](h)) for t in self.spec.exit_tasks()]
        return per_task[0] if len(per_task) == 1 else torch.stack(per_task).amax(0)

    def _exits(self, i: int, x, mask, active, exited_at, dec: Decision | None):
        """After layer ``i``: tokens whose chosen pattern has an exit threshold and whose uncertainty is at
        most it stop. Returns the new (active, exited_at)."""
        if dec is None or not self.has_exits or i == len(self.blocks) - 1:
            return active, exited_at
        thr = self.exit_thresholds[dec.levels]
        if bool(torch.isnan(thr).all()):
            return active, exited_at
        with region("exit"):
            cur = mask if active is None else active
            stop = cur & (self.exit_uncertainty(x) <= thr[:, None])  # nan thresholds compare False
        if not bool(stop.any()):
            return active, exited_at
        if exited_at is None:
            exited_at = torch.full(mask.shape, len(self.blocks), dtype=torch.long, device=mask.device)
        return cur & ~stop, exited_at.masked_fill(stop, i)

    def embed(self, batch: Batch) -> torch.Tensor:
        """Word inputs ``[B, T, d]``: mean of subword embeddings (+ word-form + suffix with ``lexical``) +
        position; a converted pretrained encoder's word embeddings, positions and token type 0 live in
        ``subword_emb`` and ``pos_emb``, so the same code serves both."""
        B, T = batch.word_mask.shape
        sub = self.subword_emb(batch.input_ids)  # [B, S, d]
        valid = batch.word_index >= 0
        flat = (torch.arange(B)[:, None] * T + batch.word_index.clamp(min=0))[valid]
        summed = sub.new_zeros(B * T, sub.shape[-1]).index_add(0, flat, sub[valid])
        counts = torch.zeros(B * T, dtype=sub.dtype).index_add(0, flat, torch.ones_like(flat, dtype=sub.dtype))
        x = (summed / counts.clamp(min=1)[:, None]).view(B, T, -1)
        if self.spec.piece_ends:
            x = x + self._piece_ends(batch, flat, valid)
        if self.spec.lexical:
            affixes = batch.suffix_hash[..., : self.spec.affixes]
            x = x + self.word_emb(batch.word_hash) + self.suffix_emb(affixes).sum(2)
        if self.spec.char_dim:
            x = x + self.char_features(batch)
        if self.spec.tag_lexicon:
            if batch.lexicon is None:
                raise ValueError("this backbone reads a tag lexicon: encode the batch with the run's tokenizer")
            x = x + self.lexicon_proj(batch.lexicon)
        # Any length: past the learned table, positions wrap around. Below the limit this is exactly the
        # plain table lookup; above it every word keeps its neighbours' relative order (what tagging reads),
        # at the cost of aliasing absolute positions 256 words apart.
        x = x + self.pos_emb(torch.arange(T) % self.spec.max_positions)[None]
        return self.emb_drop(self.emb_ln(x))

    def _piece_ends(self, batch: Batch, flat: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``[B, T, d]``: each word's first and last subword through their own tables (padding words: 0).

        ``flat``: the word slot (``b * T + t``) of each valid subword, in subword order."""
        B, S = batch.input_ids.shape
        T = batch.word_mask.shape[1]
        where = (torch.arange(B)[:, None] * S + torch.arange(S)[None])[valid]  # each valid subword's slot
        ids = batch.input_ids.reshape(-1)
        out = []
        for table, reduce, empty in ((self.first_piece_emb, "amin", B * S), (self.last_piece_emb, "amax", -1)):
            at = torch.full((B * T,), empty, dtype=torch.long).scatter_reduce(0, flat, where, reduce)
            has = (at >= 0) & (at < B * S)
            out.append(table(torch.where(has, ids[at.clamp(0, B * S - 1)], 0)))
        return (out[0] + out[1]).view(B, T, -1)

    def char_features(self, batch: Batch) -> torch.Tensor:
        """``[B, T, d]``: each real word's characters through the character encoder (padding words stay 0).

        Why: the hashed word forms only help for words seen in training, and suffix buckets see three
        characters; unseen inflected forms are where taggers of morphologically rich languages win or lose.
        Only real words are encoded, so padding costs nothing at batch > 1.
        """
        if batch.char_ids is None:
            raise ValueError("this backbone reads characters: build the batch with metasparse.model.features")
        B, T, C = batch.char_ids.shape
        rows = batch.word_mask.reshape(-1).nonzero().squeeze(1)
        ids = batch.char_ids.reshape(B * T, C).index_select(0, rows)  # [N, C]
        h = F.relu(self.char_conv(self.char_emb(ids).transpose(1, 2)))  # [N, channels, C]
        h = h.masked_fill((ids == 0)[:, None, :], float("-inf")).amax(-1)  # every word has BOW/EOW: finite
        out = self.char_proj(h)
        return out.new_zeros(B * T, out.shape[-1]).index_copy(0, rows, out).view(B, T, -1)

    def forward_with(self, batch: Batch, layer: Callable[[int, GatedBlock, torch.Tensor, torch.Tensor], torch.Tensor]):
        """Embed, run block ``i`` as ``layer(i, block, x, mask)``, then the heads: the hook static and
        training-free baselines use to run the same weights their own way."""
        x, mask = self.embed(batch), batch.word_mask
        for i, block in enumerate(self.blocks):
            x = layer(i, block, x, mask)
        h = self.final_ln(x)
        return EncoderOutput({t: head(h) for t, head in self.heads.items()}, h, [None] * len(self.blocks))

    def forward(
        self,
        batch: Batch,
        policy: Policy | None = None,
        *,
        mode: str = "sliced",
        plan: Sequence[int] | None = None,
    ) -> EncoderOutput:
        """Encode and label a batch.

        Args:
            batch: padded inputs.
            policy: decides each layer's pattern per example; None with no ``plan`` runs dense.
            mode: ``sliced`` (hard decisions, grouped by pattern, real savings) or ``masked``
                (per-example masks, differentiable in the decision weights; saves nothing).
            plan: one codebook index per layer for the whole batch (static sparsity, pretraining).
        """
        if mode not in ("sliced", "masked"):
            raise ValueError(f"mode={mode!r}; allowed: sliced, masked")
        x, mask = self.embed(batch), batch.word_mask
        policy_mask = None if batch.unpadded else mask
        decisions: list[Decision | None] = []
        active, exited_at, counts = None, None, []
        for i, block in enumerate(self.blocks):
            dec = None
            if policy is not None:
                with region("controller"):
                    dec = policy(i, x, policy_mask)
            elif plan is not None:
                routed = self.codebook[plan[i]].tokens < 1.0
                # hard levels only (the masked path builds its one-hot from them): no one-hot and argmax per
                # layer on the timed path (see has_exits)
                dec = Decision(
                    token_scores=self.token_uncertainty(x) if routed else None,
                    hard_levels=torch.full((x.shape[0],), plan[i]),
                )
            decisions.append(dec)
            if self.has_exits:
                counts.append((mask if active is None else active).sum(1))
            if dec is None:
                x = block.forward_sliced(x, mask, self.full, None, active)
            elif mode == "masked":
                w = dec.one_hot_or_weights(self.n_patterns, x.dtype)
                x = block.forward_masked(x, mask, self.codebook, w, dec.token_scores, dec.token_gate, active)
            else:
                x = run_grouped(block.forward_sliced, x, mask, dec.levels, self.codebook, dec.token_scores, active)
            active, exited_at = self._exits(i, x, mask, active, exited_at, dec)
        h = self.final_ln(x)
        logits = {t: head(h) for t, head in self.heads.items()}
        if exited_at is None:
            return EncoderOutput(logits, h, decisions)
        return EncoderOutput(logits, h, decisions, exited_at, torch.stack(counts, dim=1))
