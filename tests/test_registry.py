"""The package's registry agrees with the shared data's own manifest and with the files themselves."""

from __future__ import annotations

import csv
from dataclasses import replace

from metasparse.data.registry import load_registry
from metasparse.io import sha256_file


def test_registry_shape():
    reg = load_registry()
    assert len(reg.treebanks) == 21
    assert len(reg.languages) == 19
    assert len(reg.domains) == 10
    assert len(reg.files) == 38
    assert len({tb.script for tb in reg.treebanks}) == 8
    legal = {tb.lang for tb in reg.treebanks for r in tb.rules if r.domain == "legal"}
    assert legal == {"be", "en", "fi", "hy", "lt", "lv", "ro"}
    assert all(len(tb.commit) == 40 for tb in reg.treebanks)


def test_every_pinned_hash_matches_the_shared_file(ud_root):
    for f in load_registry().files:
        assert sha256_file(ud_root / f.relpath) == f.sha256, f.relpath


def test_registry_matches_manifest_and_domain_tables(ud_root):
    reg = load_registry()
    manifest = {
        r["file"]: r for r in csv.DictReader((ud_root / "MANIFEST.tsv").read_text().splitlines(), delimiter="\t")
    }
    assert set(manifest) == {f.relpath for f in reg.files}
    for f in reg.files:
        m = manifest[f.relpath]
        assert (m["sha256"], int(m["sentences"]), int(m["tokens"]), m["split"]) == (
            f.sha256,
            f.sentences,
            f.tokens,
            f.split,
        )
    rules = [
        (r["treebank"], r["rule"], r["domain"])
        for r in csv.DictReader((ud_root / "DOMAINS.tsv").read_text().splitlines(), delimiter="\t")
    ]
    assert rules == [(tb.name, r.pattern.pattern, r.domain) for tb in reg.treebanks for r in tb.rules]


def test_urls_point_at_pinned_commits():
    tb = load_registry()["UD_Finnish-TDT"]
    url = tb.url(tb.files[0])
    assert url.startswith("https://raw.githubusercontent.com/UniversalDependencies/UD_Finnish-TDT/5e3a88a6")
    assert url.endswith("/fi_tdt-ud-dev.conllu")


def test_unknown_treebank_lists_available():
    import pytest

    with pytest.raises(KeyError, match="UD_Finnish-TDT"):
        load_registry()["UD_Klingon-X"]


def test_fingerprint_is_pinned_and_follows_every_file_hash():
    reg = load_registry()
    # Written down once: every cache key (tokenizers, backbones) hangs on it, so it must not drift between
    # processes, machines or Python versions, and must change when any pinned file does.
    assert reg.fingerprint() == "46f481b0b19e5b89"
    first, *rest = reg.treebanks
    edited = replace(first, files=(replace(first.files[0], sha256="0" * 64), *first.files[1:]))
    assert replace(reg, treebanks=(edited, *rest)).fingerprint() != reg.fingerprint()
    relabelled = replace(first, rules=(replace(first.rules[0], domain="other"), *first.rules[1:]))
    assert replace(reg, treebanks=(relabelled, *rest)).fingerprint() != reg.fingerprint()
