"""One pretraining step: the loss of a batch (dense plus a random pattern per layer, with seeded word
dropout), this rank's share of it under data parallelism, and the optimiser step with the non-finite
guard. :mod:`metasparse.train.pretraining` runs the loop around it."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from metasparse.config import PretrainConfig
from metasparse.distributed import all_reduce_grads, all_reduce_sum
from metasparse.errors import ConfigValueError, NonFiniteError
from metasparse.model.encoder import Decision, GatedEncoder
from metasparse.model.features import IGNORE_INDEX
from metasparse.model.loss import task_loss
from metasparse.model.precision import training_autocast

log = logging.getLogger(__name__)


def _random_plan_policy(model: GatedEncoder, step: int, seed: int, B: int, T: int, rows: torch.Tensor | None = None):
    """One random codebook pattern per layer for the whole batch, random token scores for routing (drawn
    for the whole ``B x T`` batch; ``rows``: a data-parallel rank's sentences of it)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    levels = torch.randint(0, model.n_patterns, (len(model.blocks),), generator=g)
    scores = torch.rand(len(model.blocks), B, T, generator=g)
    if rows is not None:
        scores, B = scores[:, rows], len(rows)

    def policy(i: int, x: torch.Tensor, mask: torch.Tensor) -> Decision:
        return Decision(F.one_hot(levels[i].expand(B), model.n_patterns).to(x.dtype), scores[i])

    return policy


def unknown_probabilities(cfg: PretrainConfig, tokenizer) -> torch.Tensor | None:
    """Per word id, the extra word-dropout probability of ``pretrain.word_dropout_alpha`` (None: off).
    Only asked for a backbone with a word-form table: a converted pretrained encoder has none, and word
    dropout then changes nothing.

    Raises:
        ConfigValueError: alpha > 0 with hashed word forms (``tokenizer.word_min_count=0``: no counts).
    """
    alpha = cfg.pretrain.word_dropout_alpha
    if not alpha:
        return None
    if tokenizer.words is None:
        raise ConfigValueError(
            f"pretrain.word_dropout_alpha={alpha} needs the word vocabulary: set tokenizer.word_min_count >= 1"
            " (0 hashes word forms, whose counts are unknown)"
        )
    return torch.tensor(tokenizer.words.unknown_probabilities(alpha))


def drop_words(word_ids: torch.Tensor, rate: float, unknown: torch.Tensor | None = None) -> torch.Tensor:
    """``word_ids`` with each form replaced by the unknown id 0 with probability ``rate``, or, given
    ``unknown`` (per id), ``1 - (1 - rate) * (1 - unknown[id])``: kept only if neither dropout takes it.
    Draws from torch's global generator (the caller seeds it per step)."""
    u = torch.rand(word_ids.shape)
    # without ``unknown``: the draw and comparison from before the frequency-aware option, so cached
    # backbones stay reproducible
    p_drop = rate if unknown is None else 1 - (1 - rate) * (1 - unknown[word_ids])
    return word_ids.masked_fill(u < p_drop, 0)


def _step_loss(
    cfg: PretrainConfig,
    model: GatedEncoder,
    batch,
    step: int,
    rank: int = 0,
    world: int = 1,
    unknown: torch.Tensor | None = None,
):
    """Dense loss plus the loss under a random pattern per layer, with seeded word dropout and dropout.

    Under data parallelism a rank computes this on its sentences of the batch (every ``world``-th from
    ``rank``) with the word dropout and random pattern drawn for the whole batch and the whole batch's token
    counts as the normaliser, so the ranks' gradients sum to the one-process gradient (model dropout aside,
    whose masks depend on the sub-batch's shape). ``unknown``: per word id, an extra probability of
    replacing the form by the unknown id (frequency-aware word dropout).
    """
    p = cfg.pretrain
    torch.manual_seed(cfg.seed * 7919 + step)  # dropout: a function of the step, so resume is exact
    if p.word_dropout > 0 or unknown is not None:
        batch.word_hash = drop_words(batch.word_hash, p.word_dropout, unknown)
    B, T = batch.word_mask.shape
    counts = {t: int((y != IGNORE_INDEX).sum()) for t, y in batch.labels.items()}
    rows = torch.arange(rank, B, world) if world > 1 else None
    part = batch.select(rows) if rows is not None else batch
    loss = task_loss(model(part).logits, part.labels, normalizers=counts)
    if p.sparse_weight > 0:
        sparse = model(part, _random_plan_policy(model, step, cfg.seed, B, T, rows))
        loss = loss + p.sparse_weight * task_loss(sparse.logits, part.labels, normalizers=counts)
    return loss


def _finite_or_skip(norm: torch.Tensor, step: int, nonfinite: list[dict], limit: int) -> bool:
    """True for a finite gradient norm; else record the step as skipped (the optimiser does not step, the
    last good parameters stay) and raise once more than ``limit`` steps were skipped.

    Raises:
        NonFiniteError: past ``pretrain.max_nonfinite`` skipped steps.
    """
    if torch.isfinite(norm):
        return True
    nonfinite.append({"step": step + 1, "grad_norm": float(norm)})
    log.warning("non-finite gradient norm %s at pretraining step %d: step skipped", float(norm), step + 1)
    if len(nonfinite) > limit:
        raise NonFiniteError(f"{len(nonfinite)} non-finite pretraining steps (pretrain.max_nonfinite={limit})")
    return False


def optimise(
    cfg: PretrainConfig,
    model: GatedEncoder,
    opt,
    batch,
    step: int,
    lr: float,
    nonfinite: list[dict],
    rank: int = 0,
    world: int = 1,
    unknown: torch.Tensor | None = None,
) -> float | None:
    """One step on ``batch``: loss, backward, all-reduce, clipped; the optimiser steps at ``lr`` only on a
    finite gradient. Returns the whole batch's loss, or None for a skipped step."""
    with training_autocast(cfg.pretrain.precision):
        loss = _step_loss(cfg, model, batch, step, rank, world, unknown)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    all_reduce_grads(model.parameters())  # data parallel: every rank now holds the whole batch's gradient
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.pretrain.grad_clip)
    value = None
    if _finite_or_skip(norm, step, nonfinite, cfg.pretrain.max_nonfinite):
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        opt.step()
        value = all_reduce_sum(float(loss.detach()))
    opt.zero_grad(set_to_none=True)
    return value


def build_optimizer(model: GatedEncoder, p, finetune_lr: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices other than embeddings. A converted pretrained encoder's own
    weights learn at ``finetune_lr`` (as ``lr_scale``, which the schedule multiplies), its new task heads
    at ``p.lr``: fine-tuning at a from-scratch rate would erase what the checkpoint knows."""

    def decays(n: str, x: torch.Tensor) -> bool:
        return x.ndim >= 2 and "emb" not in n

    named = list(model.named_parameters())
    # a from-scratch backbone: every weight is new, one rate (head or not makes no group)
    split_heads = model.spec.pretrained is not None
    groups = []
    for decay in (True, False):
        for head in (True, False) if split_heads else (False,):
            params = [
                x for n, x in named if decays(n, x) == decay and (not split_heads or n.startswith("heads.") == head)
            ]
            scale = 1.0 if head or not split_heads else finetune_lr / p.lr
            if params:
                groups.append({"params": params, "weight_decay": p.weight_decay if decay else 0.0, "lr_scale": scale})
    return torch.optim.AdamW(groups, lr=p.lr)
