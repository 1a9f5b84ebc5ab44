"""Synthetic batches of each (batch, length) bucket: what a cost table's cells are timed on."""

from __future__ import annotations

import torch

from metasparse.model.encoder import GatedEncoder
from metasparse.model.features import MAX_CHARS, Batch


def synthetic_batch(model: GatedEncoder, batch: int, length: int, seed: int = 0) -> Batch:
    """A batch of ``batch`` sentences of ``length`` words with realistic input shapes (about 1.5
    subwords and 8 characters a word); values are random, which is all a latency depends on."""
    g = torch.Generator().manual_seed(seed)
    s = model.spec
    S = max(1, (3 * length) // 2)
    word_index = (torch.arange(S) * length // S).expand(batch, S).clone()
    ids = torch.randint(4, s.vocab_size, (batch, S), generator=g)
    mask = torch.ones(batch, length, dtype=torch.bool)
    word_hash = torch.randint(1, s.word_buckets, (batch, length), generator=g)
    suffix = torch.randint(1, s.suffix_buckets, (batch, length, 3), generator=g)
    chars = torch.zeros(batch, length, MAX_CHARS, dtype=torch.long)
    chars[..., :8] = torch.randint(3, 1000, (batch, length, 8), generator=g)
    lexicon = torch.rand(batch, length, s.tag_lexicon, generator=g) if s.tag_lexicon else None
    return Batch(ids, word_index, word_hash, suffix, mask, {}, chars, unpadded=True, lexicon=lexicon)


def bucket_grid(model: GatedEncoder, batches, lengths) -> list[list[Batch]]:
    """The synthetic batch of each (batch, length) bucket, the same ones the layer cells are timed on."""
    return [
        [synthetic_batch(model, b, t, seed=bi * 100 + ti) for ti, t in enumerate(lengths)]
        for bi, b in enumerate(batches)
    ]
