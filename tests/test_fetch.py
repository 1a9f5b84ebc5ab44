"""Download path against a real HTTP server on 127.0.0.1, offline errors and hash mismatches."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from metasparse.data.fetch import fetch
from metasparse.data.registry import load_registry
from metasparse.errors import ChecksumError, DataUnavailableError
from metasparse.io import sha256_file

SMALL = ["UD_Turkish-PUD", "UD_Korean-PUD"]  # one test file each: quick to serve
TEMPLATE = "http://127.0.0.1:{port}/{{treebank}}/{{name}}"


class _Server:
    """A threaded static file server on an ephemeral loopback port; counts requests."""

    def __init__(self, directory: Path) -> None:
        self.requests = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                outer.requests += 1
                super().do_GET()

        handler = functools.partial(Handler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def template(self) -> str:
        return TEMPLATE.format(port=self.port)


@pytest.mark.network
def test_download_from_loopback_then_no_network(tmp_path, ud_root):
    dest = tmp_path / "ud"
    with _Server(ud_root) as server:
        paths = fetch(SMALL, root=dest, url_template=server.template, offline=False)
        assert server.requests == 2
    files = [f for name in SMALL for f in load_registry()[name].files]
    assert sorted(paths) == sorted(f.relpath for f in files)
    for f in files:
        assert sha256_file(dest / f.relpath) == f.sha256
    # Server gone: present files with matching hashes need no network at all.
    assert fetch(SMALL, root=dest, url_template=server.template, offline=False) == paths


@pytest.mark.network
def test_corrupted_download_is_refused_and_discarded(tmp_path, ud_root):
    bad = tmp_path / "mirror"
    shutil.copytree(ud_root / "UD_Turkish-PUD", bad / "UD_Turkish-PUD")
    f = bad / "UD_Turkish-PUD" / "tr_pud-ud-test.conllu"
    f.write_bytes(f.read_bytes().replace(b"NOUN", b"VERB", 1))
    dest = tmp_path / "ud"
    with _Server(bad) as server, pytest.raises(ChecksumError, match="tr_pud-ud-test.conllu"):
        fetch(["UD_Turkish-PUD"], root=dest, url_template=server.template, offline=False)
    assert not (dest / "UD_Turkish-PUD" / "tr_pud-ud-test.conllu").exists()


@pytest.mark.network
def test_unreachable_server_reports_missing_files(tmp_path):
    with _Server(tmp_path) as server:
        template = server.template  # take a port, then close the server: nothing listens there
    with pytest.raises(DataUnavailableError) as err:
        fetch(["UD_Korean-PUD"], root=tmp_path / "ud", url_template=template, offline=False)
    msg = str(err.value)
    assert "UD_Korean-PUD/ko_pud-ud-test.conllu" in msg and "METASPARSE_DATA_DIR" in msg


def test_offline_with_missing_files_names_them_the_dir_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("METASPARSE_OFFLINE", "1")
    with pytest.raises(DataUnavailableError) as err:
        fetch(["UD_Finnish-TDT"], root=tmp_path)
    msg = str(err.value)
    assert "UD_Finnish-TDT/fi_tdt-ud-dev.conllu" in msg and "UD_Finnish-TDT/fi_tdt-ud-test.conllu" in msg
    assert str(tmp_path) in msg and "METASPARSE_DATA_DIR" in msg and "METASPARSE_OFFLINE" in msg


def test_present_file_with_wrong_hash_is_never_used(tmp_path, ud_root):
    shutil.copytree(ud_root / "UD_Korean-PUD", tmp_path / "UD_Korean-PUD")
    f = tmp_path / "UD_Korean-PUD" / "ko_pud-ud-test.conllu"
    original = f.read_bytes()
    f.write_bytes(original + b"\n")
    with pytest.raises(ChecksumError, match="ko_pud-ud-test.conllu"):
        fetch(["UD_Korean-PUD"], root=tmp_path, offline=True)
    assert f.read_bytes() == original + b"\n"  # reported, not silently replaced


def test_default_data_dir_from_env(ud_root):
    paths = fetch(["UD_Korean-PUD"], offline=True)  # conftest points METASPARSE_DATA_DIR at the shared copy
    assert paths["UD_Korean-PUD/ko_pud-ud-test.conllu"] == ud_root / "UD_Korean-PUD" / "ko_pud-ud-test.conllu"
