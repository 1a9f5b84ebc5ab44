"""Analytic FLOPs of the gated encoder, counted the way ``torch.utils.flop_counter`` counts them.

Only matmul-like work is counted (2 FLOPs per multiply-add): projections, attention products, FFN,
task heads and the controller's layers. Embedding lookups, layer norms, softmax and activations are
left out, as FlopCounterMode leaves them out, so the two can be cross-checked.
"""

from __future__ import annotations

from metasparse.model.encoder import CHAR_KERNEL, EncoderSpec
from metasparse.model.features import MAX_CHARS
from metasparse.model.patterns import Pattern


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
    """FLOPs of one early-exit check on ``n`` words (the UPOS head on every word's state)."""
    labels = spec.tasks["upos"] if "upos" in spec.tasks else next(iter(spec.tasks.values()))
    return 2 * n * spec.d_model * labels


def heads_flops(spec: EncoderSpec, n: int) -> int:
    """FLOPs of the task heads on ``n`` words."""
    return sum(2 * n * spec.d_model * k for k in spec.tasks.values())


def char_flops(spec: EncoderSpec, n: int) -> int:
    """FLOPs of the character encoder on ``n`` words (convolution over MAX_CHARS positions, projection)."""
    if not spec.char_dim:
        return 0
    conv = 2 * MAX_CHARS * spec.char_channels * spec.char_dim * CHAR_KERNEL
    return n * (conv + 2 * spec.char_channels * spec.d_model)


def fixed_flops(spec: EncoderSpec, n: int) -> int:
    """FLOPs no policy can switch off: the character encoder and the task heads."""
    return char_flops(spec, n) + heads_flops(spec, n)


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
