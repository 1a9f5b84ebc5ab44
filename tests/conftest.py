"""Shared fixtures: the real UD data read in place, and a per-session cache so tests never touch ~/.cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# Under pytest-xdist each worker, and every CLI it starts, would use one torch thread per core: two workers on
# two cores then run four or more compute threads at once, which slowed the suite about threefold (a smoke
# run: 30 s alone, 200 s beside the other worker). One thread per process keeps the cores busy without that.
# Jobs that set their own thread count (bench.speed, evaluate's latency) still do; the tests that run them
# ask for one thread.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

# The user's environment as the run started, before the fixtures below point the cache at a temp folder:
# the data is resolved with the user's own cache, like the package does.
_USER_ENV = dict(os.environ)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point every cache at a session temp folder and quiet progress bars; no data is read here, so unit
    tests run without the treebanks (a test that secretly reads them fails: the temp cache holds none)."""
    import datasets

    datasets.disable_progress_bars()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("cache")
    # Parsing the treebanks takes 30-50 s; the parsed tables depend only on the pinned files (verified on every
    # load), the split and the reader's version, all in their folder's name, so they are kept between runs
    # in the ignored .pytest_cache. Everything else (tokenizers, backbones, runs) is new in every session.
    parsed = REPO / ".pytest_cache" / "metasparse-parsed-ud"
    parsed.mkdir(parents=True, exist_ok=True)
    (cache / "datasets").symlink_to(parsed, target_is_directory=True)
    os.environ["METASPARSE_CACHE_DIR"] = str(cache)
    os.environ.pop("METASPARSE_DATA_DIR", None)
    os.environ["METASPARSE_OFFLINE"] = "1"  # tests never reach the internet; download tests use 127.0.0.1


@pytest.fixture(scope="session")
def ud_root(_isolated_cache) -> Path:
    """The verified UD folder (see ``data_location.resolve_ud``), exported as ``METASPARSE_DATA_DIR`` for
    the code and the subprocesses of the tests that ask for it."""
    from data_location import resolve_ud

    from metasparse.errors import ChecksumError, DataUnavailableError

    try:
        root = resolve_ud(REPO, _USER_ENV)
    except (DataUnavailableError, ChecksumError) as exc:
        pytest.fail(f"the tests that read the UD data cannot find it:\n{exc}", pytrace=False)
    os.environ["METASPARSE_DATA_DIR"] = str(root)
    return root


@pytest.fixture(scope="session")
def ud_dataset(ud_root):
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
def smoke_run(tmp_path_factory, ud_root) -> Path:
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
            "experiment=quick",
            f"out={smoke_run / 'transfer'}",
            f"hydra.run.dir={smoke_run / 'transfer' / 'hydra'}",
        ],
    ):
        res = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"{args[0]}: {res.stderr[-4000:]}"
    return smoke_run


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the mark into the "@smoke" node suffix
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n 2 --dist loadgroup``, the default in pyproject), the tests that read the
    session's smoke run all go to one worker, so the run (and its analysis) is made once, not per worker."""
    for item in items:
        if {"smoke_run", "smoke_analysis"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("smoke"))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Say so when the grouping above did not take (a pytest or pytest-xdist whose loadgroup does not tag
    node ids): the suite still passes, but makes the smoke run on every worker."""
    if os.environ.get("PYTEST_XDIST_WORKER") and session.config.getvalue("dist") == "loadgroup":
        grouped = [i for i in session.items if i.get_closest_marker("xdist_group")]
        if grouped and not all(i.nodeid.endswith("@smoke") for i in grouped):
            import warnings

            warnings.warn(
                "pytest-xdist's --dist loadgroup did not group the smoke-run tests (pytest 9.2 with "
                "pytest-xdist 3.8 does not): each worker makes its own smoke run; pytest<9.2 groups them",
                stacklevel=1,
            )
