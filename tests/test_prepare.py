"""`prepare`: from a composed config to sources, targets, tokenizer and a source episode sampler."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from metasparse.config import CONF_DIR
from metasparse.data.prepare import prepare
from metasparse.train.backbone_cache import backbone_key


def test_prepare_legal_run_keeps_legal_out_of_tokenizer_and_episodes(ud_dataset):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(
            compose(
                "meta_train",
                overrides=[
                    "+domain=legal",
                    "tokenizer.vocab_size=3000",
                    "tokenizer.sentences_per_language=100",
                ],
            )
        )
    bundle = prepare(cfg)
    assert len(bundle.targets) == 7 and {c.domain for c in bundle.targets} == {"legal"}
    assert "legal" not in {c.domain for c in bundle.sources}
    assert set(bundle.tasks) == {"upos", "deprel"}  # the backbone's heads; episodes use episodes.tasks
    sampler = bundle.sampler(bundle.sources, cfg.episodes, cfg.seed)
    assert "legal" not in {ep.cell.domain for ep in sampler.take(200)}
    assert bundle.tokenizer_path.exists()
    assert prepare(cfg).tokenizer_path == bundle.tokenizer_path  # second run: cache hit


def test_the_word_vocabulary_is_built_from_the_source_train_split_only(ud_dataset):
    """Legal (held out) word forms never seen in a source train sentence are unknown (row 0), so nothing of
    a target leaks into the lexical memory; ``tokenizer.word_min_count=0`` hashes every form as before."""
    from collections import Counter

    overrides = ["+domain=legal", "tokenizer.vocab_size=3000", "tokenizer.sentences_per_language=100"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("meta_train", overrides=overrides))
        hashed_cfg = OmegaConf.to_object(compose("meta_train", overrides=[*overrides, "tokenizer.word_min_count=0"]))
    bundle = prepare(cfg)
    words = bundle.dataset["words"]
    source_train = Counter(
        w.casefold() for c in bundle.sources for r in bundle.index.rows(c, "train") for w in words[r]
    )
    vocab = bundle.tokenizer.words
    kept = {w for w, n in source_train.items() if n >= cfg.tokenizer.word_min_count}
    assert vocab is not None and set(vocab.forms) == kept
    assert vocab.counts == tuple(source_train[w] for w in vocab.forms)  # what frequency-aware dropout reads
    target_only = {w for c in bundle.targets for r in bundle.index.rows(c, "train") for w in words[r]}
    target_only = [w for w in sorted(target_only) if w.casefold() not in source_train][:50]
    assert len(target_only) == 50 and all(bundle.tokenizer.word_bucket(w) == 0 for w in target_only)
    hashed_bundle = prepare(hashed_cfg)
    hashed = hashed_bundle.tokenizer
    assert hashed.words is None and all(hashed.word_bucket(w) > 0 for w in target_only)
    # the rows mean other words: another backbone (hashed forms key as before the vocabulary existed)
    assert backbone_key(cfg, bundle) != backbone_key(hashed_cfg, hashed_bundle)


def test_frequency_aware_word_dropout_is_keyed_and_needs_the_vocabulary(ud_dataset):
    """``pretrain.word_dropout_alpha`` changes training, so the backbone key (0 keeps older keys); with hashed
    forms (no counts) pretraining refuses it, naming the keys, before any step."""
    import pytest

    from metasparse.errors import ConfigValueError
    from metasparse.train.pretrain_step import unknown_probabilities

    overrides = ["+domain=legal", "tokenizer.vocab_size=3000", "tokenizer.sentences_per_language=100"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("meta_train", overrides=[*overrides, "pretrain.word_dropout_alpha=0"]))
        freq = OmegaConf.to_object(compose("meta_train", overrides=[*overrides, "pretrain.word_dropout_alpha=1"]))
        hashed = OmegaConf.to_object(
            compose("meta_train", overrides=[*overrides, "pretrain.word_dropout_alpha=1", "tokenizer.word_min_count=0"])
        )
    bundle = prepare(cfg)
    assert backbone_key(freq, bundle) != backbone_key(cfg, bundle)
    assert unknown_probabilities(cfg, bundle.tokenizer) is None
    probs = unknown_probabilities(freq, bundle.tokenizer)
    counts = bundle.tokenizer.words.counts
    assert probs[0] == 0 and probs[1:].tolist() == pytest.approx([1 / (1 + c) for c in counts])
    with pytest.raises(ConfigValueError, match=r"pretrain.word_dropout_alpha=1.0 needs the word vocabulary"):
        unknown_probabilities(hashed, prepare(hashed).tokenizer)


def test_the_tag_lexicon_counts_the_source_train_split_and_leaves_only_its_tokens_out(ud_dataset):
    """``model.tag_lexicon`` (on in ``model=small``) counts the source train sentences only (nothing of a
    held-out legal cell), keys the backbone, and a corpus leaves each token out of its own counts only on
    counted sentences."""
    import numpy as np

    from metasparse.model.corpus import EncodedCorpus

    overrides = ["+domain=legal", "tokenizer.vocab_size=3000", "tokenizer.sentences_per_language=100"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        plain = OmegaConf.to_object(compose("meta_train", overrides=[*overrides, "model.tag_lexicon=false"]))
        cfg = OmegaConf.to_object(compose("meta_train", overrides=overrides))  # model=small reads one by default
    bundle, plain_bundle = prepare(cfg), prepare(plain)
    lexicon = bundle.tokenizer.lexicon
    train = {r for c in bundle.sources for r in bundle.index.rows(c, "train")}
    assert plain_bundle.tokenizer.lexicon is None and lexicon is not None and lexicon.rows == train
    assert not {r for c in bundle.targets for r in bundle.index.rows(c, "train")} & lexicon.rows
    assert backbone_key(cfg, bundle) != backbone_key(plain, plain_bundle)
    cell = bundle.sources[0]
    rows = [*bundle.index.rows(cell, "train")[:20], *bundle.index.rows(cell, "test")[:20]]
    corpus = EncodedCorpus.build(bundle.dataset, rows, bundle.tokenizer, bundle.tasks, 1024)
    words = bundle.dataset.select(rows)["words"]
    plain_features = [lexicon.features(w, cell.lang) for w in words]
    left_out = [not np.array_equal(x.lexicon, f) for x, f in zip(corpus.items, plain_features, strict=True)]
    assert all(left_out[:20]) and not any(left_out[20:])


def test_the_exit_criterion_keys_a_backbone_only_where_exits_are_trained(ud_dataset):
    """``model.exit_criterion`` changes the weights only when the codebook holds exit patterns (training then
    runs them): without any, both criteria share the cached backbone (bench.exits reads either post hoc)."""
    overrides = ["+domain=legal", "tokenizer.vocab_size=3000", "tokenizer.sentences_per_language=100"]
    exits = "model.codebook=[{heads: 0.0, ffn: 0.0},{heads: 1.0, ffn: 1.0, exit: 0.1}]"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfgs = {
            (criterion, trained): OmegaConf.to_object(
                compose("pretrain", overrides=[*overrides, f"model.exit_criterion={criterion}", *([exits] * trained)])
            )
            for criterion in ("upos", "all")
            for trained in (False, True)
        }
    bundle = prepare(cfgs["upos", False])
    keys = {k: backbone_key(cfg, bundle) for k, cfg in cfgs.items()}
    assert keys["upos", False] == keys["all", False]
    assert len({keys["upos", False], keys["upos", True], keys["all", True]}) == 3


def test_lexicon_prefixes_widen_the_lexicon_and_key_the_backbone(ud_dataset):
    """``model.lexicon_prefixes`` adds prefix blocks to the lexicon (so to the backbone's inputs and key);
    without a lexicon it is not read and does not key the backbone; out of range it is refused by name."""
    overrides = ["+domain=legal", "tokenizer.vocab_size=3000", "tokenizer.sentences_per_language=100"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("pretrain", overrides=[*overrides, "model.lexicon_prefixes=0"]))
        wide = OmegaConf.to_object(compose("pretrain", overrides=[*overrides, "model.lexicon_prefixes=3"]))
        plain = [
            OmegaConf.to_object(compose("pretrain", overrides=[*overrides, "model.tag_lexicon=false", p]))
            for p in ("model.lexicon_prefixes=0", "model.lexicon_prefixes=3")
        ]
        with pytest.raises(Exception, match="model.lexicon_prefixes"):
            OmegaConf.to_object(compose("pretrain", overrides=[*overrides, "model.lexicon_prefixes=9"]))
    bundle, wide_bundle = prepare(cfg), prepare(wide)
    assert wide_bundle.tokenizer.lexicon.width == bundle.tokenizer.lexicon.width + 3 * bundle.tokenizer.lexicon.block
    assert backbone_key(cfg, bundle) != backbone_key(wide, wide_bundle)
    plain_bundle = prepare(plain[0])  # without a lexicon the prefixes change nothing: one backbone
    assert plain_bundle.tokenizer.lexicon is None
    assert backbone_key(plain[0], plain_bundle) == backbone_key(plain[1], plain_bundle)
    # model.lexicon_shape: one more block and its own key; without a lexicon not read either
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        shaped = OmegaConf.to_object(
            compose("pretrain", overrides=[*overrides, "model.lexicon_prefixes=0", "model.lexicon_shape=true"])
        )
        plain_shaped = OmegaConf.to_object(
            compose("pretrain", overrides=[*overrides, "model.tag_lexicon=false", "model.lexicon_shape=true"])
        )
    shaped_bundle = prepare(shaped)
    assert shaped_bundle.tokenizer.lexicon.width == bundle.tokenizer.lexicon.width + bundle.tokenizer.lexicon.block
    assert backbone_key(shaped, shaped_bundle) not in (backbone_key(cfg, bundle), backbone_key(wide, wide_bundle))
    assert backbone_key(plain_shaped, plain_bundle) == backbone_key(plain[0], plain_bundle)
