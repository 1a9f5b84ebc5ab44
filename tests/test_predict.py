"""predict: plain text or CoNLL-U in, CoNLL-U out with the gated model's UPOS and DEPREL, every other
column kept; bad input names the byte or line before the model loads; adapted targets load by name."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import conllu
import pytest
from cli_utils import run_module

from metasparse.errors import ConlluFormatError, InputError
from metasparse.inference.documents import MAX_WORDS, read_document, write_conllu
from metasparse.inference.tagger import decision_summary
from metasparse.model.patterns import Pattern

CONLLU = """# sent_id = a
# text = Dogs bark.
1\tDogs\tdog\tNOUN\tNNS\tNumber=Plur\t2\tnsubj\t_\t_
2\tbark\tbark\tVERB\tVBP\t_\t0\troot\t_\tSpaceAfter=No
3\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_

# sent_id = b
# text = It's fine
1-2\tIt's\t_\t_\t_\t_\t_\t_\t_\t_
1\tIt\tit\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2\t's\tbe\tAUX\tVBZ\t_\t3\tcop\t_\t_
3\tfine\tfine\tADJ\tJJ\t_\t0\troot\t_\t_

"""


def test_plain_text_sentences_keep_their_line_numbers(tmp_path):
    p = tmp_path / "in.txt"
    p.write_text("Dogs bark .\n\n   \nIt is  fine\n", encoding="utf-8")
    doc = read_document(p)
    assert doc.sentences == [["Dogs", "bark", "."], ["It", "is", "fine"]] and doc.lines == [1, 4]
    out = write_conllu(doc, {"upos": [["NOUN", "VERB", "PUNCT"], ["PRON", "AUX", "ADJ"]]}, tmp_path / "o.conllu")
    sents = conllu.parse(out.read_text(encoding="utf-8"))
    assert [t["upos"] for t in sents[1]] == ["PRON", "AUX", "ADJ"] and sents[1].metadata["source_line"] == "4"
    assert [t["deprel"] for t in sents[0]] == ["_"] * 3  # not predicted: left "_"


def test_conllu_input_keeps_every_column_but_the_predicted_ones(tmp_path):
    p = tmp_path / "in.conllu"
    p.write_text(CONLLU, encoding="utf-8")
    doc = read_document(p)
    assert doc.sentences == [["Dogs", "bark", "."], ["It", "'s", "fine"]] and doc.lines == [1, 7]
    labels = {"upos": [["X", "X", "X"], ["X", "X", "X"]], "deprel": [["dep"] * 3, ["dep"] * 3]}
    out = conllu.parse(write_conllu(doc, labels, tmp_path / "o.conllu").read_text(encoding="utf-8"))
    gold = conllu.parse(CONLLU)
    for g, o in zip(gold, out, strict=True):
        assert g.metadata == o.metadata and len(g) == len(o)
        for a, b in zip(g, o, strict=True):
            keep = ("id", "form", "lemma", "xpos", "feats", "head", "misc")
            assert {k: a[k] for k in keep} == {k: b[k] for k in keep}
            if isinstance(a["id"], int):
                assert (b["upos"], b["deprel"]) == ("X", "dep")
            else:  # the multiword token's range line is untouched
                assert (b["upos"], b["deprel"]) == (a["upos"], a["deprel"]) == ("_", "_")


def test_bad_input_names_the_byte_or_line(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("ok\nZürich\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.txt: not valid UTF-8 at byte 4 \(line 2\)"):
        read_document(p)
    long = tmp_path / "para.txt"
    long.write_text("fine\n" + " ".join(["w"] * (MAX_WORDS + 1)) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"para\.txt:2: {MAX_WORDS + 1} words in one sentence"):
        read_document(long)
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(InputError, match="no sentence in it"):
        read_document(tmp_path / "empty.txt")
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tDogs\n\n", encoding="utf-8")
    with pytest.raises(ConlluFormatError, match=r"bad\.conllu:1:"):
        read_document(bad)


def test_decision_summary_shares_per_layer():
    codebook = [Pattern(0, 0), Pattern(2, 2), Pattern(4, 4)]
    summary = decision_summary([[1, 2], [1, 0], [2, 0], [1, 0]], codebook)
    assert summary[0]["patterns"] == [{"pattern": "2h 2g", "share": 0.75}, {"pattern": "4h 4g", "share": 0.25}]
    assert summary[1]["patterns"][0] == {"pattern": "skip", "share": 0.75}


@pytest.mark.slow
def test_predict_cli_tags_like_the_model_in_process(smoke_run, ud_root, tmp_path):
    from metasparse.inference.tagger import tag
    from metasparse.meta.load import load_run
    from metasparse.model.corpus import EncodedCorpus

    src = next((ud_root / "UD_English-GUM").glob("*-dev.conllu"))
    with src.open(encoding="utf-8") as f:
        sents = list(itertools.islice(conllu.parse_incr(f), 40))
    inp = tmp_path / "in.conllu"
    inp.write_text("".join(s.serialize() for s in sents), encoding="utf-8")
    out = tmp_path / "out.conllu"
    res = run_module(
        "metasparse.predict",
        f"run_dir={smoke_run}",
        f"input={inp}",
        f"out={out}",
        "batch_size=4",
        f"hydra.run.dir={tmp_path / 'h'}",
        env=dict(__import__("os").environ),
    )
    assert "tagged 40 sentences" in res.stdout and "words/s" in res.stdout and "layer 0:" in res.stdout
    summary = json.loads((tmp_path / "h" / "predict.json").read_text())
    assert summary["sentences"] == 40 and 0 < summary["flops_fraction"] <= 1.0
    written = conllu.parse(out.read_text(encoding="utf-8"))

    loaded = load_run(smoke_run)
    words = [[t["form"] for t in s if isinstance(t["id"], int)] for s in sents]
    corpus = EncodedCorpus.unlabelled(words, loaded.bundle.tokenizer, loaded.system.backbone.spec.suffix_buckets)
    tagged = tag(loaded.system.eval().method(), corpus, ["upos", "deprel"], 4)
    upos = loaded.bundle.tasks["upos"].labels
    for s, ids in zip(written, tagged.predictions["upos"], strict=True):
        assert [t["upos"] for t in s if isinstance(t["id"], int)] == [upos[i] for i in ids]
    assert summary["words"] == tagged.words == sum(map(len, words))

    saved = sorted(p.name for p in (smoke_run / "adapted").iterdir())
    run_module(
        "metasparse.predict",
        f"run_dir={smoke_run}",
        f"target={saved[0]}",
        f"input={inp}",
        f"out={tmp_path / 'adapted.conllu'}",
        f"hydra.run.dir={tmp_path / 'h2'}",
        env=dict(__import__("os").environ),
    )
    assert len(conllu.parse((tmp_path / "adapted.conllu").read_text(encoding="utf-8"))) == 40
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "metasparse.predict",
            f"run_dir={smoke_run}",
            "target=nope",
            f"input={inp}",
            f"out={tmp_path / 'x.conllu'}",
            f"hydra.run.dir={tmp_path / 'h3'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and res.stderr.startswith("error: target=nope: none under")
    assert saved[0] in res.stderr and not (tmp_path / "x.conllu").exists()
