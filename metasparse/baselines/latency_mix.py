"""A random mix of two latency-aware static structures that spends the budget exactly.

The latency-aware knapsack (:mod:`metasparse.baselines.latency_static`) picks one pattern per layer, so
its predicted latency moves in steps: at 0.3 of dense on the legal run it lands at 0.284 and the next
structure up costs 0.326, with +2.3 UPOS / +3.7 DEPREL between them (``bench.headroom``). A per-input
method can spend the budget between two such steps; a single static structure cannot. This baseline
does so without learning anything: each sentence runs the structure at the target (lean) or the next
one up (broad), drawn from a hash of the sentence with the probability that makes the expected predicted
latency on the calibration sentences equal the target. Both structures keep prefixes of one importance
ranking per layer, so they run on one reordered copy of the backbone. It is what a per-input controller
must beat to show that it tells sentences apart, not only that it fills the budget.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from metasparse.baselines.importance import unit_importance
from metasparse.baselines.latency_static import KnapsackChoice, latency_knapsack, layer_values, ranked_units
from metasparse.baselines.random_policy import random_levels, random_policy, sentence_keys
from metasparse.baselines.units import reorder_units
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.encoder import GatedEncoder
from metasparse.runtime.costs import CostTable
from metasparse.scoring.methods import PolicyMethod

log = logging.getLogger(__name__)
STEP = 0.005  # budget increments searched for the next structure up


class MixMethod(PolicyMethod):
    """Each sentence runs ``broad`` with probability ``share`` (a pure function of the sentence and seed),
    else ``lean``: one codebook index per layer each."""

    def __init__(self, model: GatedEncoder, lean: list[int], broad: list[int], share: float, seed: int = 0) -> None:
        self.plans = torch.tensor([lean, broad], dtype=torch.long)
        self.share, self.seed = share, seed
        super().__init__(model, None, lambda n: 0, "latency_mix")

    def forward(self, batch):
        pick = random_levels((1.0 - self.share, self.share), sentence_keys(batch), 1, self.seed)[:, 0]
        return self.model(batch, random_policy(self.model, self.plans[pick]))


def next_structure_up(
    model: GatedEncoder, values: np.ndarray, table: CostTable, lengths, lean: KnapsackChoice, batch: int
) -> KnapsackChoice:
    """The knapsack's structure at the smallest budget above ``lean``'s whose predicted latency is higher
    (``lean`` itself when none is, i.e. it already runs every layer in full)."""
    target = lean.latency_fraction
    while target < 1.0:
        target = min(1.0, target + STEP)
        choice = latency_knapsack(model, values, table, lengths, target, batch)
        if choice.latency_fraction > lean.latency_fraction + 1e-9:
            return choice
    return lean


def latency_mixed(
    model: GatedEncoder,
    train: EncodedCorpus,
    calib: EncodedCorpus,
    target: float,
    table: CostTable,
    *,
    batch: int = 1,
    seed: int = 0,
) -> MixMethod:
    """The mix of the knapsack's structure at ``target`` and the next one up whose expected predicted
    latency on ``calib``'s lengths is ``target`` (units ranked by importance on ``train``)."""
    head_imp, group_imp = unit_importance(model, train)
    values, lengths = layer_values(model, head_imp, group_imp), calib.lengths()
    lean = latency_knapsack(model, values, table, lengths, target, batch)
    broad = next_structure_up(model, values, table, lengths, lean, batch)
    gap = broad.latency_fraction - lean.latency_fraction
    share = float(np.clip((target - lean.latency_fraction) / gap, 0.0, 1.0)) if gap > 0 else 0.0
    log.info(
        "latency mix: %s (%.3f) and %s (%.3f), %.0f%% of sentences on the broad one",
        *(lean.levels, lean.latency_fraction, broad.levels, broad.latency_fraction, 100 * share),
    )
    return MixMethod(reorder_units(model, ranked_units(head_imp, group_imp)), lean.levels, broad.levels, share, seed)
