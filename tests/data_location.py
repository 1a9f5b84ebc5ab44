"""Where the tests find the UD data: the way the package finds it, plus the project's shared copy.

Order: ``$METASPARSE_DATA_DIR``; else ``../shared/data/ud`` beside the clone when it exists (the
developers' and CI's copy); else the package's download cache (``$METASPARSE_CACHE_DIR/ud``, by default
``~/.cache/metasparse/ud``), which the README's first command fills. Every file is verified against the
registry's sha256; missing ones are downloaded when the network is allowed (``METASPARSE_OFFLINE`` unset).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from metasparse.data.fetch import CACHE_DIR_ENV, DATA_DIR_ENV, OFFLINE_ENV, fetch


def resolve_ud(repo: Path, env: Mapping[str, str]) -> Path:
    """The verified UD folder for a clone at ``repo`` under the environment ``env``.

    Raises:
        metasparse.errors.DataUnavailableError: files are missing and may not or cannot be downloaded; the
            message names ``python -m metasparse.data fetch``.
        metasparse.errors.ChecksumError: a present file differs from its pinned version.
    """
    shared = repo.parent / "shared" / "data" / "ud"
    if env.get(DATA_DIR_ENV):
        root = Path(env[DATA_DIR_ENV]).expanduser()
    elif shared.is_dir():
        root = shared
    else:
        cache = Path(env.get(CACHE_DIR_ENV) or Path(env.get("HOME", Path.home())) / ".cache" / "metasparse")
        root = cache.expanduser() / "ud"
    offline = env.get(OFFLINE_ENV, "").lower() in {"1", "true", "yes", "on"}
    fetch(root=root, offline=offline)
    return root.resolve()
