"""The tag lexicon (``model.tag_lexicon``): counts, the suffix back-off, leaving a training token out of its
own counts, and how its features reach the encoder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from model_utils import random_batch, tiny_model

from metasparse.data.tag_lexicon import LEVELS, MAX_PREFIX, MAX_SUFFIX, RARE_FORM, TagLexicon, word_shape
from metasparse.model.encoder import GatedEncoder
from metasparse.model.features import pad

# Turkish-like toy data: "evler" (NOUN) and "geldiler" (VERB) once each; "ve" (CCONJ) three times.
WORDS = [["evler", "ve", "kediler"], ["geldiler", "ve", "gittiler"], ["ve", "evde"]]
TAGS = [["NOUN", "CCONJ", "NOUN"], ["VERB", "CCONJ", "VERB"], ["CCONJ", "NOUN"]]
LANGS = ["tr", "tr", "tr"]


def _lexicon() -> TagLexicon:
    return TagLexicon.build(WORDS, TAGS, LANGS, rows=[10, 11, 12], dataset="ud")


def _level(lex: TagLexicon, row: np.ndarray, level: int) -> dict[str, float]:
    """The tag distribution of one level (0: the form, n: the suffix of n characters), zeros left out."""
    at = level * lex.block
    return {t: float(v) for t, v in zip(lex.tags, row[at : at + len(lex.tags)], strict=True) if v > 0}


def _evidence(lex: TagLexicon, row: np.ndarray, level: int) -> float:
    return float(row[level * lex.block + len(lex.tags)])


def test_a_seen_form_reads_its_own_tag_distribution_case_folded():
    lex = _lexicon()
    assert lex.tags == ("CCONJ", "NOUN", "VERB") and lex.block == 4 and lex.width == 4 * LEVELS
    f = lex.features(["VE", "Evler"], "tr")
    assert _level(lex, f[0], 0) == {"CCONJ": 1.0} and _evidence(lex, f[0], 0) == pytest.approx(np.log1p(3) / 10)
    assert _level(lex, f[1], 0) == {"NOUN": 1.0}
    # "ve", seen 3 times, is a rare form: its one suffix shorter than itself, "-e", counts it with evde
    assert _level(lex, f[0], 1) == pytest.approx({"CCONJ": 3 / 4, "NOUN": 1 / 4})


def test_every_suffix_level_of_rare_forms_is_a_block_of_its_own():
    lex = _lexicon()
    f = lex.features(["yediler"], "tr")[0]  # unseen: no form block
    assert _level(lex, f, 0) == {} and _evidence(lex, f, 0) == 0
    # "-r", "-er", "-ler": evler, kediler (NOUN), geldiler, gittiler (VERB); "-iler": not evler; "-diler":
    # kediler, geldiler; "-ediler": kediler alone; no level 7: a suffix is shorter than the word
    for n in (1, 2, 3):
        assert _level(lex, f, n) == pytest.approx({"NOUN": 0.5, "VERB": 0.5})
    assert _level(lex, f, 4) == pytest.approx({"NOUN": 1 / 3, "VERB": 2 / 3})
    assert _level(lex, f, 5) == pytest.approx({"NOUN": 0.5, "VERB": 0.5})
    assert _level(lex, f, 6) == {"NOUN": 1.0} and _evidence(lex, f, 6) == pytest.approx(np.log1p(1) / 10)
    assert MAX_SUFFIX == 7 and _level(lex, f, 7) == {} and _evidence(lex, f, 7) == 0
    assert not lex.features(["xyz"], "tr").any()  # nothing known about it: all zeros


def test_a_counted_token_is_left_out_of_its_own_counts():
    """On a training sentence a form seen once looks like an unseen form (no form block, its suffixes
    without its own tag); a frequent form keeps its other occurrences."""
    lex = _lexicon()
    f = lex.features(["evler", "ve", "kediler"], "tr", gold=["NOUN", "CCONJ", "NOUN"])
    assert _level(lex, f[0], 0) == {} and _evidence(lex, f[0], 0) == 0  # the only "evler" is this token
    assert _level(lex, f[0], 3) == pytest.approx({"NOUN": 1 / 3, "VERB": 2 / 3})  # "-ler" without it
    assert _level(lex, f[0], 4) == {}  # "-vler": only evler itself
    assert _level(lex, f[1], 0) == {"CCONJ": 1.0} and _evidence(lex, f[1], 0) == pytest.approx(np.log1p(2) / 10)
    plain = lex.features(["evler"], "tr")[0]
    assert _level(lex, plain, 0) == {"NOUN": 1.0}  # a sentence the lexicon did not count reads every count
    # only the counted dataset's rows are counted sentences: row 10 of a target file is another sentence
    assert lex.counted("ud", 10) and not lex.counted("ud", 13) and not lex.counted("target-file", 10)


def test_an_unknown_language_reads_the_pooled_tables_and_the_fingerprint_follows_the_counts():
    lex = _lexicon()
    np.testing.assert_array_equal(lex.features(["ve", "yediler"], "xx"), lex.features(["ve", "yediler"], None))
    assert _level(lex, lex.features(["ve"], "xx")[0], 0) == {"CCONJ": 1.0}
    other = TagLexicon.build(WORDS, [["NOUN"] * len(t) for t in TAGS], LANGS, rows=[10, 11, 12])
    assert lex.fingerprint() == _lexicon().fingerprint() != other.fingerprint()


def test_prefix_levels_follow_the_suffix_levels_and_leave_a_counted_token_out():
    """``model.lexicon_prefixes``: prefixes of 1..n characters of rare forms, a block each after the suffix
    blocks; without them the layout and fingerprint are the earlier ones (cached backbones keep their keys)."""
    lex = TagLexicon.build(WORDS, TAGS, LANGS, rows=[10, 11, 12], dataset="ud", prefixes=2)
    assert lex.width == (LEVELS + 2) * lex.block and MAX_PREFIX == MAX_SUFFIX
    f = lex.features(["gelir"], "tr")[0]  # unseen; "g-": geldiler, gittiler; "ge-": geldiler
    assert _level(lex, f, MAX_SUFFIX + 1) == {"VERB": 1.0} and _evidence(lex, f, MAX_SUFFIX + 1) == pytest.approx(
        np.log1p(2) / 10
    )
    assert _level(lex, f, MAX_SUFFIX + 2) == {"VERB": 1.0} and _evidence(lex, f, MAX_SUFFIX + 2) == pytest.approx(
        np.log1p(1) / 10
    )
    # the same suffix blocks as without prefixes
    np.testing.assert_array_equal(f[: LEVELS * lex.block], _lexicon().features(["gelir"], "tr")[0])
    counted = lex.features(["geldiler"], "tr", gold=["VERB"])[0]  # its own token leaves "ge-" empty
    assert _level(lex, counted, MAX_SUFFIX + 1) == {"VERB": 1.0} and _level(lex, counted, MAX_SUFFIX + 2) == {}
    e = lex.features(["evde"], "tr")[0]  # "e-": evler, evde (NOUN, rare); "ve" is shorter than 2 + 1
    assert _level(lex, e, MAX_SUFFIX + 1) == {"NOUN": 1.0}
    plain = TagLexicon.build(WORDS, TAGS, LANGS, rows=[10, 11, 12], dataset="ud", prefixes=0)
    assert plain.fingerprint() == _lexicon().fingerprint() != lex.fingerprint()
    with pytest.raises(ValueError, match="lexicon_prefixes"):
        TagLexicon.build(WORDS, TAGS, LANGS, rows=[10, 11, 12], prefixes=MAX_PREFIX + 1)


def test_word_shapes_split_case_digits_and_the_sentence_start():
    shapes = [
        word_shape(w, i == 0) for i, w in enumerate(["The", "NASA", "miso", "Paris", "2021", "के", "x1", ".", "'Bob"])
    ]
    assert shapes == ["^T", "-U", "-l", "-T", "-d", "-n", "-d", "-n", "-T"]
    assert word_shape("A", False) == "-T"  # one capital is not "all capitals"


def test_the_shape_level_counts_rare_tokens_by_case_and_leaves_a_counted_token_out():
    """``model.lexicon_shape``: after the affix levels, the tags of the language's rare-form tokens of the
    token's shape (case-folding hides the case the forms' keys lose); without it the earlier layout."""
    words = [["The", "cat", "Bob", "runs"], ["Bob", "sat", "."], ["A", "dog", "ran"]]
    tags = [["DET", "NOUN", "PROPN", "VERB"], ["PROPN", "VERB", "PUNCT"], ["DET", "NOUN", "VERB"]]
    lex = TagLexicon.build(words, tags, ["en"] * 3, rows=[0, 1, 2], dataset="ud", shape=True, prefixes=1)
    plain = TagLexicon.build(words, tags, ["en"] * 3, rows=[0, 1, 2], dataset="ud", prefixes=1)
    assert lex.width == plain.width + lex.block and lex.fingerprint() != plain.fingerprint()
    at = LEVELS + 1  # after the suffix and the one prefix level
    f = lex.features(["A", "Zed", "zed"], "en")
    assert _level(lex, f[1], at) == {"PROPN": 1.0}  # capitalised inside a sentence: Bob (once)
    assert _evidence(lex, f[1], at) == pytest.approx(np.log1p(1) / 10)
    assert _level(lex, f[2], at) == pytest.approx({"NOUN": 0.4, "VERB": 0.6})  # cat dog runs sat ran
    np.testing.assert_array_equal(f[:, : plain.width], plain.features(["A", "Zed", "zed"], "en"))
    # a counted sentence: "Bob" leaves its own token out of "-T" (two Bobs, one inside a sentence)
    counted = lex.features(["The", "cat", "Bob", "runs"], "en", gold=tags[0])
    assert _level(lex, counted[2], at) == {}
    frequent = TagLexicon.build([["Bob"] * (RARE_FORM + 1)], [["PROPN"] * (RARE_FORM + 1)], ["en"], [0], shape=True)
    assert _level(frequent, frequent.features(["Zed", "Zed"], "en")[1], LEVELS) == {}  # frequent forms: not counted


class _Tokenizer:
    """The two things encode_sentence asks of a tokenizer."""

    def __init__(self, lexicon):
        self.lexicon = lexicon

    def encode_words(self, words):
        from metasparse.data.tokenizer import align_pieces

        return align_pieces([[5 + i] for i in range(len(words))], 1, [1] * len(words))


def test_features_reach_the_batch_padded_with_zeros_and_follow_select():
    from metasparse.model.features import encode_sentence

    lex = _lexicon()
    tok = _Tokenizer(lex)
    items = [encode_sentence(w, tok, 64, lang="tr") for w in (["evler", "ve", "yediler"], ["ve"])]
    batch = pad(items)
    assert batch.lexicon is not None and batch.lexicon.shape == (2, 3, lex.width)
    torch.testing.assert_close(batch.lexicon[0], torch.from_numpy(lex.features(["evler", "ve", "yediler"], "tr")))
    assert batch.lexicon[1, 1:].abs().sum() == 0  # padding words
    torch.testing.assert_close(batch.select([1]).lexicon, batch.lexicon[1:])
    counted = encode_sentence(["evler", "ve"], tok, 64, lang="tr", gold_upos=["NOUN", "CCONJ"])
    assert _level(lex, counted.lexicon[0], 0) == {}  # left out of its own counts
    assert pad([encode_sentence(["ve"], _Tokenizer(None), 64)]).lexicon is None  # no lexicon, no features


def test_the_encoder_adds_the_projected_features_and_refuses_a_batch_without_them():
    base = tiny_model()
    model = GatedEncoder(dataclasses.replace(base.spec, tag_lexicon=4)).eval()
    batch = random_batch([3, 2])
    with pytest.raises(ValueError, match="tag lexicon"):
        model.embed(batch)
    batch.lexicon = torch.zeros(2, 3, 4)
    with torch.no_grad():
        model.lexicon_proj.weight.normal_()
        zero = model.embed(batch)
        batch.lexicon = torch.rand(2, 3, 4)
        assert not torch.allclose(model.embed(batch), zero)


def test_tag_lexicon_is_refused_for_a_pretrained_encoder_and_needs_the_lexicon_width():
    from metasparse.model.spec import ModelConfig

    with pytest.raises(ValueError, match="model.tag_lexicon"):
        ModelConfig(tag_lexicon=True, name_or_path="some/checkpoint")
    with pytest.raises(ValueError, match="needs a tokenizer with a tag lexicon"):
        ModelConfig(tag_lexicon=True).spec(100, {"upos": 17}, 10)
    assert ModelConfig(tag_lexicon=True).spec(100, {"upos": 17}, 10, lexicon_width=25).tag_lexicon == 25
    assert ModelConfig().spec(100, {"upos": 17}, 10, lexicon_width=25).tag_lexicon == 0


@pytest.mark.parametrize("n", [1, 6])
def test_the_projection_flops_are_counted_as_they_run(n):
    from torch.utils.flop_counter import FlopCounterMode

    from metasparse.model.flops import dense_flops, fixed_flops, gated_flops, lexicon_flops

    model = GatedEncoder(dataclasses.replace(tiny_model().spec, tag_lexicon=12)).eval()
    batch = random_batch([n])
    batch.lexicon = torch.rand(1, n, 12)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(batch)
    assert fc.get_total_flops() == dense_flops(model.spec, n) and lexicon_flops(model.spec, n) > 0
    skip = [model.codebook[0]] * len(model.blocks)  # every layer skipped: the projection and heads still run
    assert gated_flops(model.spec, skip, n) == fixed_flops(model.spec, n)
