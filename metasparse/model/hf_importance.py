"""Order a Hugging Face BERT-family encoder's heads and FFN channel groups by importance, so that the
prefixes the gating runs (:class:`metasparse.model.hf_adapter.GatedBertAdapter`) are the best subsets.

A pretrained checkpoint's units come in no useful order: running "the first half of the heads" keeps
an arbitrary half. Here each unit's importance is what knocking it out alone changes: the mean squared
change of the last hidden states over sample sentences (task-agnostic: no head or label is needed, so
it works at load time). Each layer's units are then permuted in place, most important first: the
query, key and value rows and the output-projection columns of each head, the intermediate rows and
output columns of each FFN group. A permutation changes no output of the dense model.

Example:
    >>> importance = reorder_by_importance(bert, enc["input_ids"], enc["attention_mask"], ffn_groups=8)
    >>> gated = GatedBertAdapter(bert, codebook, ffn_groups=8)   # prefixes are now the important units
"""

from __future__ import annotations

import torch
from torch import nn


def _hidden(bert: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    return bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _knockout(linear: nn.Linear, start: int, stop: int):
    """A pre-hook on an output projection that zeroes input channels ``[start, stop)`` (one unit)."""

    def hook(module, args):
        x = args[0].clone()
        x[..., start:stop] = 0
        return (x,)

    return linear.register_forward_pre_hook(hook)


@torch.no_grad()
def unit_importance(
    bert: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, ffn_groups: int
) -> dict[str, torch.Tensor]:
    """``{"heads": [layers, heads], "groups": [layers, ffn_groups]}``: the mean squared change of the valid
    tokens' last hidden states when the unit alone is switched off."""
    cfg = bert.config
    heads, d_head = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    group = cfg.intermediate_size // ffn_groups
    mask = attention_mask.bool()
    ref = _hidden(bert, input_ids, attention_mask)[mask]
    out = {
        "heads": torch.zeros(len(bert.encoder.layer), heads),
        "groups": torch.zeros(len(bert.encoder.layer), ffn_groups),
    }
    for li, layer in enumerate(bert.encoder.layer):
        for kind, linear, n, width in (
            ("heads", layer.attention.output.dense, heads, d_head),
            ("groups", layer.output.dense, ffn_groups, group),
        ):
            for u in range(n):
                handle = _knockout(linear, u * width, (u + 1) * width)
                try:
                    out[kind][li, u] = (_hidden(bert, input_ids, attention_mask)[mask] - ref).pow(2).mean()
                finally:
                    handle.remove()
    return out


def _blocks(order: list[int], width: int) -> torch.Tensor:
    return torch.cat([torch.arange(u * width, (u + 1) * width) for u in order])


@torch.no_grad()
def permute_layer(layer: nn.Module, head_order: list[int], group_order: list[int], d_head: int, group: int) -> None:
    """Reorder one BERT layer's heads and FFN groups in place (``order[k]``: the unit that moves to ``k``)."""
    hi, gi = _blocks(head_order, d_head), _blocks(group_order, group)
    att = layer.attention.self
    for lin in (att.query, att.key, att.value):
        lin.weight.copy_(lin.weight[hi])
        lin.bias.copy_(lin.bias[hi])
    o = layer.attention.output.dense
    o.weight.copy_(o.weight[:, hi])
    inter, out = layer.intermediate.dense, layer.output.dense
    inter.weight.copy_(inter.weight[gi])
    inter.bias.copy_(inter.bias[gi])
    out.weight.copy_(out.weight[:, gi])


def reorder_by_importance(
    bert: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, ffn_groups: int
) -> dict[str, torch.Tensor]:
    """Measure :func:`unit_importance` on the sample and permute every layer's units, most important first.

    Returns:
        The importance measured before the permutation (rows in the checkpoint's order).

    Raises:
        ValueError: ``ffn_groups`` does not divide the intermediate size.
    """
    cfg = bert.config
    if cfg.intermediate_size % ffn_groups:
        raise ValueError(f"ffn_groups={ffn_groups} must divide intermediate_size={cfg.intermediate_size}")
    imp = unit_importance(bert, input_ids, attention_mask, ffn_groups)
    d_head, group = cfg.hidden_size // cfg.num_attention_heads, cfg.intermediate_size // ffn_groups
    for li, layer in enumerate(bert.encoder.layer):
        heads = torch.argsort(imp["heads"][li], descending=True, stable=True).tolist()
        groups = torch.argsort(imp["groups"][li], descending=True, stable=True).tolist()
        permute_layer(layer, heads, groups, d_head, group)
    return imp
