"""Deterministic train/dev/test assignment by a hash of the sentence id.

Most treebanks here lack their UD train file, so the original split cannot be used. A hash of
``(seed, treebank, sent_id)`` gives the same split on every run and machine, independent of file
order, and a sentence never changes split when other sentences are added.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "dev", "test")


def check_fractions(fractions: tuple[float, float, float]) -> None:
    """Raise if the split fractions are not three non-negative numbers summing to 1."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")


def assign_split(
    treebank: str, sent_id: str, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0
) -> str:
    """Return ``train``, ``dev`` or ``test`` for one sentence.

    Args:
        treebank: treebank name (sent_ids are unique only within a treebank).
        sent_id: the sentence id.
        fractions: train, dev and test shares.
        seed: changes the split as a whole; the same seed gives the same split everywhere.
    """
    digest = hashlib.sha256(f"{seed}\x1f{treebank}\x1f{sent_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "dev"
    return "test"
