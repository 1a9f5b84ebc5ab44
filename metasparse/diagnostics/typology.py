"""Typological distance between languages from URIEL's kNN-predicted syntactic features, as shipped in
the ``lang2vec`` wheel (``pip install metasparse[typology]``).

lang2vec 1.1.2 imports ``pkg_resources``, which recent setuptools no longer ships, so its module does not
import on a current Python; its data file does not need it. We read ``feature_predictions.npz`` (no
pickles) directly and take the cosine distance of the ``S_`` (syntax) features, which is how lang2vec's
"syntactic" distance is defined.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np

# ISO 639-1 (our treebanks) -> ISO 639-3 (URIEL)
ISO3 = {
    "ar": "ara",
    "be": "bel",
    "el": "ell",
    "en": "eng",
    "et": "est",
    "fi": "fin",
    "fr": "fra",
    "hi": "hin",
    "hr": "hrv",
    "hy": "hye",
    "ko": "kor",
    "lt": "lit",
    "lv": "lav",
    "mt": "mlt",
    "pt": "por",
    "ro": "ron",
    "ru": "rus",
    "tr": "tur",
    "zh": "zho",
}


def features_file() -> Path | None:
    """Where the installed lang2vec keeps its predicted features, or None when it is not installed.

    Found through the installed distribution's file list, not ``find_spec("lang2vec")``: lang2vec also
    installs a ``bin/lang2vec.py`` script, which shadows the package whenever the scripts folder is first on
    ``sys.path`` (as under ``pytest``), so the typology silently went missing there.
    """
    try:
        dist = metadata.distribution("lang2vec")
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name == "feature_predictions.npz" and f.parent.name == "data":
            path = Path(dist.locate_file(f))
            return path if path.exists() else None
    return None


def syntax_vectors(langs: list[str]) -> dict[str, np.ndarray] | None:
    """URIEL kNN syntax feature vectors per language code, or None without lang2vec."""
    path = features_file()
    if path is None:
        return None
    with np.load(path, allow_pickle=False) as d:
        index = {c: i for i, c in enumerate(d["langs"].tolist())}
        feats = d["feats"]
        cols = np.array([f.startswith("S_") for f in feats.tolist()])
        data = d["data"]
        out = {}
        for lang in langs:
            code = ISO3.get(lang)
            if code in index:
                out[lang] = data[index[code], cols, 0].astype(float)
    return out


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def typology_matrix(langs: list[str]) -> tuple[np.ndarray | None, str]:
    """Cell-by-cell syntactic distance of the cells' languages, and a note on where it came from."""
    vecs = syntax_vectors(sorted(set(langs)))
    if vecs is None:
        return None, "lang2vec is not installed (pip install 'metasparse[typology]'): no typological distance"
    missing = sorted(set(langs) - set(vecs))
    if missing:
        return None, f"lang2vec has no syntax_knn vector for {', '.join(missing)}"
    n = len(langs)
    m = np.array([[cosine_distance(vecs[langs[i]], vecs[langs[j]]) for j in range(n)] for i in range(n)])
    np.fill_diagonal(m, 0.0)
    return m, "URIEL syntax_knn cosine distance (lang2vec 1.1.2 data)"
