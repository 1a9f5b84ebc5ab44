"""Gated encoder, execution patterns, input features and FLOPs accounting."""

from metasparse.model.encoder import Decision, EncoderOutput, EncoderSpec, GatedEncoder
from metasparse.model.features import Batch, collate
from metasparse.model.patterns import DEFAULT_CODEBOOK, Pattern, PatternSpec

__all__ = [
    "DEFAULT_CODEBOOK",
    "Batch",
    "Decision",
    "EncoderOutput",
    "EncoderSpec",
    "GatedEncoder",
    "Pattern",
    "PatternSpec",
    "collate",
]
