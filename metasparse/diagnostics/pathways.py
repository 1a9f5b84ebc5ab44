"""Which pathways a controller chooses on a cell: hard decisions on the cell's sentences, summarised.

Per cell: the distribution over codebook patterns per layer, the mean share of heads and FFN groups used
per layer, how often each layer is skipped, the entropy of the decisions (empirical, and of the
controller's own probabilities), FLOPs per word, and how compute follows the model's uncertainty
(Spearman between a sentence's FLOPs and its mean token uncertainty), and per word the compute it got
with its gold tag (:mod:`metasparse.diagnostics.token_pathways`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats

from metasparse.control.controller import controlled
from metasparse.diagnostics.shift import js_divergence
from metasparse.diagnostics.token_pathways import WordCompute
from metasparse.model.uncertainty import normalized_entropy
from metasparse.scoring import score


@dataclass
class CellPathways:
    """A controller's decisions on one cell.

    Attributes:
        pattern_dist: ``[layers, patterns]`` share of sentences taking each pattern.
        head_use, group_use: ``[layers]`` mean share of heads / FFN groups run.
        skip_rate: ``[layers]`` share of sentences skipping the layer.
        decision_entropy: mean over layers of the normalised entropy of ``pattern_dist``.
        controller_entropy: mean normalised entropy of the controller's pattern probabilities.
        flops_fraction, flops_per_word: compute used.
        uncertainty_spearman: Spearman (rho, p) between sentence FLOPs and mean token uncertainty.
        sentence_flops, sentence_uncertainty: per sentence, for plots.
        words: per word, its gold UPOS id, its share of the dense block FLOPs, the layers it ran and the
            share of layers whose FFN it passed.
    """

    pattern_dist: np.ndarray
    head_use: np.ndarray
    group_use: np.ndarray
    skip_rate: np.ndarray
    decision_entropy: float
    controller_entropy: float
    flops_fraction: float
    flops_per_word: float
    uncertainty_spearman: tuple[float, float]
    sentence_flops: list[float] = field(repr=False, default_factory=list)
    sentence_uncertainty: list[float] = field(repr=False, default_factory=list)
    words: WordCompute = field(repr=False, default_factory=WordCompute)

    def usage_vector(self) -> np.ndarray:
        """Heads and groups used per layer, concatenated: the cell's average pathway."""
        return np.concatenate([self.head_use, self.group_use])


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@torch.no_grad()
def cell_pathways(model, controller, corpus, *, max_words: int = 4096) -> CellPathways:
    """Run the controller's hard decisions over ``corpus`` (the one walker) and summarise them."""
    L, P = model.spec.layers, model.n_patterns
    ctrl_ent: list[float] = []
    unc = [0.0] * len(corpus)
    head = model.spec.primary_task
    gold = corpus.labels.get("upos")
    per_sentence: list[tuple] = [()] * len(corpus)

    def observe(batch, idx, out) -> None:
        ctrl_ent.extend(float(normalized_entropy(p.clamp_min(1e-12).log()).mean()) for p in out.decision_probs)
        word_unc = normalized_entropy(out.logits[head])  # [B, T]
        ran = torch.full(batch.word_mask.shape, L) if out.exited_at is None else (out.exited_at + 1).clamp(max=L)
        for b, (i, n) in enumerate(zip(idx, batch.lengths.tolist(), strict=True)):
            unc[i] = float(word_unc[b, :n].mean())
            tags = gold[i] if gold is not None else [-1] * n
            per_sentence[i] = (
                tags,
                out.token_flops[b, :n].tolist(),
                ran[b, :n].tolist(),
                out.token_ffn[b, :n].tolist(),
            )

    s = score(controlled(model, controller), corpus, max_words=max_words, observe=observe)
    levels = np.asarray(s.levels).reshape(-1, L)
    counts = np.stack([np.bincount(levels[:, li], minlength=P) for li in range(L)]).astype(float)
    dist = counts / counts.sum(1, keepdims=True)
    cb = model.codebook
    heads = np.array([p.n_heads / model.spec.heads for p in cb])
    groups = np.array([p.n_groups / model.spec.ffn_groups for p in cb])
    skip = np.array([float(p.skip) for p in cb])
    sent_flops = s.sentence_flops
    rho = stats.spearmanr(sent_flops, unc) if len(set(sent_flops)) > 1 else (float("nan"), float("nan"))
    words = WordCompute()
    for tags, share, ran, ffn in per_sentence:  # corpus order, whatever order the walker batched in
        words.add(tags, share, ran, ffn)
    return CellPathways(
        dist,
        dist @ heads,
        dist @ groups,
        dist @ skip,
        float(np.mean([_entropy(d) / math.log(P) for d in dist])),
        float(np.mean(ctrl_ent)),
        s.flops_fraction,
        s.flops_per_token,
        (float(rho[0]), float(rho[1])),
        sent_flops,
        unc,
        words,
    )


PATHWAY_MEASURES = ("pattern_js", "usage_l1", "token_js")


def pathway_matrices(paths: list[CellPathways]) -> dict[str, np.ndarray]:
    """Pairwise pathway distance: mean over layers of the JS divergence of pattern distributions, the
    L1 distance of the average pathways (heads and groups used per layer, averaged over units), and the
    JS divergence of the per-word compute distributions (what per-token exits and routing change)."""
    n = len(paths)
    out = {m: np.zeros((n, n)) for m in PATHWAY_MEASURES}
    for i in range(n):
        for j in range(i + 1, n):
            a, b = paths[i], paths[j]
            js = np.mean(
                [
                    js_divergence(dict(enumerate(x)), dict(enumerate(y)))
                    for x, y in zip(a.pattern_dist, b.pattern_dist, strict=True)
                ]
            )
            l1 = float(np.abs(a.usage_vector() - b.usage_vector()).mean())
            out["pattern_js"][i, j] = out["pattern_js"][j, i] = js
            tok = js_divergence(dict(enumerate(a.words.histogram())), dict(enumerate(b.words.histogram())))
            out["token_js"][i, j] = out["token_js"][j, i] = tok
            out["usage_l1"][i, j] = out["usage_l1"][j, i] = l1
    return out
