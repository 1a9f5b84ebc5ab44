"""The character encoder: what a word's characters become, that padding never changes a word's vector,
that sliced execution still equals the masked reference, and that its FLOPs are counted as they run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_utils import EVERY_UNIT, random_batch, tiny_model
from torch.utils.flop_counter import FlopCounterMode

from metasparse.model.encoder import Decision, GatedEncoder, ModelConfig
from metasparse.model.features import BOW, CHAR_HEAD, EOW, MAX_CHARS, char_ids, pad
from metasparse.model.flops import char_flops, dense_flops, fixed_flops, gated_flops


def _char_model(seed: int = 0) -> GatedEncoder:
    return tiny_model(EVERY_UNIT, seed, char_dim=8, char_channels=16)


def _with_chars(batch, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, T = batch.word_mask.shape
    chars = torch.zeros(B, T, MAX_CHARS, dtype=torch.long)
    for b in range(B):
        for t in range(int(batch.lengths[b])):
            n = int(torch.randint(1, MAX_CHARS - 1, (1,), generator=g))
            chars[b, t, : n + 2] = torch.tensor([BOW, *torch.randint(3, 500, (n,), generator=g).tolist(), EOW])
    batch.char_ids = chars
    return batch


def test_char_ids_frame_the_word_and_keep_its_start_and_end():
    short = char_ids("Haus")
    assert short[0] == BOW and short[-1] == EOW and len(short) == 6
    assert char_ids("haus") != short  # case is kept: capitals tell proper nouns
    long_word = "Verfassungsschutzbehörden"
    ids = char_ids(long_word)
    assert len(ids) == MAX_CHARS
    assert ids[1 : 1 + CHAR_HEAD] == char_ids(long_word[:CHAR_HEAD])[1:-1]
    tail = MAX_CHARS - 2 - CHAR_HEAD
    assert ids[1 + CHAR_HEAD : -1] == char_ids(long_word[-tail:])[1:-1]
    assert all(i > 0 for i in ids)


def test_padding_never_changes_a_words_character_vector():
    model = _char_model()
    batch = _with_chars(random_batch([5, 2, 7]))
    with torch.no_grad():
        together = model.char_features(batch)
        for b in range(3):
            alone = model.char_features(batch.select([b]))
            n = int(batch.lengths[b])
            assert torch.allclose(together[b, :n], alone[0, :n], atol=1e-6)
            assert (together[b, n:] == 0).all()


@pytest.mark.parametrize("pattern", range(len(EVERY_UNIT)))
def test_sliced_equals_masked_with_the_character_encoder(pattern):
    model = _char_model()
    batch = _with_chars(random_batch([7, 3, 5, 1]))
    B, T = batch.word_mask.shape
    scores = [torch.randn(B, T, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    pol = lambda i, x, m: Decision(F.one_hot(torch.full((B,), pattern), model.n_patterns).to(x.dtype), scores[i])  # noqa: E731
    with torch.no_grad():
        sliced = model(batch, pol, mode="sliced").logits
        masked = model(batch, pol, mode="masked").logits
    for task in sliced:
        assert torch.allclose(sliced[task][batch.word_mask], masked[task][batch.word_mask], atol=1e-5)


@pytest.mark.parametrize("n", [1, 6])
def test_character_encoder_flops_are_counted_as_they_run(n):
    model = _char_model()
    batch = _with_chars(random_batch([n]))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(batch)
    assert fc.get_total_flops() == dense_flops(model.spec, n)
    assert char_flops(model.spec, n) > 0 and fixed_flops(model.spec, n) > char_flops(model.spec, n)
    skip = [model.codebook[0]] * 3  # every layer skipped: the character encoder and heads still run
    assert gated_flops(model.spec, skip, n) == fixed_flops(model.spec, n)


def test_a_batch_without_characters_is_refused_by_a_character_model():
    model = _char_model()
    batch = random_batch([3])  # char_ids None
    with pytest.raises(ValueError, match="reads characters"):
        model(batch)


def test_pad_carries_characters_and_select_keeps_them():
    from metasparse.model.features import EncodedSentence

    items = [EncodedSentence([5, 6], [0, 1], [3, 4], [[1, 2, 3]] * 2, [char_ids("ab"), char_ids("c")])]
    items.append(EncodedSentence([7], [0], [9], [[1, 2, 3]], [char_ids("xyz")]))
    b = pad(items)
    assert b.char_ids.shape == (2, 2, MAX_CHARS)
    assert b.char_ids[1, 1].sum() == 0  # a padding word has no characters
    assert b.select([1]).char_ids[0, 0, :5].tolist() == char_ids("xyz")


def test_model_config_refuses_half_a_character_encoder():
    from metasparse.errors import ConfigValueError

    with pytest.raises(ConfigValueError, match="model.char_channels"):
        ModelConfig(char_dim=16, char_channels=0)


def test_pad_puts_each_sentence_in_its_row_and_pads_the_rest():
    """Sentences of different lengths (one empty) and their labels: each row holds its sentence's values in
    order, padding values after them."""
    from metasparse.model.features import IGNORE_INDEX, MAX_CHARS, EncodedSentence

    items = [
        EncodedSentence([5, 6, 7], [0, 0, 1], [11, 12], [[1, 2, 3], [4, 5, 6]], [[1, 9, 2], [1, 2]]),
        EncodedSentence([], [], [], [], []),
        EncodedSentence([8], [0], [13], [[7, 8, 9]], [[1, 4, 4, 2]]),
    ]
    b = pad(items, {"upos": [[3, 4], [], [5]]})
    assert b.input_ids.tolist() == [[5, 6, 7], [0, 0, 0], [8, 0, 0]]
    assert b.word_index.tolist() == [[0, 0, 1], [-1, -1, -1], [0, -1, -1]]
    assert b.word_hash.tolist() == [[11, 12], [0, 0], [13, 0]]
    assert b.word_mask.tolist() == [[True, True], [False, False], [True, False]]
    assert b.suffix_hash[2].tolist() == [[7, 8, 9], [0, 0, 0]]
    assert b.char_ids.shape == (3, 2, MAX_CHARS) and b.char_ids[0, 1, :3].tolist() == [1, 2, 0]
    assert b.labels["upos"].tolist() == [[3, 4], [IGNORE_INDEX] * 2, [5, IGNORE_INDEX]]
    assert pad([]).input_ids.shape == (0, 1)
