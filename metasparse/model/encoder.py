"""The gated encoder: lexical embeddings, gateable blocks, word-level task heads.

The transformer runs over words, not subwords: each word's input is the mean of its subword
embeddings plus a hashed word-form embedding and hashed suffix embeddings. Mean-pooling subwords is
what moved UPOS most in the measurements behind the design, the hashed forms act as a lexical memory
(the lookup baseline is strong on this data), and running over words shortens sequences ~2.4x.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from metasparse.errors import require
from metasparse.model.adapters import AdapterConfig, attach_adapters
from metasparse.model.block import GatedBlock
from metasparse.model.features import CHAR_BUCKETS, Batch
from metasparse.model.grouped import run_grouped
from metasparse.model.patterns import DEFAULT_CODEBOOK, Pattern, PatternSpec, resolve_codebook
from metasparse.model.profiling import region
from metasparse.model.uncertainty import normalized_entropy

CHAR_KERNEL = 3  # characters the convolution sees at once


@dataclass
class EncoderSpec:
    """Architecture of the gated encoder.

    Attributes:
        vocab_size: subword vocabulary size.
        word_buckets: hashed word-form buckets.
        suffix_buckets: hashed suffix buckets.
        tasks: task name -> number of labels.
        layers, d_model, heads, d_ffn, ffn_groups: transformer size.
        dropout: dropout on embeddings and residual branches.
        max_positions: learned word positions; a longer sentence wraps around (word ``t`` takes position
            ``t mod max_positions``), so any length runs and neighbours keep their relative order.
        codebook: the execution patterns a layer can run.
        adapter: the pathway adapters attached after pretraining (None: none; set by
            :func:`metasparse.model.adapters.attach_adapters`, never part of a backbone's cache key).
        char_dim, char_channels: the character encoder (0: none): each word's characters embedded in
            ``char_dim``, one width-3 convolution to ``char_channels``, max-pooled over the word and
            projected to ``d_model``.
    """

    vocab_size: int
    tasks: dict[str, int]
    word_buckets: int = 65536
    suffix_buckets: int = 32768
    layers: int = 4
    d_model: int = 256
    heads: int = 8
    d_ffn: int = 1024
    ffn_groups: int = 8
    dropout: float = 0.1
    max_positions: int = 256
    codebook: list[PatternSpec] = field(default_factory=lambda: list(DEFAULT_CODEBOOK))
    adapter: AdapterConfig | None = None
    char_dim: int = 0
    char_channels: int = 0


@dataclass
class ModelConfig:
    """Encoder architecture as configured (``conf/model/*.yaml``); :meth:`spec` resolves it for a tokenizer
    and a task set."""

    name: str = "small"
    layers: int = 4
    d_model: int = 256
    heads: int = 8
    d_ffn: int = 1024
    ffn_groups: int = 8
    dropout: float = 0.1
    max_positions: int = 256
    suffix_buckets: int = 32768
    char_dim: int = 0
    char_channels: int = 0
    codebook: list[PatternSpec] = field(default_factory=lambda: list(DEFAULT_CODEBOOK))

    def __post_init__(self) -> None:
        for key in ("layers", "d_model", "heads", "d_ffn", "ffn_groups", "max_positions", "suffix_buckets"):
            require(getattr(self, key) >= 1, f"model.{key}", ">= 1", getattr(self, key))
        for key in ("char_dim", "char_channels"):
            require(getattr(self, key) >= 0, f"model.{key}", ">= 0 (0: no character encoder)", getattr(self, key))
        require(
            (self.char_dim == 0) == (self.char_channels == 0),
            "model.char_channels",
            f"0 together with char_dim=0, > 0 together with char_dim > 0 (char_dim={self.char_dim})",
            self.char_channels,
        )
        require(self.d_model % self.heads == 0, "model.heads", f"a divisor of d_model={self.d_model}", self.heads)
        require(
            self.d_ffn % self.ffn_groups == 0,
            "model.ffn_groups",
            f"a divisor of d_ffn={self.d_ffn}",
            self.ffn_groups,
        )
        require(0.0 <= self.dropout < 1.0, "model.dropout", "[0, 1)", self.dropout)

    def spec(self, vocab_size: int, tasks: dict[str, int], word_buckets: int) -> EncoderSpec:
        """The architecture for a tokenizer (``vocab_size``, ``word_buckets``) and task set (name -> labels)."""
        return EncoderSpec(
            vocab_size=vocab_size,
            tasks=dict(tasks),
            word_buckets=word_buckets,
            suffix_buckets=self.suffix_buckets,
            layers=self.layers,
            d_model=self.d_model,
            heads=self.heads,
            d_ffn=self.d_ffn,
            ffn_groups=self.ffn_groups,
            dropout=self.dropout,
            max_positions=self.max_positions,
            codebook=[PatternSpec(c.heads, c.ffn, c.tokens, c.topk, c.exit) for c in self.codebook],
            char_dim=self.char_dim,
            char_channels=self.char_channels,
        )


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


# A policy sees (layer index, layer input [B, T, d], word mask [B, T]) and decides.
Policy = Callable[[int, torch.Tensor, torch.Tensor], Decision]


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
        self.word_emb = nn.Embedding(spec.word_buckets, d, padding_idx=0)
        self.suffix_emb = nn.Embedding(spec.suffix_buckets, d, padding_idx=0)
        self.pos_emb = nn.Embedding(spec.max_positions, d)
        if spec.char_dim:
            self.char_emb = nn.Embedding(CHAR_BUCKETS, spec.char_dim, padding_idx=0)
            self.char_conv = nn.Conv1d(spec.char_dim, spec.char_channels, CHAR_KERNEL, padding=CHAR_KERNEL // 2)
            self.char_proj = nn.Linear(spec.char_channels, d)
        self.emb_ln = nn.LayerNorm(d)
        self.emb_drop = nn.Dropout(spec.dropout)
        self.blocks = nn.ModuleList(
            GatedBlock(d, spec.heads, spec.d_ffn, spec.ffn_groups, spec.dropout) for _ in range(spec.layers)
        )
        self.final_ln = nn.LayerNorm(d)
        self.heads = nn.ModuleDict({t: nn.Linear(d, n) for t, n in spec.tasks.items()})
        for emb in (self.subword_emb, self.word_emb, self.suffix_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)
        if spec.adapter is not None:
            attach_adapters(self, spec.adapter)
        self.codebook: list[Pattern] = resolve_codebook(spec.codebook, spec.heads, spec.ffn_groups)
        self.full = Pattern(spec.heads, spec.ffn_groups)
        # each pattern's early-exit threshold (nan: none), indexed by a decision's levels
        self.exit_thresholds = torch.tensor([float("nan") if p.exit is None else p.exit for p in self.codebook])

    @property
    def n_patterns(self) -> int:
        return len(self.codebook)

    def token_uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised entropy ``[B, T]`` of the UPOS head (else the first task's) applied to ``x``: a
        training-free token score (static plans route the most uncertain tokens through the FFN)."""
        head = self.heads["upos"] if "upos" in self.heads else next(iter(self.heads.values()))
        return normalized_entropy(head(x))

    def exit_uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised entropy ``[B, T]`` of the UPOS head (else the first task's) on the final norm of ``x``:
        how unsure the model would be if each token stopped here (the early-exit criterion)."""
        head = self.heads["upos"] if "upos" in self.heads else next(iter(self.heads.values()))
        return normalized_entropy(head(self.final_ln(x)))

    def _exits(self, i: int, x, mask, active, exited_at, dec: Decision | None):
        """After layer ``i``: tokens whose chosen pattern has an exit threshold and whose uncertainty is at
        most it stop. Returns the new (active, exited_at)."""
        if dec is None or i == len(self.blocks) - 1:
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
        """Word inputs ``[B, T, d]``: mean of subword embeddings + word-form + suffix + position."""
        B, T = batch.word_mask.shape
        sub = self.subword_emb(batch.input_ids)  # [B, S, d]
        valid = batch.word_index >= 0
        flat = (torch.arange(B)[:, None] * T + batch.word_index.clamp(min=0))[valid]
        summed = sub.new_zeros(B * T, sub.shape[-1]).index_add(0, flat, sub[valid])
        counts = torch.zeros(B * T, dtype=sub.dtype).index_add(0, flat, torch.ones_like(flat, dtype=sub.dtype))
        pooled = (summed / counts.clamp(min=1)[:, None]).view(B, T, -1)
        x = pooled + self.word_emb(batch.word_hash) + self.suffix_emb(batch.suffix_hash).sum(2)
        if self.spec.char_dim:
            x = x + self.char_features(batch)
        # Any length: past the learned table, positions wrap around. Below the limit this is exactly the
        # plain table lookup; above it every word keeps its neighbours' relative order (what tagging reads),
        # at the cost of aliasing absolute positions 256 words apart.
        x = x + self.pos_emb(torch.arange(T) % self.spec.max_positions)[None]
        return self.emb_drop(self.emb_ln(x))

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
        decisions: list[Decision | None] = []
        active, exited_at, counts = None, None, []
        for i, block in enumerate(self.blocks):
            dec = None
            if policy is not None:
                with region("controller"):
                    dec = policy(i, x, mask)
            elif plan is not None:
                routed = self.codebook[plan[i]].tokens < 1.0
                dec = Decision(
                    F.one_hot(torch.full((x.shape[0],), plan[i]), self.n_patterns).to(x.dtype),
                    self.token_uncertainty(x) if routed else None,
                )
            decisions.append(dec)
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
