"""Tokenizer: even per-language sampling, caching by inputs, and word alignment on real sentences."""

from __future__ import annotations

import unicodedata

import pytest
import sentencepiece as spm

from metasparse.data.tokenizer import (
    SubwordTokenizer,
    TokenizerConfig,
    sample_training_sentences,
    train_tokenizer,
)

SMALL = TokenizerConfig(vocab_size=1500, sentences_per_language=60)


@pytest.fixture(scope="module")
def corpus(ud_dataset, cell_index):
    words = ud_dataset["words"]
    by_lang: dict[str, list[list[str]]] = {}
    for cell in cell_index.cells:
        if cell.lang in {"fi", "en", "zh", "ru", "hy"}:
            by_lang.setdefault(cell.lang, []).extend(words[i] for i in cell_index.rows(cell, "train"))
    return by_lang


def test_even_sampling_caps_every_language(corpus):
    sample = sample_training_sentences(corpus, per_language=60, seed=0)
    assert len(sample) == 60 * len(corpus)
    assert sample == sample_training_sentences(corpus, per_language=60, seed=0)
    assert sample != sample_training_sentences(corpus, per_language=60, seed=1)
    tiny = {"a": [["x"]] * 3, "b": [["y"]] * 100}
    assert len(sample_training_sentences(tiny, per_language=10, seed=0)) == 13  # small languages give all


def test_cached_by_inputs(corpus, tmp_path, monkeypatch):
    tok, path = train_tokenizer(corpus, SMALL, cache=tmp_path)
    assert path.exists() and path.parent == tmp_path

    def no_training(*args, **kwargs):
        raise AssertionError("a cache hit must not train again")

    monkeypatch.setattr(spm.SentencePieceTrainer, "train", no_training)
    tok2, path2 = train_tokenizer(corpus, SMALL, cache=tmp_path)
    assert path2 == path and tok2.model_proto == tok.model_proto
    with pytest.raises(AssertionError, match="must not train"):  # other inputs: a new key, so it trains
        train_tokenizer(corpus, TokenizerConfig(vocab_size=1501, sentences_per_language=60), cache=tmp_path)


def test_alignment_on_real_sentences(corpus, tmp_path):
    tok, path = train_tokenizer(corpus, SMALL, cache=tmp_path)
    tok = SubwordTokenizer.load(path)
    for lang, sents in corpus.items():
        for words in sents[:50]:
            enc = tok.encode_words(words)
            assert len(enc.input_ids) == len(enc.word_index) >= len(words)
            assert enc.word_index == sorted(enc.word_index)  # words stay in order
            assert set(enc.word_index) == set(range(len(words)))  # every word has a subword
            for w, word in enumerate(words):  # a word's own pieces decode back to it (byte fallback: no unk)
                ids = [i for i, j in zip(enc.input_ids, enc.word_index, strict=True) if j == w]
                expected = unicodedata.normalize("NFKC", word).strip()  # sentencepiece normalizes with NFKC
                assert tok.sp.decode(ids) == expected, (lang, word)
            assert len(enc.word_hash) == len(words) and all(0 < h < tok.hash_buckets for h in enc.word_hash)


def test_word_hash_is_process_independent(corpus, tmp_path):
    tok, _ = train_tokenizer(corpus, SMALL, cache=tmp_path)
    # Written down once (CRC-32 of b"court" is 0x63AE193F): unlike Python's salted hash() it is the same in
    # every process, and casefolding merges case variants. A different bucket would orphan cached models.
    assert tok.word_bucket("Court") == tok.word_bucket("court") == 31982
    assert tok.word_bucket("cour") != tok.word_bucket("court")


def test_the_word_memo_gives_what_sentencepiece_gives(corpus, tmp_path, monkeypatch):
    """Encoding remembers each word form's pieces; every sentence, encoded first or again, and after the
    memo starts over, gets exactly the pieces sentencepiece gives its words one by one."""
    import metasparse.data.tokenizer as tokenizer_module

    tok, _ = train_tokenizer(corpus, SMALL, cache=tmp_path)
    monkeypatch.setattr(tokenizer_module, "_MEMO_WORDS", 300)  # small: the memo starts over several times
    sents = [s for sents in corpus.values() for s in sents[:40]] + [["  ", "court", "court"]]
    for _ in range(2):
        for words in sents:
            enc = tok.encode_words(words)
            want = [p or [tokenizer_module.UNK_ID] for p in (tok.sp.encode(w) for w in words)]
            assert enc.input_ids == [i for p in want for i in p]
            assert enc.word_index == [w for w, p in enumerate(want) for _ in p]
            assert enc.word_hash == [tok.word_bucket(w) for w in words]
            assert len(tok._memo) <= 300
    words = [w for s in sents for w in s]
    assert tok.subwords_batch(words) == [tok.subwords(w) for w in words]  # one call, the same pieces


def test_word_vocabulary_keeps_frequent_forms_and_leaves_the_rest_unknown(corpus, tmp_path):
    """Forms seen at least ``min_count`` times (case-folded) get ids 1..N, most frequent first; every other
    form, seen once or never, reads row 0, the row word dropout trains; the tokenizer hands those ids out."""
    from collections import Counter

    from metasparse.data.word_vocabulary import WordVocabulary

    sents = corpus["fi"]
    vocab = WordVocabulary.build(sents, min_count=2)
    counts = Counter(w.casefold() for s in sents for w in s)
    assert set(vocab.forms) == {w for w, c in counts.items() if c >= 2}
    assert (
        vocab.size == len(vocab) + 1
        and [counts[w] for w in vocab.forms] == sorted(counts[w] for w in vocab.forms)[::-1]
    )
    once = next(w for s in sents for w in s if counts[w.casefold()] == 1)
    common = vocab.forms[0]
    assert vocab.id(once) == 0 and vocab.id("qqqxq-never-seen") == 0
    assert vocab.id(common) == vocab.id(common.upper()) == 1
    assert (
        WordVocabulary.build(sents, 2) == vocab and vocab.fingerprint() == WordVocabulary.build(sents, 2).fingerprint()
    )
    assert WordVocabulary.build(sents, 3).fingerprint() != vocab.fingerprint()

    tok, _ = train_tokenizer(corpus, SMALL, cache=tmp_path)
    hashed = tok.encode_words([once, common]).word_hash  # memo filled under hashing first
    assert hashed[0] != 0 and tok.word_rows == tok.hash_buckets
    tok.use_words(vocab)
    assert tok.encode_words([once, common]).word_hash == [0, 1] and tok.word_rows == vocab.size
    ids = [h for s in sents[:200] for h in tok.encode_words(s).word_hash]
    assert 0 in ids and min(ids) >= 0 and max(ids) < tok.word_rows  # unknown forms, and no id past the table


def test_word_min_count_is_checked():
    with pytest.raises(ValueError, match="tokenizer.word_min_count"):
        TokenizerConfig(word_min_count=-1)
