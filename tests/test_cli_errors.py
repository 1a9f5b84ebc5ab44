"""A user's mistakes print one line naming the key, file or byte and exit 2, before anything heavy loads;
bugs keep their traceback, and the debug switch brings it back for the package's errors too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from metasparse.cli import check_paths, one_line, one_line_errors
from metasparse.errors import ConfigValueError, InputError, PathError, decode_utf8


def _fail(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run an entry point as a user does, without the debug switches unless ``env`` sets them."""
    base = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "METASPARSE_DEBUG")}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300, env={**base, **(env or {})}
    )


def test_decode_utf8_names_the_file_byte_and_line():
    assert decode_utf8("héllo".encode(), "x.txt") == "héllo"
    with pytest.raises(InputError, match=r"^in\.txt: not valid UTF-8 at byte 9 \(line 2\): invalid start byte$"):
        decode_utf8(b"line one\n\xffoops", "in.txt")


def test_check_paths_refuses_missing_and_wrong_kinds(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x")
    check_paths({"input": (f, "file"), "run_dir": (tmp_path, "folder"), "other": (None, "any")})
    with pytest.raises(PathError, match=r"^target\.path=/nonexistent: no such file or folder$"):
        check_paths({"target.path": ("/nonexistent", "any")})
    with pytest.raises(PathError, match="a file; a folder is expected"):
        check_paths({"run_dir": (f, "folder")})
    with pytest.raises(PathError, match="a folder; a file is expected"):
        check_paths({"input": (tmp_path, "file")})
    check_paths({"out": (tmp_path / "new.json", "output"), "also": (f, "output")})  # absent, or a file to replace
    with pytest.raises(
        PathError, match=r"^out=.*: a folder; a file to write is expected here \(e\.g\. .*result\.json\)$"
    ):
        check_paths({"out": (tmp_path, "output")})


def test_one_line_errors_exits_2_for_the_package_errors_and_lets_bugs_through(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("METASPARSE_DEBUG", raising=False)

    @one_line_errors
    def refuses(cfg):
        raise ConfigValueError("budget=2 is out of range; allowed: (0, 1]")

    with pytest.raises(SystemExit) as exit_:
        refuses(None)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: budget=2 is out of range; allowed: (0, 1]\n"

    @one_line_errors
    def bug(cfg):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        bug(None)
    monkeypatch.setenv("METASPARSE_DEBUG", "1")
    with pytest.raises(ConfigValueError):
        refuses(None)


def test_a_missing_mandatory_value_reads_as_its_key():
    from dataclasses import dataclass

    @dataclass
    class Target:
        lang: str = "???"

    with pytest.raises(Exception) as info:
        OmegaConf.to_object(OmegaConf.structured(Target))
    assert one_line(info.value) == "lang is required and has no value; set it, e.g. lang=<value>"


@pytest.mark.slow
def test_the_clis_print_one_line_and_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Zürich liegt am See\n".encode("latin-1"))
    h = f"hydra.run.dir={tmp_path / 'h'}"

    res = _fail(
        "metasparse.adapt", f"run_dir={run_dir}", "target.path=/nonexistent", "target.lang=de", "target.domain=legal", h
    )
    assert (res.returncode, res.stderr) == (2, "error: target.path=/nonexistent: no such file or folder\n")

    # a mistyped run folder, with the job folder at its default (inside run_dir): refused before Hydra makes it
    missing = tmp_path / "no-such-run"
    res = _fail("metasparse.evaluate", f"run_dir={missing}")
    assert (res.returncode, res.stderr) == (2, f"error: run_dir={missing}: no such file or folder\n")
    assert not missing.exists()

    res = _fail("metasparse.evaluate", f"run_dir={run_dir}", f"out={tmp_path}", h)  # before the run loads
    assert res.returncode == 2
    assert (
        res.stderr
        == f"error: out={tmp_path}: a folder; a file to write is expected here (e.g. {tmp_path}/result.json)\n"
    )

    res = _fail("metasparse.monitor", f"run_dir={run_dir}", f"input={bad}", h)
    assert res.returncode == 2
    assert res.stderr == f"error: input={bad}: not valid UTF-8 at byte 1 (line 1): invalid start byte\n"

    res = _fail("metasparse.pretrain", "joint.teacher=bogus", h)
    assert (res.returncode, res.stderr) == (
        2,
        "error: joint.teacher='bogus' is out of range; allowed: dense | frozen\n",
    )

    res = _fail("metasparse.adapt", f"run_dir={run_dir}", "target.path=/nonexistent", h)
    assert res.returncode == 2
    assert res.stderr == "error: target.lang is required and has no value; set it, e.g. target.lang=<value>\n"

    # the traceback stays one switch away
    res = _fail("metasparse.pretrain", "joint.teacher=bogus", h, env={"HYDRA_FULL_ERROR": "1"})
    assert res.returncode == 1 and "Traceback" in res.stderr and "ConfigValueError" in res.stderr
