"""The data commands as users run them."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # every test here starts the CLI in a subprocess


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metasparse.data", *args], capture_output=True, text=True, timeout=300)


def test_summary_shows_19_languages_10_domains_and_7_legal_languages(ud_dataset):
    res = _run("summary", "--domain", "legal")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("19 languages, 10 domains, 79 cells (treebank x domain), 44715 sentences, 834620 words")
    assert "legal cells: 7 in 7 languages (be en fi hy lt lv ro)" in out
    assert "| fi | Latin |" in out and "227 / 4822*" in out  # Finnish legal, marked as a target
    assert "held out (legal): 7 target cells, 72 source cells" in out


def test_summary_unknown_language_is_a_clear_error(ud_dataset):
    res = _run("summary", "--language", "xx")
    assert res.returncode == 2
    assert "language.code='xx' is not in the data; available: ar, be" in res.stderr


def test_fetch_verifies_present_files_offline(ud_dataset):
    res = subprocess.run(
        [sys.executable, "-m", "metasparse.data", "fetch"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "METASPARSE_OFFLINE": "1"},
    )
    assert res.returncode == 0, res.stderr
    assert "38 pinned files verified" in res.stdout
