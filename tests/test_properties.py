"""Property-based tests: malformed CoNLL-U and out-of-range or mistyped config values always end in the
package's (or Hydra's) clear error, never in a crash from deep inside."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metasparse.config import CONF_DIR, MetaTrainConfig
from metasparse.data.ud import read_conllu
from metasparse.errors import ConfigValueError, MetasparseError

VALID = (
    "# sent_id = s1\n"
    "# text = Dogs bark .\n"
    "1\tDogs\tdog\tNOUN\t_\tNumber=Plur\t2\tnsubj\t_\t_\n"
    "2\tbark\tbark\tVERB\t_\t_\t0\troot\t_\t_\n"
    "3\t.\t.\tPUNCT\t_\t_\t2\tpunct\t_\t_\n"
    "\n"
)


def _read(data: bytes) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x-ud-test.conllu"
        path.write_bytes(data)
        return read_conllu(path, treebank="UD_X-T", lang="xx", domain_of=lambda *_: "d")


def test_the_valid_sentence_reads():
    rows = _read(VALID.encode())
    assert rows[0]["words"] == ["Dogs", "bark", "."] and rows[0]["upos"] == ["NOUN", "VERB", "PUNCT"]


CONLLU_ALPHABET = st.sampled_from(list("\t\n #=_-.:0123456789abcNOUVERBPUCTrotsubjé\r\x00") + ["NOUN", "root", "\t_\t"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CONLLU_ALPHABET, max_size=80).map("".join))
def test_arbitrary_text_gives_a_clear_error_or_sentences(text):
    try:
        rows = _read(text.encode("utf-8"))
    except MetasparseError as e:
        assert ":" in str(e)  # file:line: reason
    else:
        assert all(len(r["words"]) == len(r["upos"]) == len(r["deprel"]) for r in rows)


@settings(max_examples=150, deadline=None)
@given(
    line=st.integers(2, 4),
    column=st.integers(0, 9),
    value=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6),
    drop=st.booleans(),
)
def test_one_corrupted_field_gives_a_clear_error_naming_the_line(line, column, value, drop):
    lines = VALID.split("\n")
    cols = lines[line].split("\t")
    if drop:
        del cols[column]
    else:
        cols[column] = value
    lines[line] = "\t".join(cols)
    try:
        _read("\n".join(lines).encode("utf-8"))
    except MetasparseError as e:
        assert "x-ud-test.conllu:" in str(e)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=60))
def test_arbitrary_bytes_give_a_clear_error_or_sentences(data):
    try:
        rows = _read(data)
    except MetasparseError as e:
        assert "x-ud-test.conllu" in str(e)
    else:
        assert all(len(r["words"]) == len(r["upos"]) for r in rows)


CLEAR = (ConfigValueError, HydraException, OmegaConfBaseException)

VALUES = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: "nan" if math.isnan(f) else str(f)),
    st.sampled_from(["true", "null", "abc", "[1,2]", "{a: 1}", "''", "-1", "1e9"]),
)
KEYS = st.sampled_from(
    [
        "budget.target",
        "budget.weight",
        "meta.steps",
        "meta.inner_lr",
        "meta.algorithm",
        "episodes.shots",
        "episodes.on_small",
        "adapt.steps",
        "adapt.shots",
        "controller.placement",
        "data.split_fractions",
        "tokenizer.vocab_size",
    ]
)


@pytest.fixture(scope="module")
def _hydra():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=KEYS, value=VALUES)
def test_any_config_value_is_accepted_or_refused_clearly(_hydra, key, value):
    try:
        cfg = OmegaConf.to_object(compose("meta_train", overrides=[f"{key}={value}"]))
    except CLEAR as e:
        # A refusal names the key the user wrote (Hydra's parse errors quote the whole override); any other
        # exception type escapes the except clause and fails the test.
        assert key in str(e), f"{type(e).__name__} does not name {key}: {e}"
    else:
        assert isinstance(cfg, MetaTrainConfig)
        if key == "budget.target":
            assert 0 < cfg.budget.target <= 1
        if key in ("meta.steps", "episodes.shots", "adapt.shots"):
            assert OmegaConf.select(OmegaConf.structured(cfg), key) >= 1
