"""Each word's first and last subword through their own tables (``model.piece_ends``)."""

from __future__ import annotations

import dataclasses

import torch
from model_utils import random_batch, tiny_model

from metasparse.model.encoder import GatedEncoder


def test_piece_ends_add_each_words_first_and_last_subword_embedding():
    base = tiny_model()
    model = GatedEncoder(dataclasses.replace(base.spec, piece_ends=True)).eval()
    batch = random_batch([5, 3, 7])
    assert int(batch.word_index.max()) < 7 and (batch.word_index >= 0).sum() > batch.word_mask.sum()  # pieces > words
    with torch.no_grad():
        for table in (model.first_piece_emb, model.last_piece_emb):
            table.weight.normal_()
            table.weight[0] = 0
        got = model._piece_ends(batch, *_slots(batch))
        ends = torch.zeros_like(got)
        for b in range(batch.size):  # by hand: a word's subwords in order
            for t in range(int(batch.word_mask[b].sum())):
                ids = [int(i) for i, w in zip(batch.input_ids[b], batch.word_index[b], strict=True) if int(w) == t]
                ends[b, t] = model.first_piece_emb.weight[ids[0]] + model.last_piece_emb.weight[ids[-1]]
        torch.testing.assert_close(got, ends)
        assert got[~batch.word_mask].abs().max() == 0  # padding words read the zero row
        model(batch)  # and the whole forward runs with them


def _slots(batch):
    B, T = batch.word_mask.shape
    valid = batch.word_index >= 0
    return (torch.arange(B)[:, None] * T + batch.word_index.clamp(min=0))[valid], valid
