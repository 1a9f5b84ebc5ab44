"""Diagnostics: each measure on small hand-computed examples, the Mantel test against an exact
permutation count, and the diagnose CLI on the smoke run."""

from __future__ import annotations

import csv
import itertools
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from metasparse.diagnostics.relations import mantel, partial_mantel, spearman_bootstrap, upper
from metasparse.diagnostics.shift import js_divergence, profile_cell, shift_matrices, standardised_ttr


def test_js_divergence_by_hand():
    assert js_divergence(Counter(a=1), Counter(b=3)) == pytest.approx(1.0)
    assert js_divergence(Counter(a=2, b=2), Counter(a=5)) == pytest.approx(
        0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)) + 0.5 * math.log2(1 / 0.75)
    )  # = 0.3113
    assert js_divergence(Counter(a=1, b=3), Counter(a=2, b=6)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="empty"):
        js_divergence(Counter(), Counter(a=1))


class PairTokenizer:
    """Splits every word into pieces of two characters; ``z`` has no piece and falls back to a byte."""

    def subwords(self, word):
        out = []
        for i in range(0, len(word), 2):
            piece = word[i : i + 2]
            out += [f"<0x{ord(c):02X}>" for c in piece] if "z" in piece else [piece]
        return out

    def encode_words(self, words):
        class E:
            input_ids = [hash(p) % 97 for w in words for p in PairTokenizer().subwords(w)]

        return E()


def test_fertility_ratio_ttr_and_unknown_rate_by_hand():
    tok = PairTokenizer()
    a = profile_cell("a", "xx", "d1", "Latin", [["abcd", "ef"]], [["NOUN", "X"]], [["root", "dep"]], tok)
    b = profile_cell("b", "yy", "d1", "Latin", [["abcdef"]], [["NOUN"]], [["root"]], tok)
    assert a.fertility == pytest.approx(3 / 2) and b.fertility == pytest.approx(3 / 1)
    m = shift_matrices([a, b])
    assert m["fertility_log_ratio"][0, 1] == pytest.approx(math.log(2))
    assert m["length_diff"][0, 1] == pytest.approx(1.0) and m["script_differs"][0, 1] == 0.0
    z = profile_cell("z", "zz", "d2", "Latin", [["azb"]], [["X"]], [["root"]], tok)  # "az" -> 2 byte pieces
    assert z.unknown_char_rate == pytest.approx(2 / 3)
    assert standardised_ttr(["a", "b", "a", "b"], window=2) == pytest.approx(1.0)
    assert standardised_ttr(["a", "a", "b", "b"], window=2) == pytest.approx(0.5)


def _random_distance(n, rng):
    pts = rng.normal(size=(n, 2))
    return np.linalg.norm(pts[:, None] - pts[None], axis=-1), pts


def test_mantel_statistic_and_p_against_an_exact_permutation_count():
    rng = np.random.default_rng(3)
    x, pts = _random_distance(6, rng)
    y = x + rng.normal(scale=0.3, size=x.shape)
    y = (y + y.T) / 2
    np.fill_diagonal(y, 0)
    res = mantel(x, y, permutations=4999, seed=0)
    assert res.r == pytest.approx(np.corrcoef(upper(x), upper(y))[0, 1])
    exact = [np.corrcoef(upper(x[np.ix_(p, p)]), upper(y))[0, 1] for p in map(list, itertools.permutations(range(6)))]
    p_exact = np.mean([r >= res.r - 1e-12 for r in exact])  # 720 permutations, identity included
    assert abs(res.p - p_exact) < 0.02


def test_partial_mantel_removes_a_shared_factor():
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2], 4)
    z = (groups[:, None] != groups[None]).astype(float)  # e.g. "languages differ"
    noise_a = rng.normal(scale=0.05, size=(12, 12))
    noise_b = rng.normal(scale=0.05, size=(12, 12))
    x = z + (noise_a + noise_a.T)
    y = z + (noise_b + noise_b.T)
    for m in (x, y):
        np.fill_diagonal(m, 0)
    assert mantel(x, y, permutations=199).r > 0.9  # related only through z
    part = partial_mantel(x, y, z, permutations=199)
    assert abs(part.r) < 0.3 and part.p > 0.05


def test_spearman_bootstrap():
    a = np.arange(20.0)
    s = spearman_bootstrap(a, a**3, resamples=200)
    assert s.rho == pytest.approx(1.0) and s.ci_low > 0.9 and s.n == 20
    with pytest.raises(ValueError, match="at least 3"):
        spearman_bootstrap([1, 2], [2, 1])


def test_typology_reads_lang2vec_data_when_installed():
    from metasparse.diagnostics.typology import features_file, typology_matrix

    m, note = typology_matrix(["fi", "et", "zh"])
    if features_file() is None:
        assert m is None and "not installed" in note
        pytest.skip("lang2vec's data is not installed (pip install -e '.[typology]'): the distances are untested")
    assert m.shape == (3, 3) and np.allclose(m, m.T) and np.allclose(np.diag(m), 0)
    assert m[0, 1] < m[0, 2]  # Finnish is syntactically closer to Estonian than to Chinese


@pytest.mark.slow
def test_diagnose_cli_on_the_smoke_run(smoke_analysis):
    out = smoke_analysis / "diagnostics"
    with (out / "relations.csv").open() as f:
        rel = list(csv.DictReader(f))
    tests = {(r["test"], r["shift"], r["pathway"], r["controls"]) for r in rel}
    assert ("mantel", "word_js", "pattern_js", "") in tests
    assert ("partial_mantel", "language_differs", "pattern_js", "domain_differs") in tests
    assert all(0 < float(r["p"]) <= 1 for r in rel)
    for name in (
        "heatmap_pathways.png",
        "heatmap_shift_word_js.png",
        "scatter_shift_vs_pathways.png",
        "usage_by_domain.png",
    ):
        assert (out / name).stat().st_size > 1000
    md = (out / "diagnostics.md").read_text()
    assert "## Mantel tests" in md and "partial r =" in md


@pytest.mark.slow
def test_transfer_notebook_executes_on_the_smoke_run(smoke_analysis, tmp_path):
    import os

    nb = Path(__file__).resolve().parent.parent / "notebooks" / "transfer_analysis.ipynb"
    env = {**os.environ, "METASPARSE_RUN_DIR": str(smoke_analysis)}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake", str(nb)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "1 passed" in res.stdout


def test_notebook_pair_is_in_sync():
    import jupytext

    root = Path(__file__).resolve().parent.parent / "notebooks"
    py = jupytext.read(root / "transfer_analysis.py")
    ipynb = jupytext.read(root / "transfer_analysis.ipynb")
    assert [c.source for c in py.cells] == [c.source for c in ipynb.cells]


@pytest.mark.slow
def test_monitor_flags_another_script_and_passes_in_distribution_text(smoke_run, ud_root, tmp_path):
    import json

    import conllu

    def sentences(path, n):
        with path.open(encoding="utf-8") as f:
            return [
                " ".join(t["form"] for t in s if isinstance(t["id"], int))
                for s in itertools.islice(conllu.parse_incr(f), n)
            ]

    en = next((ud_root / "UD_English-GUM").glob("*-dev.conllu"))
    zh = next(ud_root.glob("UD_Chinese*/*-test.conllu"))
    (tmp_path / "en.txt").write_text("\n".join(sentences(en, 100)), encoding="utf-8")
    (tmp_path / "zh.txt").write_text("\n".join(sentences(zh, 100)), encoding="utf-8")
    results = {}
    for name in ("en", "zh"):
        out = tmp_path / f"{name}.json"
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "metasparse.monitor",
                f"run_dir={smoke_run}",
                f"input={tmp_path / (name + '.txt')}",
                f"out={out}",
                f"hydra.run.dir={tmp_path / ('hydra_' + name)}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-4000:]
        results[name] = json.loads(out.read_text())
    assert results["en"]["drift"] is False, results["en"]["drifted"]
    assert results["zh"]["drift"] is True
    assert "unknown_char_rise" in results["zh"]["drifted"] and "adapt" in results["zh"]["recommendation"]
    assert (smoke_run / "monitor_reference.json").exists()  # the reference is computed once and kept


def test_monitor_thresholds_by_hand():
    from metasparse.diagnostics.drift import auto_threshold

    assert auto_threshold("flops_shift", 0.1, 1.25) == pytest.approx(0.125)
    assert auto_threshold("word_js", 0.2, 1.25) == pytest.approx(0.25)
    assert auto_threshold("word_js", 0.9, 1.25) == pytest.approx(0.95)  # 1.125 could never be reached


def _hand_stats(seed: int, n: int):
    import random
    from collections import Counter

    from metasparse.diagnostics.sentence_stats import SentenceStats

    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(200)]
    out = []
    for _ in range(n):
        words = [rng.choice(vocab[: rng.randint(20, 200)]) for _ in range(rng.randint(3, 20))]
        out.append(
            SentenceStats(
                Counter(words),
                Counter(len(w) for w in words),
                len(words),
                2 * len(words),
                3 * len(words),
                rng.randint(0, 2),
                Counter(rng.randint(0, 16) for _ in words),
                rng.uniform(0.3, 0.7),
                1.0,
                rng.uniform(0.5, 1.0),
                rng.uniform(0.0, 0.4),
            )
        )
    return out


def test_aggregate_sums_sentences_and_the_noise_floor_shrinks_with_the_sample():
    from metasparse.diagnostics.drift import MEASURES, compare
    from metasparse.diagnostics.sentence_stats import aggregate, noise_floor

    stats = _hand_stats(0, 400)
    obs = aggregate(stats[:2])
    assert obs["words"] == stats[0].words + stats[1].words and obs["sentences"] == 2
    assert obs["fertility"] == pytest.approx(2.0) and obs["mean_length"] == pytest.approx(
        (stats[0].n_words + stats[1].n_words) / 2
    )
    assert obs["flops_fraction"] == pytest.approx((stats[0].flops + stats[1].flops) / 2)
    ref = aggregate(stats)
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in compare(ref, ref).values())
    small = noise_floor(stats, ref, compare, 20, resamples=50, quantile=0.99)
    large = noise_floor(stats, ref, compare, 400, resamples=50, quantile=0.99)
    assert set(small) == set(MEASURES)
    for m in ("word_js", "predicted_upos_js", "flops_shift", "uncertainty_rise"):
        assert small[m] > large[m] > -1  # sampling alone moves a 20-sentence sample much further
    assert noise_floor(stats, ref, compare, 20, resamples=50, quantile=0.99, seed=3) == noise_floor(
        stats, ref, compare, 20, resamples=50, quantile=0.99, seed=3
    )
