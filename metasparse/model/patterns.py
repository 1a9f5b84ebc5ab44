"""Execution patterns: the few hard choices a controller picks from per input and layer.

A pattern fixes, for one layer, how many attention heads run (a prefix of the importance-ordered
heads), how many FFN channel groups run (a prefix too), which share of tokens the FFN sees, the k of
top-k attention, or that the layer is skipped. Few patterns per layer is what makes per-input decisions
cheap at batch > 1: inputs that chose the same pattern run together as one sliced matmul.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from metasparse.model.tokens import kept_count


@dataclass  # not frozen: it is also the config schema of a codebook entry, which OmegaConf must be able to set
class PatternSpec:
    """A codebook entry as written in config (``model.codebook``): fractions of the layer's units.

    Attributes:
        heads: fraction of attention heads (0 with ``ffn=0`` skips the layer).
        ffn: fraction of FFN channel groups.
        tokens: fraction of each sentence's tokens the FFN sees (1.0: all).
        topk: keep the k largest attention scores per query (None: all).
        exit: per-token early exit after this layer: a token whose tag distribution (the UPOS head on its
            state) has normalised entropy at most ``exit`` stops; its state is frozen for every later layer,
            which still reads it as a key and value (None: no exit).
    """

    heads: float
    ffn: float
    tokens: float = 1.0
    topk: int | None = None
    exit: float | None = None


@dataclass(frozen=True)
class Pattern:
    """A codebook entry resolved for one model: unit counts.

    Attributes:
        n_heads: number of heads run (prefix); ``PatternSpec.heads`` is the fraction this was resolved from.
        n_groups: number of FFN channel groups run (prefix).
        tokens: fraction of valid tokens routed through the FFN.
        topk: top-k attention (None: full attention).
        exit: early-exit entropy threshold applied after the layer (None: no exit).
    """

    n_heads: int
    n_groups: int
    tokens: float = 1.0
    topk: int | None = None
    exit: float | None = None

    @property
    def skip(self) -> bool:
        """True when the layer does nothing (identity)."""
        return self.n_heads == 0 and self.n_groups == 0

    def kept_tokens(self, n: int) -> int:
        """Tokens the FFN sees in a sentence of ``n`` tokens (at least one)."""
        return kept_count(n, self.tokens)

    @property
    def label(self) -> str:
        """Short human-readable form for reports: ``skip``, ``4h 2g``, ``8h 4g tok0.5 top2 exit0.03``."""
        if self.skip:
            return "skip"
        parts = [f"{self.n_heads}h", f"{self.n_groups}g"]
        if self.tokens < 1.0:
            parts.append(f"tok{self.tokens:g}")
        if self.topk is not None:
            parts.append(f"top{self.topk}")
        if self.exit is not None:
            parts.append(f"exit{self.exit:g}")
        return " ".join(parts)


def resolve_codebook(specs: Sequence[PatternSpec], n_heads: int, n_groups: int) -> list[Pattern]:
    """Turn fractional specs into unit counts for a model with ``n_heads`` and ``n_groups``.

    Raises:
        ValueError: a fraction outside [0, 1], a half-skipped layer, or duplicate entries.
    """
    out: list[Pattern] = []
    for i, s in enumerate(specs):
        for key in ("heads", "ffn", "tokens"):
            v = getattr(s, key)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"codebook[{i}].{key}={v} is out of range; allowed: [0, 1]")
        if s.topk is not None and s.topk < 1:
            raise ValueError(f"codebook[{i}].topk={s.topk} is out of range; allowed: null or >= 1")
        if s.exit is not None and not 0.0 <= s.exit <= 1.0:
            raise ValueError(f"codebook[{i}].exit={s.exit} is out of range; allowed: null or [0, 1]")
        p = Pattern(round(s.heads * n_heads), round(s.ffn * n_groups), s.tokens, s.topk, s.exit)
        if (p.n_heads == 0) != (p.n_groups == 0):
            raise ValueError(f"codebook[{i}]={s}: heads and ffn must be both 0 (skip the layer) or both > 0")
        if s.tokens <= 0 and not p.skip:
            raise ValueError(f"codebook[{i}].tokens must be > 0 unless the layer is skipped")
        out.append(p)
    if len(set(out)) != len(out):
        raise ValueError(f"codebook has duplicate entries after rounding to units: {out}")
    if not out:
        raise ValueError("codebook is empty")
    return out


DEFAULT_CODEBOOK: tuple[PatternSpec, ...] = (
    PatternSpec(0.0, 0.0),
    PatternSpec(0.25, 0.25),
    PatternSpec(0.5, 0.5),
    PatternSpec(0.75, 0.75),
    PatternSpec(1.0, 1.0),
)
