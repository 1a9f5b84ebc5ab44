"""Files written so that nothing is ever half-written, and read back verified.

Atomic file and folder writes (a temporary sibling, then ``os.replace``), file sha256, and the CSV text the
reports write that way."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it private (0600); a result is as readable as any file
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_folder(folder: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``folder`` to fill; on success it is renamed into place.

    Readers see the old folder or the new one, never a partial one; on an error the temporary folder is
    removed and ``folder`` is left as it was.

    Args:
        folder: the final path.
        replace: an existing ``folder`` is replaced (moved aside first, so a crash never leaves neither);
            False keeps it and drops the new copy (another process won a race to write the same content).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private (0700)
        yield tmp
        if folder.exists() and not replace:
            shutil.rmtree(tmp)
            return
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_result(out_dir: Path, stem: str, result: dict, markdown: str, also: str | Path | None = None) -> None:
    """A job's result as ``<stem>.json`` and ``<stem>.md`` in ``out_dir`` (and the JSON at ``also`` when the
    user asked for a copy there), each written atomically; the Markdown is printed too."""
    print(markdown)
    text = json.dumps(result, indent=2)
    atomic_write(Path(out_dir) / f"{stem}.json", text)
    atomic_write(Path(out_dir) / f"{stem}.md", markdown)
    if also:
        atomic_write(Path(also), text)


def csv_text(rows: list[dict]) -> str:
    """Rows of equal keys as CSV text with a header (empty for no rows), for :func:`atomic_write`."""
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
