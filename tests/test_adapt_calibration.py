"""Re-calibration after adapting: on the support set plus unlabelled sentences of the target, never their
labels, so the adapted model meets the budget on new text instead of undershooting it."""

from __future__ import annotations

import numpy as np
import torch
from model_utils import tiny_model

from metasparse.control.controller import Controller
from metasparse.control.train import calibrate_bias
from metasparse.meta.evaluation import calibration_rows
from metasparse.model.corpus import EncodedCorpus
from metasparse.model.features import EncodedSentence


def test_calibration_rows_are_the_support_plus_seeded_unlabelled_pool_sentences():
    pool, support = list(range(100, 160)), [101, 130, 150]
    rows = calibration_rows(pool, support, 20, seed=7)
    assert set(support) <= set(rows) and set(rows) <= set(pool) and len(rows) == 23
    assert rows == calibration_rows(pool, support, 20, seed=7)  # fixed by the seed
    assert rows != calibration_rows(pool, support, 20, seed=8)
    assert calibration_rows(pool, support, 0, seed=7) == support
    assert calibration_rows(pool, support, 500, seed=7) == pool  # capped by the pool


def _corpus(n: int, seed: int, labels_seed: int) -> EncodedCorpus:
    g = np.random.default_rng(seed)
    lab = np.random.default_rng(labels_seed)
    items, labels = [], []
    for _ in range(n):
        k = int(g.integers(3, 12))
        ids = g.integers(4, 100, size=2 * k).tolist()
        items.append(
            EncodedSentence(ids, [i // 2 for i in range(2 * k)], g.integers(0, 64, k).tolist(), [[1, 1, 1]] * k)
        )
        labels.append(lab.integers(0, 17, k).tolist())
    return EncodedCorpus(np.arange(n), items, {"upos": labels}, ["xx"] * n, ["xx/d"] * n)


def test_calibration_reads_no_label():
    """The same sentences with other labels give the same shift: calibration reads only the inputs."""
    model = tiny_model()
    shifts = []
    for labels_seed in (0, 1):
        torch.manual_seed(0)
        ctrl = Controller(model)
        shifts.append(calibrate_bias(model, ctrl, _corpus(40, seed=3, labels_seed=labels_seed), 0.5))
    assert shifts[0] == shifts[1]
