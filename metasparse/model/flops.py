"""Analytic FLOPs of the gated encoder, counted the way ``torch.utils.flop_counter`` counts them.

Only matmul-like work is counted (2 FLOPs per multiply-add): projections, attention products, FFN,
task heads and the controller's layers. Embedding lookups, layer norms, softmax and activations are
left out, as FlopCounterMode leaves them out, so the two can be cross-checked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from metasparse.model.encoder import CHAR_KERNEL, EncoderSpec
from metasparse.model.features import MAX_CHARS
from metasparse.model.patterns import Pattern
from metasparse.model.tokens import select_tokens


def block_flops(spec: EncoderSpec, p: Pattern, n: int, running: int | None = None) -> int:
    """FLOPs of one block under pattern ``p`` on a sentence of ``n`` words, ``running`` of which have not
    exited early (default: all): only those form queries and pass the FFN; all ``n`` are keys and values."""
    nq = n if running is None else running
    if p.skip or n == 0 or nq == 0:
        return 0
    d, dh = spec.d_model, spec.d_model // spec.heads
    a = p.n_heads * dh
    span = n if p.topk is None else min(p.topk, n)
    f = p.n_groups * (spec.d_ffn // spec.ffn_groups)
    attn = 2 * 2 * n * d * a + 2 * nq * d * a + 2 * nq * n * a + 2 * nq * span * a + 2 * nq * a * d
    ffn = 2 * 2 * p.kept_tokens(nq) * d * f
    return attn + ffn + adapter_flops(spec, p, nq)


def adapter_flops(spec: EncoderSpec, p: Pattern, n: int) -> int:
    """FLOPs of the active units' pathway adapters on ``n`` running tokens (``lora``: two thin matmuls per
    unit; ``scale``: elementwise, 0 as the FLOP counter counts it)."""
    ad = spec.adapter
    if ad is None or ad.kind != "lora" or p.skip:
        return 0
    d, dh, gs = spec.d_model, spec.d_model // spec.heads, spec.d_ffn // spec.ffn_groups
    return 2 * ad.rank * (n * p.n_heads * (dh + d) + p.kept_tokens(n) * p.n_groups * (gs + d))


def exit_flops(spec: EncoderSpec, n: int) -> int:
    """FLOPs of one early-exit check on ``n`` words (the criterion's task heads on every word's state)."""
    return sum(2 * n * spec.d_model * spec.tasks[t] for t in spec.exit_tasks())


def token_score_flops(spec: EncoderSpec, n: int) -> int:
    """FLOPs of the training-free token score on ``n`` words (the primary task's head:
    :meth:`metasparse.model.encoder.GatedEncoder.token_uncertainty`)."""
    return 2 * n * spec.d_model * spec.tasks[spec.primary_task]


def heads_flops(spec: EncoderSpec, n: int) -> int:
    """FLOPs of the task heads on ``n`` words."""
    return sum(2 * n * spec.d_model * k for k in spec.tasks.values())


def char_flops(spec: EncoderSpec, n: int) -> int:
    """FLOPs of the character encoder on ``n`` words (convolution over MAX_CHARS positions, projection)."""
    if not spec.char_dim:
        return 0
    conv = 2 * MAX_CHARS * spec.char_channels * spec.char_dim * CHAR_KERNEL
    return n * (conv + 2 * spec.char_channels * spec.d_model)


def lexicon_flops(spec: EncoderSpec, n: int) -> int:
    """FLOPs of the tag lexicon's projection on ``n`` words (the counts are looked up before the model)."""
    return 2 * n * spec.tag_lexicon * spec.d_model


def fixed_flops(spec: EncoderSpec, n: int) -> int:
    """FLOPs no policy can switch off: the character encoder, the tag lexicon's projection and the task
    heads."""
    return char_flops(spec, n) + lexicon_flops(spec, n) + heads_flops(spec, n)


def dense_flops(spec: EncoderSpec, n: int) -> int:
    """FLOPs of the dense model (every unit on) on a sentence of ``n`` words."""
    full = Pattern(spec.heads, spec.ffn_groups)
    return spec.layers * block_flops(spec, full, n) + fixed_flops(spec, n)


def gated_flops(
    spec: EncoderSpec,
    patterns: list[Pattern],
    n: int,
    controller_per_layer: int = 0,
    running: list[int] | None = None,
) -> int:
    """FLOPs of one sentence under one pattern per layer, plus the controller's cost per layer; ``running``:
    the tokens still running at each layer's input (early exit; default all), and an exit check after
    every layer but the last whose pattern has one."""
    run = running if running is not None else [None] * len(patterns)
    layers = sum(block_flops(spec, p, n, r) + controller_per_layer for p, r in zip(patterns, run, strict=True))
    checks = sum(exit_flops(spec, n) for p in patterns[:-1] if p.exit is not None)
    return layers + checks + fixed_flops(spec, n)


def word_compute(
    spec: EncoderSpec,
    codebook: Sequence[Pattern],
    levels: torch.Tensor,
    mask: torch.Tensor,
    exited_at: torch.Tensor | None = None,
    token_scores: Sequence[torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What each word got, from one walk over the decisions: ``(flops_share, ffn_share)``, both ``[B, T]``
    in [0, 1] (0 on padding).

    ``flops_share``: the word's share of the dense block FLOPs. A word's block work at a layer is what it
    alone causes there, summed the way :func:`block_flops` counts it: its key and value projections
    (every valid word, exited or not), and, while it runs, its query and output projections, its row of
    the attention products and, when routed, its FFN pass (a layer where no word of the sentence still
    runs costs nothing). Adapters, the controller, exit checks and the fixed parts (characters, heads) are
    left out: they are not what a per-token decision chooses. Summed over a sentence's words it gives the
    sentence's block FLOPs.

    ``ffn_share``: the share of the model's layers whose FFN the word passed (capacity routing, early
    exits and skipped layers all take it out).

    Args:
        codebook: the model's patterns; ``levels`` ``[B, layers]`` the pattern per sentence and layer.
        mask: ``[B, T]`` valid words; ``exited_at`` ``[B, T]`` the layer after which each word exited
            (None: none did); ``token_scores``: per layer the ``[B, T]`` routing scores (None where the
            layer's patterns route nothing).
    """
    d, dh, group = spec.d_model, spec.d_model // spec.heads, spec.d_ffn // spec.ffn_groups
    n = mask.sum(1, keepdim=True).to(torch.float64)  # [B, 1] keys per query row
    valid = mask.to(torch.float64)
    dense = spec.layers * (8 * d * spec.d_model + 4 * n * spec.d_model + 4 * d * spec.d_ffn)
    total = torch.zeros(mask.shape, dtype=torch.float64)
    ffn = torch.zeros(mask.shape, dtype=torch.float32)
    for rows, p, running, routed in _word_decisions(spec.layers, codebook, levels, mask, exited_at, token_scores):
        a = p.n_heads * dh
        span = n[rows] if p.topk is None else torch.clamp(n[rows], max=p.topk)
        # every term is an integer well inside float64's exact range, so the order of the sums is immaterial
        total[rows] += (
            valid[rows] * 4 * d * a
            + running.to(torch.float64) * (4 * d * a + 2 * (n[rows] + span) * a)
            + routed.to(torch.float64) * 4 * d * p.n_groups * group
        )
        if p.n_groups > 0:
            ffn[rows] += routed.to(torch.float32)
    return (total / dense).to(torch.float32) * mask, ffn / spec.layers * mask


def _word_decisions(layers: int, codebook, levels, mask, exited_at, token_scores):
    """Per layer and pattern, the sentences that run a block under it: ``(rows, pattern, running words,
    routed words)``, the words' masks ``[R, T]`` as the engine applies them (routing picks among the running
    words). Grouping the sentences by pattern keeps this a few tensor operations per layer, not one per
    sentence: scoring calls it on every batch."""
    for li in range(layers):
        running = mask if exited_at is None else mask & (exited_at >= li)
        alive = running.any(1)  # no word runs: the block returns at once, keys and values too
        for k in torch.unique(levels[:, li]).tolist():
            p = codebook[k]
            rows = (levels[:, li] == k) & alive
            if p.skip or not bool(rows.any()):
                continue
            run = running[rows]
            routed = run
            if p.tokens < 1.0 and token_scores is not None and token_scores[li] is not None:
                routed = select_tokens(token_scores[li][rows], run, p.tokens)
            yield rows, p, run, routed
