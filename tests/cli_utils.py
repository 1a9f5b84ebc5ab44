"""Running an entry point the way a user does: ``python -m <module> <overrides>`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys


def run_module(module: str, *args: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` with ``env``; fails the test (with the tail of stderr) on a non-zero exit."""
    res = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res
