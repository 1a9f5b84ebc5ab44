"""data.extra: a user's own UD folder joins a run as cells (sources, or targets when held out), read and
checked like the registry's, split by the same hash rule, fingerprinted into the backbone's cache key."""

from __future__ import annotations

import shutil

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from metasparse.config import CONF_DIR
from metasparse.data.__main__ import main as data_main
from metasparse.data.cells import Cell
from metasparse.data.extra import ExtraTreebank, check_extra, fingerprint
from metasparse.data.prepare import prepare
from metasparse.data.splits import assign_split
from metasparse.errors import ConfigValueError, ConlluFormatError, PathError

BASE = ["data.treebanks=[UD_Turkish-PUD]", "tokenizer.vocab_size=2000", "joint.steps=0"]


def _cfg(*extra):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("pretrain", overrides=[*BASE, *extra]))


@pytest.fixture()
def mine(ud_root, tmp_path):
    """UD_Korean-PUD's files under another name, outside the registry's folder."""
    folder = tmp_path / "UD_Mine"
    shutil.copytree(ud_root / "UD_Korean-PUD", folder, ignore=shutil.ignore_patterns("*.txt", "*.md", "LICENSE*"))
    return folder


def test_an_extra_folder_becomes_a_held_out_cell_split_by_the_same_rule(mine, monkeypatch, tmp_path):
    monkeypatch.setenv("METASPARSE_CACHE_DIR", str(tmp_path / "cache"))
    entry = f"{{path:{mine},lang:ko,domain:contracts,name:Mine}}"
    bundle = prepare(_cfg(f"data.extra=[{entry}]", "+domain=legal", "domain.name=contracts"))
    cell = Cell("ko", "contracts", "Mine")
    assert bundle.targets == [cell] and cell not in bundle.sources
    assert {c.treebank for c in bundle.sources} == {"UD_Turkish-PUD"}
    rows = bundle.index.rows(cell)
    assert len(rows) == 1000  # every sentence of the PUD file
    ds = bundle.dataset.select(rows.tolist())
    assert all(
        split == assign_split("Mine", sid, (0.7, 0.1, 0.2), 0)
        for sid, split in zip(ds["sent_id"], ds["split"], strict=True)
    )
    shares = {s: ds["split"].count(s) / len(ds) for s in ("train", "dev", "test")}
    assert abs(shares["train"] - 0.7) < 0.05 and abs(shares["test"] - 0.2) < 0.05
    assert bundle.extra_fingerprint == fingerprint([ExtraTreebank(str(mine), "ko", "contracts", "Mine")])

    # as a source (nothing held out) it trains the tokenizer with the rest
    plain = prepare(_cfg(f"data.extra=[{entry}]"))
    assert cell in plain.sources and not plain.targets


def test_the_fingerprint_follows_the_files_and_settings(mine):
    e = ExtraTreebank(str(mine), "ko", "news")
    before = fingerprint([e])
    assert fingerprint([ExtraTreebank(str(mine), "ko", "legal")]) != before
    f = next(mine.glob("*.conllu"))
    f.write_text(f.read_text(encoding="utf-8").replace("\tNOUN\t", "\tPROPN\t", 1), encoding="utf-8")
    assert fingerprint([e]) != before


def test_bad_entries_name_the_key(mine, tmp_path):
    with pytest.raises(PathError, match=r"^data\.extra\[0\]\.path=/nonexistent: no such file or folder$"):
        check_extra([ExtraTreebank("/nonexistent", "ko", "news")], ["UD_Korean-PUD"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PathError, match=r"data\.extra\[0\]\.path=.*no \.conllu files"):
        check_extra([ExtraTreebank(str(tmp_path / "empty"), "ko", "news")], [])
    with pytest.raises(ConfigValueError, match=r"data\.extra\[1\]\.name='UD_Mine' is already a treebank"):
        check_extra([ExtraTreebank(str(mine), "ko", "news"), ExtraTreebank(str(mine), "ko", "news")], [])
    with pytest.raises(ConfigValueError, match=r"data\.extra\[0\]\.name='UD_Korean-PUD' is already"):
        check_extra([ExtraTreebank(str(mine), "ko", "news", name="UD_Korean-PUD")], ["UD_Korean-PUD"])
    with pytest.raises(ConfigValueError, match=r"data\.extra\[\]\.lang"):
        ExtraTreebank(str(mine), "", "news")


def test_a_broken_extra_file_fails_with_file_and_line(mine, monkeypatch, tmp_path):
    monkeypatch.setenv("METASPARSE_CACHE_DIR", str(tmp_path / "cache"))
    f = next(mine.glob("*.conllu"))
    lines = f.read_text(encoding="utf-8").split("\n")
    first = next(i for i, line in enumerate(lines) if line[:1].isdigit())
    lines[first] = lines[first].replace("\t", " ", 1)  # a token line loses a column
    f.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ConlluFormatError, match=rf"{f.name}:{first + 1}:"):
        prepare(_cfg(f"data.extra=[{{path:{mine},lang:ko,domain:news}}]"))


def test_data_summary_lists_extra_treebanks(mine, capsys):
    assert (
        data_main(["summary", "--extra", f"path={mine},lang=ko,domain=contracts,name=Mine", "--domain", "contracts"])
        == 0
    )
    out = capsys.readouterr().out
    assert f"extra treebank: ko/contracts/Mine <- {mine}" in out
    assert "held out (contracts): 1 target cells" in out
    assert data_main(["summary", "--extra", f"path={mine},lang=ko"]) == 2
    assert "missing ['domain']" in capsys.readouterr().err
