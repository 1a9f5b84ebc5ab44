"""What a gated encoder is: its resolved architecture (:class:`EncoderSpec`) and the configured one
(:class:`ModelConfig`, ``conf/model/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from metasparse.data.tag_lexicon import MAX_PREFIX
from metasparse.errors import require
from metasparse.model.adapters import AdapterConfig
from metasparse.model.features import AFFIXES
from metasparse.model.patterns import DEFAULT_CODEBOOK, PatternSpec

# What decides a per-token early exit (a codebook entry's ``exit``): ``upos`` the UPOS head's normalised
# entropy (the first backbones' criterion), ``all`` the largest over every task head's, so a token stops
# only once every task is sure of it (README, "Per-token early exit": DEPREL held where UPOS alone lost it).
EXIT_CRITERIA = ("upos", "all")


def check_exit_criterion(value: str) -> None:
    """Refuse an exit criterion outside :data:`EXIT_CRITERIA`, naming ``model.exit_criterion``."""
    require(value in EXIT_CRITERIA, "model.exit_criterion", ", ".join(EXIT_CRITERIA), value)


@dataclass
class EncoderSpec:
    """Architecture of the gated encoder.

    Attributes:
        vocab_size: subword vocabulary size.
        word_buckets: hashed word-form buckets.
        suffix_buckets: hashed affix buckets.
        affixes: how many of the word's affixes (:data:`metasparse.model.features.AFFIXES`, in order:
            suffixes of 1-4 characters, prefixes of 2 and 3) the lexical memory reads; 3 (suffixes of 1-3)
            in the first backbones.
        tasks: task name -> number of labels.
        layers, d_model, heads, d_ffn, ffn_groups: transformer size.
        dropout: dropout on embeddings and residual branches.
        max_positions: learned word positions; a longer sentence wraps around (word ``t`` takes position
            ``t mod max_positions``), so any length runs and neighbours keep their relative order.
        codebook: the execution patterns a layer can run.
        adapter: the pathway adapters attached after pretraining (None: none; set by
            :func:`metasparse.model.adapters.attach_adapters`, never part of a backbone's cache key).
        char_dim, char_channels: the character encoder (0: none): each word's characters embedded in
            ``char_dim``, one width-3 convolution to ``char_channels``, max-pooled over the word and
            projected to ``d_model``.
        piece_ends: add an embedding of each word's first and of its last subword (own tables) to the
            mean of its subwords, which is blind to their order: in agglutinative words the last piece
            holds the case or tense ending, the first the stem.
        tag_lexicon: width of each word's tag-lexicon features (0: none;
            :class:`metasparse.data.tag_lexicon.TagLexicon`), projected to ``d_model`` and added to its input.
        norm: ``pre`` (the package's backbones) or ``post`` (BERT-family checkpoints).
        lexical: hashed word-form and suffix embeddings beside the subwords (off for a pretrained
            encoder, whose layers were trained on its subword embeddings alone).
        layer_norm_eps: the layer norms' epsilon.
        pretrained: the checkpoint the weights were converted from (None: trained from scratch); a
            record, not a dependency: a converted backbone loads without ``transformers``.
        exit_criterion: what decides a per-token early exit (:data:`EXIT_CRITERIA`).
    """

    vocab_size: int
    tasks: dict[str, int]
    word_buckets: int = 65536
    suffix_buckets: int = 32768
    affixes: int = 3
    layers: int = 4
    d_model: int = 256
    heads: int = 8
    d_ffn: int = 1024
    ffn_groups: int = 8
    dropout: float = 0.1
    max_positions: int = 256
    codebook: list[PatternSpec] = field(default_factory=lambda: list(DEFAULT_CODEBOOK))
    adapter: AdapterConfig | None = None
    char_dim: int = 0
    char_channels: int = 0
    piece_ends: bool = False
    tag_lexicon: int = 0
    norm: str = "pre"
    lexical: bool = True
    layer_norm_eps: float = 1e-5
    pretrained: str | None = None
    exit_criterion: str = "upos"

    def __post_init__(self) -> None:
        check_exit_criterion(self.exit_criterion)

    @property
    def primary_task(self) -> str:
        """UPOS, else the first task: the task whose head gives training-free uncertainties (token scores,
        the ``upos`` exit criterion, diagnostics)."""
        return "upos" if "upos" in self.tasks else next(iter(self.tasks))

    def exit_tasks(self) -> list[str]:
        """The tasks whose heads an early-exit check reads: every task, or :attr:`primary_task`."""
        return list(self.tasks) if self.exit_criterion == "all" else [self.primary_task]


@dataclass
class ModelConfig:
    """Encoder architecture as configured (``conf/model/*.yaml``); :meth:`spec` resolves it for a tokenizer
    and a task set.

    With ``name_or_path`` set (``model=hf``), the architecture comes from that pretrained checkpoint
    (:func:`metasparse.model.pretrained.pretrained_spec`) and ``layers`` .. ``d_ffn`` are not read;
    ``ffn_groups``, ``codebook``, ``dropout`` still are. ``finetune_lr`` is the pretrained weights'
    learning rate during pretraining (the new task heads keep ``pretrain.lr``).
    """

    name: str = "small"
    layers: int = 4
    d_model: int = 256
    heads: int = 8
    d_ffn: int = 1024
    ffn_groups: int = 8
    dropout: float = 0.1
    max_positions: int = 256
    suffix_buckets: int = 32768
    affixes: int = 3
    char_dim: int = 0
    char_channels: int = 0
    piece_ends: bool = False
    tag_lexicon: bool = False
    lexicon_prefixes: int = 0
    lexicon_shape: bool = False
    codebook: list[PatternSpec] = field(default_factory=lambda: list(DEFAULT_CODEBOOK))
    name_or_path: str | None = None
    finetune_lr: float = 3e-4
    exit_criterion: str = "upos"

    def __post_init__(self) -> None:
        check_exit_criterion(self.exit_criterion)
        for key in ("layers", "d_model", "heads", "d_ffn", "ffn_groups", "max_positions", "suffix_buckets"):
            require(getattr(self, key) >= 1, f"model.{key}", ">= 1", getattr(self, key))
        require(1 <= self.affixes <= len(AFFIXES), "model.affixes", f"1..{len(AFFIXES)}", self.affixes)
        for key in ("char_dim", "char_channels"):
            require(getattr(self, key) >= 0, f"model.{key}", ">= 0 (0: no character encoder)", getattr(self, key))
        require(
            (self.char_dim == 0) == (self.char_channels == 0),
            "model.char_channels",
            f"0 together with char_dim=0, > 0 together with char_dim > 0 (char_dim={self.char_dim})",
            self.char_channels,
        )
        if not self.name_or_path:  # a checkpoint's own sizes are checked when it is read (pretrained_spec)
            require(self.d_model % self.heads == 0, "model.heads", f"a divisor of d_model={self.d_model}", self.heads)
            require(
                self.d_ffn % self.ffn_groups == 0,
                "model.ffn_groups",
                f"a divisor of d_ffn={self.d_ffn}",
                self.ffn_groups,
            )
        require(0.0 <= self.dropout < 1.0, "model.dropout", "[0, 1)", self.dropout)
        require(self.finetune_lr > 0, "model.finetune_lr", "> 0", self.finetune_lr)
        require(
            0 <= self.lexicon_prefixes <= MAX_PREFIX,
            "model.lexicon_prefixes",
            f"0..{MAX_PREFIX} (read only with model.tag_lexicon)",
            self.lexicon_prefixes,
        )
        require(
            not (self.tag_lexicon and self.name_or_path),
            "model.tag_lexicon",
            "false with model.name_or_path (a pretrained encoder reads its own subwords only)",
            self.tag_lexicon,
        )

    def spec(self, vocab_size: int, tasks: dict[str, int], word_buckets: int, lexicon_width: int = 0) -> EncoderSpec:
        """The architecture for a tokenizer (``vocab_size``, ``word_buckets``, its tag lexicon's
        ``lexicon_width``) and task set (name -> labels)."""
        if self.tag_lexicon and lexicon_width <= 0:
            raise ValueError("model.tag_lexicon=true needs a tokenizer with a tag lexicon (data.prepare builds it)")
        return EncoderSpec(
            vocab_size=vocab_size,
            tasks=dict(tasks),
            word_buckets=word_buckets,
            suffix_buckets=self.suffix_buckets,
            affixes=self.affixes,
            layers=self.layers,
            d_model=self.d_model,
            heads=self.heads,
            d_ffn=self.d_ffn,
            ffn_groups=self.ffn_groups,
            dropout=self.dropout,
            max_positions=self.max_positions,
            codebook=[PatternSpec(c.heads, c.ffn, c.tokens, c.topk, c.exit) for c in self.codebook],
            char_dim=self.char_dim,
            char_channels=self.char_channels,
            piece_ends=self.piece_ends,
            tag_lexicon=lexicon_width if self.tag_lexicon else 0,
            exit_criterion=self.exit_criterion,
        )
