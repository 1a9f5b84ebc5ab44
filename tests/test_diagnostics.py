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

    def subwords_batch(self, words):
        return [self.subwords(w) for w in words]

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


def test_vectorised_mantel_p_values_equal_the_one_permutation_at_a_time_loop():
    """Same generator, same permutations: the chunked computation counts exactly what a plain loop counts."""
    from metasparse.diagnostics.relations import _residual, partial_mantel

    rng = np.random.default_rng(5)
    x, _ = _random_distance(9, rng)
    y, _ = _random_distance(9, rng)
    z = (np.arange(9)[:, None] % 3 != np.arange(9)[None] % 3).astype(float)
    y = (y + 0.5 * x + 0.3 * z) / 2

    def loop(partial: bool) -> float:
        g = np.random.default_rng(7)
        f = (lambda v: _residual(v, upper(z))) if partial else (lambda v: v)
        yv = f(upper(y))
        r = np.corrcoef(f(upper(x)), yv)[0, 1]
        hits = 0
        for _ in range(1200):  # more than one chunk of 500
            p = g.permutation(9)
            hits += np.corrcoef(f(upper(x[np.ix_(p, p)])), yv)[0, 1] >= r - 1e-12
        return (hits + 1) / 1201

    assert mantel(x, y, permutations=1200, seed=7).p == loop(False)
    assert partial_mantel(x, y, z, permutations=1200, seed=7).p == loop(True)
    flat = np.ones((5, 5)) - np.eye(5)  # every pair equally far: no correlation is defined, nor a p
    assert math.isnan(mantel(flat, _random_distance(5, rng)[0], permutations=99).p)


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
    # one family, adjusted: never below the raw p, significance read from the adjusted one
    for r in rel:
        if r["p_adjusted"] != "nan":
            assert float(r["p_adjusted"]) >= float(r["p"]) - 1e-12
            assert (r["significant"] == "True") == (float(r["p_adjusted"]) < 0.05)
    with (out / "spearman.csv").open() as f:
        sp = {r["relation"]: r for r in csv.DictReader(f)}
    gain = sp["target word_js_to_sources vs adaptation gain"]  # at most 7 legal target cells: under min_cells=10
    assert int(gain["n"]) < 10 and gain["significant"] == "False"
    assert gain["status"] == f"too few cells to test ({gain['n']} < 10)" and gain["status"] in md
    assert "holm-adjusted" in md
    # 49 permutations (a fast test): the smallest p, 0.02, cannot survive the adjustment, and md says so
    assert "with 49 permutations the smallest Mantel p is 0.02" in md and "Raise `permutations`" in md
    # which words get compute: every UPOS tag of the cells' languages, shares of the dense FLOPs
    from metasparse.data.labels import UPOS_TAGS

    with (out / "compute_by_tag.csv").open() as f:
        tags = list(csv.DictReader(f))
    assert tags and {r["tag"] for r in tags} <= set(UPOS_TAGS) and "NOUN" in {r["tag"] for r in tags}
    assert all(0 < float(r["compute"]) <= 1 and int(r["words"]) > 0 for r in tags)
    cells = list(csv.DictReader((out / "cells.csv").open()))
    assert {r["lang"] for r in tags} == {r["lang"] for r in cells}
    assert (out / "compute_by_tag.png").stat().st_size > 1000 and "## Which words get compute" in md
    # which units each saved adaptation changed: one row per target, layer and unit, shares summing to 1
    with (out / "adapted_units.csv").open() as f:
        units = list(csv.DictReader(f))
    saved = {p.name for p in (smoke_analysis / "adapted").iterdir()}
    assert len({r["target"] for r in units}) == len(saved) > 0
    for target in {r["target"] for r in units}:
        mine = [r for r in units if r["target"] == target]
        assert sum(float(r["share"]) for r in mine) == pytest.approx(1.0)
        assert {r["kind"] for r in mine} == {"head", "ffn"}
    assert "## Units each adaptation changed most" in md


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


def test_holm_and_benjamini_hochberg_against_hand_computed_values():
    from metasparse.diagnostics.multiple import benjamini_hochberg, holm

    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted p * 4 / rank: 0.02, 0.02, 0.04, 0.04; from the largest down, cumulative minimum
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    nan = float("nan")
    got = holm([0.01, nan, 0.04])  # NaN is no test: a family of 2
    assert got[0] == pytest.approx(0.02) and got[2] == pytest.approx(0.04) and got[1] != got[1]
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_a_relation_over_five_cells_is_too_few_and_stays_out_of_the_family():
    from metasparse.diagnostics.multiple import judge_family

    rows = [
        {"relation": "a", "p": 0.001, "n": 5, "unit": "target cells"},
        {"relation": "b", "p": 0.02, "n": 40, "unit": "cells"},
        {"relation": "c", "p": 0.03, "n": 40, "unit": "cells"},
        {"relation": "d", "p": 0.0001, "n": 3000, "unit": "sentences"},
    ]
    judge_family(rows, p_key="p", n_key="n", method="holm", alpha=0.05, min_cells=10)
    a, b, c, d = rows
    assert (
        a["status"] == "too few cells to test (5 < 10)" and not a["significant"] and a["p_adjusted"] != a["p_adjusted"]
    )
    assert not a["tested"] and b["tested"] and c["tested"] and d["tested"]
    assert b["p_adjusted"] == pytest.approx(0.04) and b["significant"]  # family of 3: 0.02 * 2 after d
    assert c["p_adjusted"] == pytest.approx(0.04) and c["significant"]
    assert d["p_adjusted"] == pytest.approx(0.0003) and d["significant"]  # sentences are never too few
    judge_family(rows, p_key="p", n_key="n", method="holm", alpha=0.01, min_cells=10)
    assert not b["significant"] and b["status"] == "not significant"


def _run_summary(r: float, p: float, p_adj: float, n: int = 20) -> dict:
    """One run's rows as judge_family leaves them (a relation over fewer than 10 cells is not tested)."""
    tested = n >= 10
    sig = tested and p_adj < 0.05
    row = {
        "test": "mantel",
        "shift": "word_js",
        "pathway": "pattern_js",
        "controls": "",
        "r": r,
        "p": p,
        "p_adjusted": p_adj,
        "tested": tested,
        "significant": sig,
        "status": "significant" if sig else "not significant",
        "n": n,
    }
    sp = {
        "relation": "x vs y",
        "rho": r,
        "p": p,
        "p_adjusted": p_adj,
        "tested": tested,
        "significant": sig,
        "status": "too few cells to test (5 < 10)" if n < 10 else ("significant" if sig else "not significant"),
        "n": n,
    }
    return {"relations": [row], "spearman": [sp]}


def test_the_pooled_interval_of_a_correlation_stays_within_minus_one_and_one():
    from metasparse.diagnostics.replication import pool

    far = [_run_summary(0.9, 0.001, 0.01), _run_summary(0.1, 0.001, 0.01)]  # a t interval on r: -4.6 to 5.6
    (row,) = pool(far, "relations")
    assert -1.0 <= row["r_ci_low"] < 0.1 and 0.9 < row["r_ci_high"] <= 1.0
    perfect = [_run_summary(1.0, 0.001, 0.01), _run_summary(1.0, 0.001, 0.01), _run_summary(0.98, 0.001, 0.01)]
    (row,) = pool(perfect, "relations")
    assert 0.5 < row["r_ci_low"] < 0.98 and 0.99 < row["r_ci_high"] <= 1.0  # finite at r = 1


def test_a_relation_that_flips_sign_between_runs_does_not_replicate():
    from metasparse.diagnostics.replication import pool, replication_report

    flips = [_run_summary(0.9, 0.01, 0.03), _run_summary(-0.9, 0.01, 0.03)]
    (row,) = pool(flips, "relations")
    assert not row["replicated"] and row["status"] == "not replicated: the sign differs between runs"
    assert row["r_mean"] == pytest.approx(0.0) and row["r_per_run"] == "0.900 -0.900"
    assert row["p_combined"] == pytest.approx(stats_fisher([0.01, 0.01]))

    holds = [_run_summary(0.4, 0.001, 0.01), _run_summary(0.5, 0.002, 0.02), _run_summary(0.45, 0.001, 0.01)]
    (row,) = pool(holds, "relations")
    assert row["replicated"] and row["status"] == "replicated in all 3 runs"
    assert row["r_ci_low"] < 0.45 < row["r_ci_high"]
    weak = [_run_summary(0.4, 0.001, 0.01), _run_summary(0.5, 0.04, 0.2)]
    assert pool(weak, "relations")[0]["status"] == "not replicated: significant in 1 of 2 runs"
    small = [_run_summary(0.9, 0.001, 0.01, n=5), _run_summary(0.9, 0.001, 0.01, n=5)]
    assert pool(small, "spearman")[0]["status"] == "too few cells to test"
    md = replication_report(
        ["a", "b", "c"], pool(holds, "relations"), pool(small, "spearman"), {"method": "holm", "alpha": 0.05}
    )
    findings, rest = md.split("## Not replicated")
    assert "mantel word_js vs pattern_js" in findings and "x vs y" in rest and "x vs y" not in findings


def stats_fisher(p):
    from scipy import stats

    return stats.combine_pvalues(p, method="fisher")[1]


@pytest.mark.slow
def test_diagnose_pools_two_smoke_runs_of_different_seeds(smoke_run, tmp_path):
    import os

    from cli_utils import run_module

    env = dict(os.environ)
    second = tmp_path / "seed1"
    run_module(
        "metasparse.meta_train",
        "experiment=smoke",
        "+domain=legal",
        "seed=1",
        "logger=none",
        # a shorter second run (its own backbone all the same): pooling needs the same cells, not equal effort
        "pretrain.epochs=0.1",
        "meta.steps=3",
        "adapt.steps=1",
        f"hydra.run.dir={second}",
        env=env,
    )
    out = tmp_path / "pooled"
    run_module(
        "metasparse.diagnose",
        f"run_dirs=[{smoke_run},{second}]",
        "permutations=49",
        "bootstrap=50",
        f"hydra.run.dir={out}",
        env=env,
    )

    def rows(path):
        with path.open() as f:
            return list(csv.DictReader(f))

    pooled = rows(out / "relations.csv")
    per_run = [
        {(r["test"], r["shift"], r["pathway"], r["controls"]): r for r in rows(out / f"run{i}" / "relations.csv")}
        for i in (0, 1)
    ]
    assert len(pooled) == len(per_run[0]) > 10
    for p in pooled:
        key = (p["test"], p["shift"], p["pathway"], p["controls"])
        a, b = per_run[0][key], per_run[1][key]
        assert p["r_per_run"] == f"{float(a['r']):.3f} {float(b['r']):.3f}"
        same_sign = (float(a["r"]) > 0) == (float(b["r"]) > 0)
        expect = a["significant"] == b["significant"] == "True" and same_sign
        assert (p["replicated"] == "True") == expect, key
    md = (out / "diagnostics.md").read_text()
    assert "## Findings (replicated in every run)" in md and "## Not replicated" in md
    n_found = sum(p["replicated"] == "True" for p in pooled)
    assert (
        md.split("## Not replicated")[0].count("- mantel") + md.split("## Not replicated")[0].count("- partial_mantel")
        == n_found
    )
    assert ("mantel", "word_js", "token_js", "") in per_run[0]  # the per-word compute distance is pooled too
    assert "## Which words get compute, per run" in md and "- run 1: most" in md


def test_usage_figure_draws_heads_and_groups_apart_only_when_the_codebook_can(tmp_path):
    from model_utils import EVERY_UNIT, tiny_model

    from metasparse.diagnostics.figures import usage_by_domain
    from metasparse.diagnostics.report import heads_and_groups_apart
    from metasparse.model.patterns import PatternSpec

    assert heads_and_groups_apart(tiny_model(EVERY_UNIT))  # (0.5 heads, 1.0 groups) is among them
    together = [PatternSpec(0.0, 0.0), PatternSpec(0.5, 0.5), PatternSpec(1.0, 1.0)]
    assert not heads_and_groups_apart(tiny_model(together))
    usage = {"legal": np.array([0.5, 0.6, 0.5, 0.6]), "news": np.array([0.4, 0.7, 0.4, 0.7])}
    for apart in (True, False):
        usage_by_domain(usage, 2, tmp_path / f"{apart}.png", apart)
    from PIL import Image

    wide, narrow = (Image.open(tmp_path / f"{a}.png").size[0] for a in (True, False))
    assert wide > narrow  # one panel instead of two identical ones


def test_pairwise_js_with_keys_ranked_once_equals_js_divergence():
    """shift_matrices ranks each measure's keys once for all pairs: same keys, same order, same values as
    js_divergence on each pair (word, int subword and mixed tables; one-key tables)."""
    import random

    from metasparse.diagnostics.shift import PairwiseJS, js_divergence

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(400)] + list(range(120))
    tables = [Counter({k: rng.randrange(1, 30) for k in rng.sample(vocab, rng.randrange(1, 200))}) for _ in range(12)]
    tables += [Counter({"x": 1}), Counter({"x": 2, 5: 1})]
    pairwise = PairwiseJS(tables)
    for i in range(len(tables)):
        for j in range(i + 1, len(tables)):
            assert pairwise(i, j) == js_divergence(tables[i], tables[j])
