"""Static structured pruning by importance: Michel et al. (2019), "Are Sixteen Heads Really Better than
One?", extended from heads to FFN channel groups.

The importance of a unit is the expected absolute gradient of the loss with respect to a gate that
multiplies the unit's output (a first-order estimate of the loss change when the unit is removed). Heads
and groups are then removed, least important per FLOP first, until the budget is met; one structure
serves every input.
"""

from __future__ import annotations

import torch

from metasparse.baselines.units import UnitCosts, prune_to_budget, reorder_units
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import GatedEncoder
from metasparse.model.loss import task_loss
from metasparse.scoring.methods import StaticMethod


def unit_importance(
    model: GatedEncoder, corpus: EncodedCorpus, *, max_words: int = 256, max_batches: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected ``|dL/d gate|`` per head ``[layers, heads]`` and per FFN group ``[layers, groups]``.

    Small batches (``max_words``) make the expectation closer to Michel et al.'s per-example one.
    """
    model.eval()
    L, H, G = model.spec.layers, model.spec.heads, model.spec.ffn_groups
    head_imp, group_imp = torch.zeros(L, H), torch.zeros(L, G)
    batches = corpus.batches(max_words, shuffle=True, seed=0)[:max_batches]
    for idx in batches:
        batch = corpus.batch(idx)
        hg = [torch.ones(H, requires_grad=True) for _ in range(L)]
        gg = [torch.ones(G, requires_grad=True) for _ in range(L)]
        out = model.forward_with(batch, lambda i, blk, x, m, hg=hg, gg=gg: blk.forward_unit_gated(x, m, hg[i], gg[i]))
        grads = torch.autograd.grad(task_loss(out.logits, batch.labels), hg + gg)
        head_imp += torch.stack(grads[:L]).abs()
        group_imp += torch.stack(grads[L:]).abs()
    return head_imp / len(batches), group_imp / len(batches)


def importance_pruned(model: GatedEncoder, train: EncodedCorpus, calib: EncodedCorpus, target: float) -> StaticMethod:
    """The backbone pruned to ``target`` FLOPs (on ``calib``'s lengths) by unit importance measured on ``train``."""
    head_imp, group_imp = unit_importance(model, train)
    kept = prune_to_budget(head_imp, group_imp, UnitCosts.of(model, calib.lengths()), target)
    return StaticMethod(reorder_units(model, kept), kept.patterns(), "importance")
