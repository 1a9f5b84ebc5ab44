"""Download the pinned treebank files with pooch, verify sha256, and locate them on disk.

Files already present with the pinned hash are used as they are: no network at all. A present file
with another hash is an error (never silently used, never silently replaced). Missing files are
downloaded from the pinned commits unless ``METASPARSE_OFFLINE=1``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pooch

from metasparse.data.registry import DEFAULT_URL_TEMPLATE, RegistryFile, load_registry
from metasparse.errors import ChecksumError, DataUnavailableError
from metasparse.io import sha256_file

log = logging.getLogger(__name__)

DATA_DIR_ENV = "METASPARSE_DATA_DIR"
CACHE_DIR_ENV = "METASPARSE_CACHE_DIR"
OFFLINE_ENV = "METASPARSE_OFFLINE"
URL_TEMPLATE_ENV = "METASPARSE_UD_URL"


def cache_dir() -> Path:
    """Root of everything metasparse caches: ``$METASPARSE_CACHE_DIR`` or ``~/.cache/metasparse``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "metasparse").expanduser()


def data_dir() -> Path:
    """Where the treebank files live: ``$METASPARSE_DATA_DIR`` or ``<cache_dir>/ud``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else cache_dir() / "ud"


def is_offline() -> bool:
    """True when ``METASPARSE_OFFLINE`` is set to a true value."""
    return os.environ.get(OFFLINE_ENV, "").lower() in {"1", "true", "yes", "on"}


def _selected_files(treebanks: Iterable[str] | None) -> list[RegistryFile]:
    reg = load_registry()
    names = reg.names if treebanks is None else list(treebanks)
    return [f for name in names for f in reg[name].files]  # reg[name] raises listing the available ones


def fetch(
    treebanks: Iterable[str] | None = None,
    *,
    root: Path | None = None,
    url_template: str | None = None,
    offline: bool | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Make sure the pinned files are on disk with the right hashes and return their paths.

    Args:
        treebanks: treebank names to fetch; None means all of the registry.
        root: data directory; defaults to :func:`data_dir`.
        url_template: format string with ``{treebank}``, ``{commit}`` and ``{name}``; defaults to
            ``$METASPARSE_UD_URL`` or UD's GitHub raw files.
        offline: refuse to download; defaults to ``$METASPARSE_OFFLINE``.
        progress: show a download progress bar.

    Returns:
        Mapping from ``<treebank>/<file name>`` to the verified local path.

    Raises:
        ChecksumError: a present or downloaded file does not have the pinned sha256.
        DataUnavailableError: files are missing and cannot be downloaded.
    """
    root = Path(root) if root is not None else data_dir()
    offline = is_offline() if offline is None else offline
    template = url_template or os.environ.get(URL_TEMPLATE_ENV) or DEFAULT_URL_TEMPLATE
    present, missing = _verify_present(root, _selected_files(treebanks))
    if not missing:
        return present
    if offline:
        raise _unavailable(missing, root, f"{OFFLINE_ENV} is set, so nothing is downloaded")
    return {**present, **_download(root, missing, template, progress)}


def _verify_present(root: Path, wanted: list[RegistryFile]) -> tuple[dict[str, Path], list[RegistryFile]]:
    """The wanted files present with their pinned hash, and the missing ones; any present file with another
    hash is an error (never used, never silently replaced)."""
    present: dict[str, Path] = {}
    missing: list[RegistryFile] = []
    bad: list[str] = []
    for f in wanted:
        path = root / f.relpath
        if not path.exists():
            missing.append(f)
            continue
        got = sha256_file(path)
        if got != f.sha256:
            bad.append(f"  {path}: sha256 {got}, pinned {f.sha256}")
        else:
            present[f.relpath] = path
    if bad:
        raise ChecksumError(
            f"{len(bad)} data file(s) differ from the pinned version and will not be used:\n"
            + "\n".join(bad)
            + "\nDelete them to download the pinned files again, or point "
            f"{DATA_DIR_ENV} at an unmodified copy."
        )
    return present, missing


def _download(root: Path, missing: list[RegistryFile], template: str, progress: bool) -> dict[str, Path]:
    """Download ``missing`` with pooch, each verified against its pinned sha256 before it is kept."""
    reg = load_registry()
    store = pooch.create(
        path=root,
        base_url="",
        retry_if_failed=2,
        registry={f.relpath: f"sha256:{f.sha256}" for f in missing},
        urls={f.relpath: reg[f.treebank].url(f, template) for f in missing},
    )
    got: dict[str, Path] = {}
    for i, f in enumerate(missing):
        log.info("downloading %s (%d/%d)", f.relpath, i + 1, len(missing))
        try:
            got[f.relpath] = Path(store.fetch(f.relpath, progressbar=progress))
        except ValueError as exc:  # pooch's hash mismatch: the temporary download is already removed
            if "hash" not in str(exc).lower():
                raise
            raise ChecksumError(
                f"downloaded {store.get_url(f.relpath)} does not match its pinned sha256 {f.sha256}; "
                f"the file was discarded ({exc})"
            ) from exc
        except OSError as exc:  # requests' connection and HTTP errors are OSErrors
            raise _unavailable(missing[i:], root, f"download of {store.get_url(f.relpath)} failed: {exc}") from exc
    return got


def _unavailable(missing: list[RegistryFile], root: Path, why: str) -> DataUnavailableError:
    listing = "\n".join(f"  {f.relpath}" for f in missing[:50])
    more = f"\n  ... and {len(missing) - 50} more" if len(missing) > 50 else ""
    return DataUnavailableError(
        f"{len(missing)} pinned UD file(s) are missing from {root} ({why}):\n{listing}{more}\n"
        f"Set {DATA_DIR_ENV} to a folder that holds them (e.g. METASPARSE_DATA_DIR=../shared/data/ud), "
        f"or run `python -m metasparse.data fetch` with network access."
    )
