"""Hydra composition: `+domain=legal` appends, typos and bad values fail at start, tasks load from files."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from metasparse.config import CONF_DIR, MetaTrainConfig
from metasparse.data.labels import DEPREL_BASES, UPOS_TAGS
from metasparse.data.registry import load_registry
from metasparse.errors import ConfigValueError
from metasparse.tasks import available_tasks, load_task


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("meta_train", overrides=list(overrides))


def test_plus_domain_and_language_append_typed_configs():
    cfg = OmegaConf.to_object(_compose("+domain=legal", "+language=fi"))
    assert isinstance(cfg, MetaTrainConfig)
    assert cfg.domain.name == "legal" and cfg.language.code == "fi"
    plain = OmegaConf.to_object(_compose())
    assert plain.domain is None and plain.language is None


def test_domain_without_plus_is_refused_with_hydras_hint():
    with pytest.raises(ConfigCompositionException, match=r"To append to your default list use \+domain=legal"):
        _compose("domain=legal")


def test_unknown_domain_lists_the_available_ones():
    with pytest.raises(MissingConfigException, match="(?s)Could not find 'domain/religious'.*legal.*wiki"):
        _compose("+domain=religious")


def test_one_config_file_per_domain_and_language():
    reg = load_registry()
    assert sorted(p.stem for p in (CONF_DIR / "domain").glob("*.yaml")) == reg.domains
    groups = {"heldout3"}  # named multi-language hold-outs, on top of one file per language
    assert sorted(p.stem for p in (CONF_DIR / "language").glob("*.yaml") if p.stem not in groups) == reg.languages
    for lang in reg.languages:
        assert OmegaConf.to_object(_compose(f"+language={lang}")).language.code == lang
    three = OmegaConf.to_object(_compose("+language=heldout3")).language
    assert [three.code, *three.also] == ["fi", "el", "hr"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("episodes.shots=0", "episodes.shots=0 is out of range; allowed: >= 1"),
        ("episodes.on_small=drop", "episodes.on_small='drop' is out of range; allowed: skip, error"),
        ("data.split_fractions=[0.5,0.5,0.5]", "data.split_fractions"),
        ("tokenizer.model_type=wordpiece", "allowed: unigram, bpe"),
    ],
)
def test_out_of_range_values_are_refused_with_the_allowed_range(override, message):
    with pytest.raises(ConfigValueError, match=message.replace("[", r"\[")):
        OmegaConf.to_object(_compose(override))


def test_typos_and_wrong_types_fail_at_composition():
    with pytest.raises(ConfigCompositionException, match="Could not override 'data.datset'"):
        _compose("data.datset=x")
    with pytest.raises(ConfigCompositionException, match="episodes.shots=abc"):
        _compose("episodes.shots=abc")


def test_domain_file_with_a_typo_key_fails(tmp_path):
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "domain" / "typo.yaml").write_text("defaults:\n  - schema\n  - _self_\nnmae: legal\n")
    with (
        initialize_config_dir(config_dir=str(conf), version_base="1.3"),
        pytest.raises((ConfigCompositionException, ConfigKeyError), match="nmae"),
    ):
        compose("meta_train", overrides=["+domain=typo"])


def test_task_files_declare_the_ud_inventories():
    assert available_tasks() == ["deprel", "upos"]
    upos, deprel = load_task("upos"), load_task("deprel")
    assert upos.labels == UPOS_TAGS and upos.num_labels == 17 and upos.column == "upos"
    assert deprel.labels == DEPREL_BASES and deprel.num_labels == 37
    assert upos.encode(["NOUN", "ADJ"]) == [7, 0]
    with pytest.raises(ConfigValueError, match="'FOO' is not in task 'upos'"):
        upos.encode(["FOO"])


def test_unknown_or_malformed_task(tmp_path):
    with pytest.raises(ConfigValueError, match="unknown task 'ner'; available .*: deprel, upos"):
        load_task("ner")
    (tmp_path / "bad.yaml").write_text("name: bad\ncolumn: upos\nmetric: accuracy\nlabels: [A]\ncolour: red\n")
    with pytest.raises(ConfigValueError, match=r"bad.yaml: unknown key\(s\) \['colour'\]"):
        load_task("bad", tmp_path)


def _compose_job(job: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose(job, overrides=list(overrides)))


def test_experiment_quick_sets_each_measuring_jobs_own_sizes():
    """One name, ``experiment=quick``, reduces every measuring job through its own conf/scale/<job>/quick.yaml;
    ``experiment=full`` (the default) leaves the job's own values."""
    full, quick = _compose_job("evaluate", "run_dir=r"), _compose_job("evaluate", "run_dir=r", "experiment=quick")
    assert (full.test_sentences, full.calib_sentences, full.baseline_steps, full.latency.sentences) == (
        2000,
        1500,
        300,
        256,
    )
    assert (quick.test_sentences, quick.calib_sentences, quick.baseline_steps) == (200, 300, 30)
    assert (quick.latency.sentences, quick.latency.repeats, quick.latency.batch_sizes) == (16, 3, [1, 32])
    speed = _compose_job("bench_speed", "experiment=quick").bench
    assert (speed.repeats, speed.controller_steps, speed.test_sentences, speed.batched_rounds) == (5, 20, 400, 1)
    assert _compose_job("bench_speed").bench.batched_rounds == 4
    transfer = _compose_job("bench_transfer", "run_dirs=[r]", "experiment=quick")
    assert (transfer.steps, transfer.shots, transfer.seeds, transfer.max_cells) == ([0, 1, 2], [8], [0, 1], 2)
    # the user's own override still wins over the experiment's value
    assert _compose_job("evaluate", "run_dir=r", "experiment=quick", "test_sentences=50").test_sentences == 50


def test_an_experiment_a_measuring_job_lacks_names_the_ones_it_has():
    with pytest.raises(MissingConfigException, match="scale/evaluate") as info:
        _compose_job("evaluate", "run_dir=r", "experiment=smoke")
    assert "quick" in str(info.value) and "full" in str(info.value)
