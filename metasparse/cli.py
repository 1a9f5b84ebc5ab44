"""What every command-line entry point shares: a user's mistake prints one line, not a traceback.

The package's own errors (:class:`metasparse.errors.MetasparseError`: a bad path, a bad input file, a
config value out of range, a refused checkpoint) name the key, file or line at fault and what is allowed;
at the command line that line is all a user needs. So do the config schema's (a missing mandatory value,
a value of the wrong type). Bugs (any other exception) keep Hydra's traceback.
``METASPARSE_DEBUG=1`` or ``HYDRA_FULL_ERROR=1`` brings the traceback back for the package's errors too.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from metasparse.errors import MetasparseError, PathError

T = TypeVar("T")

EXIT_USER_ERROR = 2  # like argparse: the command was used wrongly (1 stays for crashes)


def _debugging() -> bool:
    return any(os.environ.get(k, "") not in ("", "0") for k in ("METASPARSE_DEBUG", "HYDRA_FULL_ERROR"))


def one_line_errors(task: Callable[..., T]) -> Callable[..., T]:
    """Wrap a Hydra task function (place it under ``@hydra.main``): a :class:`MetasparseError` or a config
    schema error prints ``error: <message>`` on stderr and exits with status 2; anything else propagates
    unchanged."""

    @functools.wraps(task)  # Hydra unwraps ``__wrapped__`` to find the config path
    def wrapper(*args, **kwargs) -> T:
        try:
            return task(*args, **kwargs)
        except (MetasparseError, OmegaConfBaseException) as exc:
            _exit_user_error(exc)

    return wrapper


def _exit_user_error(exc: BaseException) -> None:
    """Print ``error: <the one line>`` and exit with status 2; re-raise instead when debugging (called from
    an ``except`` block)."""
    if _debugging():
        raise exc
    print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)


def run_dir_first(hydra_main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a ``@hydra.main`` function whose job folder lies inside ``run_dir`` (evaluate, monitor, predict,
    recalibrate): refuse a ``run_dir=`` override that is not a folder before Hydra starts. Hydra makes the
    job folder first, so a mistyped run folder would otherwise be created, with a ``.hydra`` inside, and the
    error would then be about a folder that is not a run."""

    @functools.wraps(hydra_main)
    def wrapper(*args, **kwargs) -> T:
        for arg in sys.argv[1:]:
            key, sep, value = arg.partition("=")
            if sep and key.lstrip("+~") == "run_dir" and value:
                try:
                    check_paths({"run_dir": (value, "folder")})
                except PathError as exc:
                    _exit_user_error(exc)
        return hydra_main(*args, **kwargs)

    return wrapper


def one_line(exc: BaseException) -> str:
    """The line a user reads: the package's message as it is; a config schema error (a missing value, a
    wrong type) as ``<key>: <what is wrong>``."""
    if isinstance(exc, MissingMandatoryValue) and getattr(exc, "full_key", None):
        return f"{exc.full_key} is required and has no value; set it, e.g. {exc.full_key}=<value>"
    if isinstance(exc, OmegaConfBaseException):
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        key = getattr(exc, "full_key", None)
        return f"{key}: {first}" if key else first
    return str(exc)


def check_paths(paths: dict[str, tuple[str | Path | None, str]]) -> None:
    """Refuse missing paths before anything heavy loads.

    Args:
        paths: config key -> (the path or None to skip, what it must be: ``file``, ``folder`` or ``any``
            to read, or ``output``: a file to write, absent or a file, never a folder).

    Raises:
        PathError: naming the key and the path.
    """
    for key, (path, kind) in paths.items():
        if path is None:
            continue
        p = Path(path)
        if kind == "output":
            if p.is_dir():
                raise PathError(f"{key}={path}: a folder; a file to write is expected here (e.g. {p / 'result.json'})")
            continue
        if not p.exists():
            raise PathError(f"{key}={path}: no such file or folder")
        if kind == "file" and not p.is_file():
            raise PathError(f"{key}={path}: a folder; a file is expected here")
        if kind == "folder" and not p.is_dir():
            raise PathError(f"{key}={path}: a file; a folder is expected here")
