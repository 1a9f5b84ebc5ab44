"""The lexical memory beside the subwords: hashed affixes, of which a backbone reads the leading
``affixes`` columns (so the first backbones, which read suffixes of 1-3 characters, load and run as before)."""

from __future__ import annotations

import pytest
import torch
from model_utils import random_batch, tiny_model

from metasparse.errors import ConfigValueError
from metasparse.model.features import AFFIXES, pad, suffix_buckets
from metasparse.model.spec import ModelConfig


def test_affix_columns_keep_the_first_backbones_suffix_buckets_first():
    # Written down once: CRC-32 buckets of "1\x1fa", "2\x1fsa", "3\x1fssa" (the first backbones' only
    # columns) in 32768 buckets. A change here would orphan every cached backbone's suffix rows.
    b = suffix_buckets("TALOSSA", 32768)
    assert len(b) == len(AFFIXES) == 6 and b[:3] == [25588, 5625, 24837]
    assert b == suffix_buckets("talossa", 32768)  # case-folded
    # a suffix and a prefix of the same characters are different features
    assert suffix_buckets("alal", 32768)[1] != suffix_buckets("alal", 32768)[4]
    assert [kind for kind, _ in AFFIXES] == ["s", "s", "s", "s", "p", "p"]


def test_a_backbone_reads_only_its_leading_affix_columns():
    batch = random_batch([5, 3])
    wide = torch.randint(1, 64, (2, 5, len(AFFIXES)), generator=torch.Generator().manual_seed(1))
    batch.suffix_hash = torch.cat([batch.suffix_hash, wide[..., 3:]], -1) * batch.word_mask[..., None]
    other = random_batch([5, 3])
    other.suffix_hash = batch.suffix_hash.clone()
    other.suffix_hash[..., 3:] = (other.suffix_hash[..., 3:] + 7) % 63 + 1  # other longer affixes only
    other.suffix_hash *= batch.word_mask[..., None]
    first = tiny_model()  # affixes=3: the first backbones
    assert torch.equal(first.embed(batch), first.embed(other))
    six = tiny_model(affixes=6)
    assert not torch.allclose(six.embed(batch), six.embed(other))


def test_padding_keeps_the_encoded_column_count():
    from metasparse.model.features import EncodedSentence

    items = [
        EncodedSentence([5, 6], [0, 1], [3, 4], [[7, 8, 9], [1, 2, 3]]),
        EncodedSentence([5], [0], [3], [[4, 5, 6]]),
    ]
    padded = pad(items).suffix_hash
    assert padded.shape == (2, 2, 3) and padded[1].tolist() == [[4, 5, 6], [0, 0, 0]]


@pytest.mark.parametrize("bad", [0, len(AFFIXES) + 1])
def test_affixes_out_of_range_are_refused(bad):
    with pytest.raises(ConfigValueError, match="model.affixes"):
        ModelConfig(affixes=bad)


def test_frequency_aware_word_dropout_drops_rare_forms_more_and_keeps_the_old_draw():
    from metasparse.data.word_vocabulary import WordVocabulary
    from metasparse.train.pretrain_step import drop_words

    vocab = WordVocabulary.build([["the", "the", "the", "court"], ["The", "ruling"]], min_count=1)
    assert vocab.forms == ("the", "court", "ruling") and vocab.counts == (4, 1, 1)
    assert vocab.unknown_probabilities(1.0) == [0.0, 0.2, 0.5, 0.5]
    ids = torch.tensor([[1, 2, 3, 0]]).repeat(20000, 1)
    torch.manual_seed(0)
    plain = drop_words(ids, 0.25)
    torch.manual_seed(0)
    assert torch.equal(drop_words(ids, 0.25, torch.zeros(4)), plain)  # no extra dropout: the same draw
    torch.manual_seed(0)
    freq = drop_words(ids, 0.25, torch.tensor(vocab.unknown_probabilities(1.0)))
    dropped = (freq == 0).double().mean(0)
    # 1 - 0.75 * (1 - alpha / (alpha + count)): 0.4 for "the", 0.625 for the forms seen once; 0 stays 0
    assert dropped[:3].tolist() == pytest.approx([0.4, 0.625, 0.625], abs=0.015) and dropped[3] == 1.0
    assert ((freq == ids) | (freq == 0)).all()  # a form is kept or unknown, never another form
    with pytest.raises(ValueError, match="no counts"):
        WordVocabulary(("a",), 1).unknown_probabilities(1.0)
