"""The UDPipe 1 peer: its training input, per-language cached taggers, scores in the shared tables, and the
held-out languages it cannot cover."""

from __future__ import annotations

import conllu
import datasets
import numpy as np
import pytest

pytest.importorskip("ufal.udpipe")

from metasparse.baselines import udpipe as peer  # noqa: E402

TAGS = {"ka": "NOUN", "ve": "VERB", "de": "DET", "ad": "ADJ"}


def _sentences(n: int, seed: int) -> list[dict]:
    """A synthetic language whose tag is the word's prefix: a tagger must learn it from the forms."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        prefixes = rng.choice(list(TAGS), size=int(rng.integers(3, 9))).tolist()
        words = [p + "".join(rng.choice(list("mnoprstu"), size=3)) for p in prefixes]
        out.append({"words": words, "upos": [TAGS[p] for p in prefixes], "lang": "xx"})
    return out


def test_the_training_conllu_carries_forms_and_tags():
    text = peer.conllu_text([["Le", "chat"], ["Dort"]], [["DET", "NOUN"], ["VERB"]])
    parsed = conllu.parse(text)
    assert [[(t["id"], t["form"], t["upos"]) for t in s] for s in parsed] == [
        [(1, "Le", "DET"), (2, "chat", "NOUN")],
        [(1, "Dort", "VERB")],
    ]


def test_forms_longer_than_udpipe_allows_are_cut_at_a_character_boundary():
    long = "é" * 200  # 400 bytes: UDPipe's trainer refuses forms of about 255 bytes and more
    cut = peer.udpipe_form(long)
    assert len(cut.encode("utf-8")) <= peer.MAX_FORM_BYTES and long.startswith(cut) and cut
    assert peer.udpipe_form("chat") == "chat"
    peer.train_tagger([["le", long, "chat"]] * 3, [["DET", "X", "NOUN"]] * 3, iterations=1)  # trains


def test_taggers_train_once_per_language_and_score_in_the_shared_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("METASPARSE_CACHE_DIR", str(tmp_path))
    rows = _sentences(200, 0) + _sentences(40, 1) + [{"words": ["x"], "upos": ["X"], "lang": "yy"}]
    ds = datasets.Dataset.from_list(rows)
    models = peer.train_taggers(ds, {"xx": list(range(200)), "yy": []}, iterations=2)
    assert list(models) == ["xx"] and models["xx"].exists()  # no training sentences: no tagger
    # two languages at once, in worker processes: the same files as one at a time
    both = {"xx": list(range(200)), "zz": list(range(100))}
    parallel = peer.train_taggers(ds, both, iterations=2, workers=2)
    assert parallel["xx"] == models["xx"] and parallel["zz"].exists()
    assert parallel["zz"].read_bytes() == peer.train_tagger(
        list(ds.select(range(100))["words"]), list(ds.select(range(100))["upos"]), iterations=2
    )

    def refuse(*a, **k):
        raise AssertionError("retrained a cached tagger")

    monkeypatch.setattr(peer, "train_tagger", refuse)
    assert peer.train_taggers(ds, {"xx": list(range(200))}, iterations=2) == models  # read from the cache

    test = list(range(200, 241))
    cells = ["xx/d/T"] * 40 + ["yy/d/U"]
    s = peer.udpipe_scores(ds, test, cells, peer.load_taggers(models)).summary()
    gold_words = sum(len(rows[i]["words"]) for i in range(200, 240))
    assert s["words"] == gold_words and s["sentences"] == 40
    assert s["uncovered"] == {"yy/d/U": 1}  # the untrained language is not guessed
    assert s["accuracy"]["upos"] > 0.9 and s["by_lang"] == {"xx": {"upos": s["accuracy"]["upos"]}}
    tagger = peer.Tagger(models["xx"])
    tagged = {i: tagger.tag(rows[i]["words"]) for i in range(200, 240)}
    hand = sum(p == g for i, pred in tagged.items() for p, g in zip(pred, rows[i]["upos"], strict=True))
    assert s["accuracy"]["upos"] == pytest.approx(hand / gold_words, abs=1e-12)
    assert s["words_per_s"] > 0


def test_evaluate_takes_udpipe_as_a_peer_and_names_it_in_errors():
    from metasparse.config import EvaluateConfig
    from metasparse.errors import ConfigValueError

    cfg = EvaluateConfig(run_dir="r", methods=["meta", "udpipe"])
    assert cfg.method_names() == ["dense", "meta"] and cfg.peer_names() == ["udpipe"]
    assert EvaluateConfig(run_dir="r", methods=["all"]).peer_names() == ["udpipe"]
    with pytest.raises(ConfigValueError, match="udpipe"):
        EvaluateConfig(run_dir="r", methods=["udpip"])
