"""Exceptions the package raises on bad input, so callers can catch them by kind.

Every message names the file, line, key or cell at fault and what is allowed instead.
"""

from __future__ import annotations


class MetasparseError(Exception):
    """Base class of every error metasparse raises on purpose."""


class ConlluFormatError(MetasparseError, ValueError):
    """A CoNLL-U file breaks the format; the message reads ``file:line: reason``."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}")


class DomainRuleError(MetasparseError, ValueError):
    """A sentence is matched by no domain rule or by more than one."""


class DataUnavailableError(MetasparseError, FileNotFoundError):
    """Registry files are missing and cannot be downloaded (offline or unreachable)."""


class ChecksumError(MetasparseError, ValueError):
    """A data file's sha256 differs from the pinned one; the file is never used."""


class ConfigValueError(MetasparseError, ValueError):
    """A configuration value is unknown or out of its allowed range."""


def require(ok: bool, key: str, allowed: str, value: object) -> None:
    """Refuse a config value with the key, the value and what is allowed (configs call it in ``__post_init__``).

    Raises:
        ConfigValueError: when ``ok`` is false.
    """
    if not ok:
        raise ConfigValueError(f"{key}={value!r} is out of range; allowed: {allowed}")


class CellTooSmallError(MetasparseError, ValueError):
    """A cell has fewer sentences than an episode needs (support + query)."""


class PathError(MetasparseError, FileNotFoundError):
    """A path the user gave (a config key or an argument) does not exist or holds the wrong thing."""


class InputError(MetasparseError, ValueError):
    """A file the user gave cannot be read as what it should be (encoding, format, emptiness)."""


def decode_utf8(data: bytes, path: str) -> str:
    """``data`` (the bytes of ``path``) as UTF-8 text.

    Raises:
        InputError: naming the file, the byte offset and the line of the first byte that is not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: not valid UTF-8 at byte {exc.start} (line {line}): {exc.reason}") from None


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN or infinite; the message says where."""
