"""A sentencepiece subword tokenizer trained on the source cells, with word alignment.

Each word is encoded on its own, so every subword carries the index of its word and a model can pool
subwords back into words (mean-pooling a word's subwords beat first-subword labelling by about 10
UPOS points here). Each word also gets a row of a word-form table, a cheap lexical memory beside the
subwords: its id in the source train split's word vocabulary (0 when unknown), or a hashed bucket.
Trained models are cached by a hash of their training sentences and settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from metasparse.data.fetch import cache_dir
from metasparse.data.tag_lexicon import TagLexicon
from metasparse.data.word_vocabulary import WordVocabulary
from metasparse.errors import ConfigValueError, require
from metasparse.io import atomic_write

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


@dataclass  # not frozen: OmegaConf makes a frozen dataclass read-only, so no override could change it
class TokenizerConfig:
    """How the subword model is trained (``tokenizer:`` in the job configs).

    Attributes:
        vocab_size: number of subword pieces.
        model_type: ``unigram`` or ``bpe``.
        sentences_per_language: at most this many training sentences from each language, so no
            language drowns the rest.
        character_coverage: share of characters covered by pieces; the rest fall back to bytes.
        byte_fallback: encode uncovered characters as UTF-8 bytes instead of ``<unk>``.
        hash_buckets: size of the hashed word-form table (bucket 0 is padding), used when
            ``word_min_count`` is 0.
        word_min_count: word forms (case-folded) seen at least this often in the source train split get
            their own row of the word-form table and every other form the unknown row
            (:class:`metasparse.data.word_vocabulary.WordVocabulary`); 0 hashes every form into
            ``hash_buckets`` instead (the first backbones: an unseen form then reads some other word's row).
    """

    vocab_size: int = 8000
    model_type: str = "unigram"
    sentences_per_language: int = 1500
    character_coverage: float = 0.9995
    byte_fallback: bool = True
    hash_buckets: int = 65536
    word_min_count: int = 1

    def __post_init__(self) -> None:
        require(self.vocab_size >= 300, "tokenizer.vocab_size", ">= 300", self.vocab_size)
        require(self.model_type in ("unigram", "bpe"), "tokenizer.model_type", "unigram, bpe", self.model_type)
        require(
            self.sentences_per_language >= 1, "tokenizer.sentences_per_language", ">= 1", self.sentences_per_language
        )
        require(
            0.9 <= self.character_coverage <= 1.0, "tokenizer.character_coverage", "[0.9, 1.0]", self.character_coverage
        )
        require(self.hash_buckets >= 2, "tokenizer.hash_buckets", ">= 2", self.hash_buckets)
        require(self.word_min_count >= 0, "tokenizer.word_min_count", ">= 0 (0: hashed forms)", self.word_min_count)


@dataclass(frozen=True)
class Encoded:
    """One sentence as model inputs.

    Attributes:
        input_ids: subword ids, words concatenated in order.
        word_index: for each subword, the index of its word.
        word_hash: for each word, its row of the word-form table (0: unknown, with a vocabulary).
    """

    input_ids: list[int]
    word_index: list[int]
    word_hash: list[int]


_MEMO_WORDS = 1 << 20  # distinct word forms a tokenizer remembers (~100 MB at most) before it starts over


def word_bucket(word: str, buckets: int) -> int:
    """Stable (process-independent) hash bucket of a word form, case-folded, in ``[1, buckets)``."""
    return zlib.crc32(word.casefold().encode("utf-8")) % (buckets - 1) + 1


def align_pieces(pieces: Sequence[Sequence[int]], unk_id: int, word_hash: list[int]) -> Encoded:
    """Concatenate each word's piece ids, each piece tagged with its word; a word a tokenizer gave no
    piece gets ``unk_id``, so every word has at least one."""
    ids: list[int] = []
    index: list[int] = []
    for i, p in enumerate(pieces):
        p = list(p) or [unk_id]
        ids.extend(p)
        index.extend([i] * len(p))
    return Encoded(ids, index, word_hash)


class SubwordTokenizer:
    """A trained sentencepiece model plus the word-alignment and word-form logic.

    Args:
        model_proto: serialized sentencepiece model.
        hash_buckets: size of the hashed word-form table (without a word vocabulary).
    """

    def __init__(self, model_proto: bytes, hash_buckets: int = 65536) -> None:
        self.model_proto = model_proto
        self.hash_buckets = hash_buckets
        self.words: WordVocabulary | None = None
        self.lexicon: TagLexicon | None = None  # set by use_lexicon; read by features.encode_sentence
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        # word form -> (piece ids, hash bucket): word forms repeat (Zipf), and sentencepiece encodes each
        # word of a sentence on its own anyway, so a memo gives the same ids at a fraction of the cost
        self._memo: dict[str, tuple[list[int], int]] = {}

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def word_rows(self) -> int:
        """Rows of the word-form table the ids index: the vocabulary's size, else ``hash_buckets``."""
        return self.hash_buckets if self.words is None else self.words.size

    def use_words(self, words: WordVocabulary | None) -> SubwordTokenizer:
        """Give word forms their vocabulary ids (None: hashed buckets); returns self."""
        self.words = words
        self._memo.clear()  # the memo holds each form's id under the old scheme
        return self

    def use_lexicon(self, lexicon: TagLexicon | None) -> SubwordTokenizer:
        """Give each encoded word its tag-lexicon features (None: none); returns self."""
        self.lexicon = lexicon
        return self

    def word_bucket(self, word: str) -> int:
        """The form's row of the word-form table: its vocabulary id (0 when unknown), or without a
        vocabulary its stable (process-independent) hash bucket, case-folded, never 0."""
        if self.words is not None:
            return self.words.id(word)
        return word_bucket(word, self.hash_buckets)

    def encode_words(self, words: Sequence[str]) -> Encoded:
        """Encode one pre-tokenized sentence; every word gets at least one subword."""
        memo = self._memo
        new = [w for w in dict.fromkeys(words) if w not in memo]
        if new:
            if len(memo) + len(new) > _MEMO_WORDS:  # start over, then this sentence's words are all new
                memo.clear()
                new = list(dict.fromkeys(words))
            # a whitespace-only form encodes to no piece; align_pieces gives it the unknown id
            memo.update((w, (p, self.word_bucket(w))) for w, p in zip(new, self.sp.encode(new), strict=True))
        known = [memo[w] for w in words]
        return align_pieces([p for p, _ in known], UNK_ID, [h for _, h in known])

    def subwords(self, word: str) -> list[str]:
        """The pieces of one word, for inspection."""
        return self.sp.encode(word, out_type=str)

    def subwords_batch(self, words: Sequence[str]) -> list[list[str]]:
        """The pieces of each word, in one call (a cell's ~10^4 forms one by one spent seconds in Python)."""
        return self.sp.encode(list(words), out_type=str)

    def save(self, path: str | Path) -> None:
        """Write ``<path>`` (the .model) and ``<path>.json`` (settings) atomically."""
        path = Path(path)
        atomic_write(path, self.model_proto)
        atomic_write(Path(f"{path}.json"), json.dumps({"hash_buckets": self.hash_buckets}).encode())

    @classmethod
    def load(cls, path: str | Path) -> SubwordTokenizer:
        path = Path(path)
        meta = json.loads(Path(f"{path}.json").read_text())
        return cls(path.read_bytes(), hash_buckets=int(meta["hash_buckets"]))


def sample_training_sentences(
    sentences_by_lang: Mapping[str, Sequence[Sequence[str]]], per_language: int, seed: int
) -> list[str]:
    """Take at most ``per_language`` sentences from each language (seeded), joined by spaces."""
    out: list[str] = []
    for lang in sorted(sentences_by_lang):
        sents = sentences_by_lang[lang]
        rng = np.random.default_rng([seed, zlib.crc32(lang.encode())])
        pick = rng.permutation(len(sents))[:per_language]
        out.extend(" ".join(sents[i]) for i in sorted(pick))
    return out


def train_tokenizer(
    sentences_by_lang: Mapping[str, Sequence[Sequence[str]]],
    settings: TokenizerConfig | None = None,
    *,
    seed: int = 0,
    cache: Path | None = None,
) -> tuple[SubwordTokenizer, Path]:
    """Train (or load from cache) a subword model on an even per-language sample.

    Args:
        sentences_by_lang: pre-tokenized training sentences per language code.
        settings: training settings (default: :class:`TokenizerConfig`'s defaults).
        seed: seed of the per-language sentence sample (the job's seed).
        cache: folder of cached models; defaults to ``<cache_dir>/tokenizers``.

    Returns:
        The tokenizer and the path of its cached ``.model`` file.
    """
    settings = settings or TokenizerConfig()
    sample = sample_training_sentences(sentences_by_lang, settings.sentences_per_language, seed)
    # The key spells the seed beside the settings, as when it was one of their fields: cached models stay valid.
    key_fields = {**asdict(settings), "seed": seed}
    key_fields.pop("word_min_count")  # the word vocabulary is not part of the subword model
    key_src = json.dumps(key_fields, sort_keys=True).encode() + b"\0" + "\n".join(sample).encode()
    key = hashlib.sha256(key_src).hexdigest()[:16]
    path = (cache or cache_dir() / "tokenizers") / f"spm-{key}.model"
    if path.exists() and Path(f"{path}.json").exists():
        log.info("tokenizer cache hit: %s", path)
        return SubwordTokenizer.load(path), path
    log.info(
        "training a %d-piece %s tokenizer on %d sentences",
        settings.vocab_size,
        settings.model_type,
        len(sample),
    )
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sample),
            model_writer=buf,
            vocab_size=settings.vocab_size,
            model_type=settings.model_type,
            character_coverage=settings.character_coverage,
            byte_fallback=settings.byte_fallback,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as exc:  # sentencepiece's C++ message, e.g. a vocabulary smaller than the alphabet
        raise ConfigValueError(
            f"tokenizer training failed with tokenizer.vocab_size={settings.vocab_size}, "
            f"character_coverage={settings.character_coverage}: {exc}"
        ) from exc
    tok = SubwordTokenizer(buf.getvalue(), settings.hash_buckets)
    tok.save(path)
    return tok, path
