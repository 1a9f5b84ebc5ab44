"""Shared fixtures: the real UD data read in place, and a per-session cache so tests never touch ~/.cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _shared_ud() -> Path:
    env = os.environ.get("METASPARSE_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "ud"
    if not (path / "MANIFEST.tsv").exists():
        raise RuntimeError(
            f"the UD data is not at {path}: set METASPARSE_DATA_DIR to the shared copy (../shared/data/ud)"
        )
    return path.resolve()


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the cache at a session temp dir and the data at the shared copy; quiet progress bars."""
    import datasets

    datasets.disable_progress_bars()
    os.environ["METASPARSE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["METASPARSE_DATA_DIR"] = str(_shared_ud())
    os.environ["METASPARSE_OFFLINE"] = "1"  # tests never reach the internet; download tests use 127.0.0.1


@pytest.fixture(scope="session")
def shared_ud() -> Path:
    """The shared, read-only UD folder."""
    return _shared_ud()


@pytest.fixture(scope="session")
def ud_dataset(_isolated_env):
    """All 44,715 real sentences (parsed once per session)."""
    from metasparse.data.ud import load_ud

    return load_ud()


@pytest.fixture(scope="session")
def cell_index(ud_dataset):
    from metasparse.data.cells import CellIndex

    return CellIndex(ud_dataset)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, _isolated_env) -> Path:
    """One ``meta_train experiment=smoke +domain=legal`` run through the real CLI, shared by the tests that
    read a run folder (evaluate, bench.transfer, diagnose, monitor, the notebook)."""
    import subprocess
    import sys

    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "metasparse.meta_train",
            "experiment=smoke",
            "+domain=legal",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    return run_dir


@pytest.fixture(scope="session")
def smoke_analysis(smoke_run) -> Path:
    """The smoke run after ``diagnose`` (into ``<run>/diagnostics``) and a quick ``bench.transfer`` (into
    ``<run>/transfer``), both through the real CLIs; returns the run folder."""
    import subprocess
    import sys

    for args in (
        ["metasparse.diagnose", f"run_dir={smoke_run}", "permutations=49", "bootstrap=50"],
        [
            "metasparse.bench.transfer",
            f"run_dirs=[{smoke_run}]",
            "quick=true",
            f"out={smoke_run / 'transfer'}",
            f"hydra.run.dir={smoke_run / 'transfer' / 'hydra'}",
        ],
    ):
        res = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"{args[0]}: {res.stderr[-4000:]}"
    return smoke_run
