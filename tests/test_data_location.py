"""The tests find the data like a user's clone does: no ../shared needed, the download cache is enough."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_location import resolve_ud

from metasparse.data.registry import load_registry
from metasparse.errors import ChecksumError, DataUnavailableError


def _mirror(src: Path, dst: Path) -> Path:
    """``dst`` holding links to every pinned file of ``src`` (a download cache without copying 70 MB)."""
    for f in load_registry().files:
        (dst / f.treebank).mkdir(parents=True, exist_ok=True)
        (dst / f.relpath).symlink_to(src / f.relpath)
    return dst


def test_a_clone_without_shared_beside_it_reads_the_download_cache(tmp_path, ud_root):
    clone = tmp_path / "work" / "metasparse"  # no tmp_path/work/shared
    clone.mkdir(parents=True)
    cache = tmp_path / "home" / ".cache" / "metasparse"
    _mirror(ud_root, cache / "ud")
    assert resolve_ud(clone, {"HOME": str(tmp_path / "home"), "METASPARSE_OFFLINE": "1"}) == (cache / "ud").resolve()
    other = tmp_path / "elsewhere"
    assert (
        resolve_ud(clone, {"METASPARSE_CACHE_DIR": str(other), "METASPARSE_DATA_DIR": str(cache / "ud")})
        == (cache / "ud").resolve()
    )


def test_shared_beside_the_clone_comes_before_the_cache(tmp_path, ud_root):
    clone = tmp_path / "work" / "metasparse"
    clone.mkdir(parents=True)
    shared = _mirror(ud_root, tmp_path / "work" / "shared" / "data" / "ud")
    assert resolve_ud(clone, {"HOME": str(tmp_path / "home"), "METASPARSE_OFFLINE": "1"}) == shared.resolve()


def test_missing_data_offline_names_the_fetch_command(tmp_path):
    clone = tmp_path / "metasparse"
    clone.mkdir()
    with pytest.raises(DataUnavailableError, match="python -m metasparse.data fetch"):
        resolve_ud(clone, {"HOME": str(tmp_path / "home"), "METASPARSE_OFFLINE": "1"})


def test_a_modified_file_in_the_cache_is_refused(tmp_path, ud_root):
    clone = tmp_path / "metasparse"
    clone.mkdir()
    cache = _mirror(ud_root, tmp_path / "cache" / "ud")
    first = cache / load_registry().files[0].relpath
    first.unlink()
    first.write_text("# sent_id = 1\n1\tx\tx\tX\t_\t_\t0\troot\t_\t_\n\n", encoding="utf-8")
    with pytest.raises(ChecksumError, match="differ from the pinned version"):
        resolve_ud(clone, {"METASPARSE_CACHE_DIR": str(tmp_path / "cache"), "METASPARSE_OFFLINE": "1"})
