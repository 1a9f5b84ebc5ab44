"""Bad CoNLL-U input gives `file:line: reason`, from the reader and from `python -m metasparse.data check`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import write

from metasparse.data.ud import load_folder, read_conllu
from metasparse.errors import ConlluFormatError

GOOD = """# sent_id = s1
# text = Ei se mitään.
1-2\tEise\t_\t_\t_\t_\t_\t_\t_\t_
1\tEi\tei\tAUX\t_\t_\t3\taux\t_\t_
2\tse\tse\tPRON\t_\t_\t3\tnsubj\t_\t_
2.1\tolla\tolla\tVERB\t_\t_\t_\t_\t0:root\t_
3\tmitään\tmikään\tPRON\t_\t_\t0\troot\t_\tSpaceAfter=No
4\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_

# sent_id = s2
1\tHyvä\thyvä\tADJ\t_\t_\t0\troot\t_\t_

"""

BAD = {
    "columns": (
        GOOD.replace("2\tse\tse\tPRON\t_\t_\t3\tnsubj\t_\t_", "2\tse\tse\tPRON\t_\t_\t3\tnsubj\t_"),
        5,
        "expected 10 tab-separated columns, found 9",
    ),
    "id": (GOOD.replace("4\t.\t.", "x4\t.\t."), 8, "ID 'x4' is not an integer"),
    "upos": (GOOD.replace("ADJ", "ADJECTIVE"), 11, "unknown UPOS 'ADJECTIVE'"),
    "deprel": (GOOD.replace("nsubj", "subject:pass"), 5, "unknown DEPREL base 'subject'"),
    "empty": (GOOD + "# sent_id = s3\n# text = nothing\n\n", 13, "empty sentence"),
}


def test_good_file_reads_syntactic_words_only(tmp_path):
    rows = read_conllu(write(tmp_path / "x.conllu", GOOD), treebank="T", lang="fi", domain_of=lambda *_: "news")
    assert [r["sent_id"] for r in rows] == ["s1", "s2"]
    assert rows[0]["words"] == ["Ei", "se", "mitään", "."]  # no range token "Eise", no empty node 2.1
    assert rows[0]["upos"] == ["AUX", "PRON", "PRON", "PUNCT"]
    assert rows[0]["deprel"] == ["aux", "nsubj", "root", "punct"]
    assert rows[0]["n_words"] == 4 and rows[0]["domain"] == "news"


def test_deprel_subtypes_map_to_their_base(tmp_path):
    rows = read_conllu(
        write(tmp_path / "x.conllu", GOOD.replace("\tnsubj\t", "\tnsubj:pass\t")),
        treebank="T",
        lang="fi",
        domain_of=lambda *_: "news",
    )
    assert rows[0]["deprel"][1] == "nsubj"


@pytest.mark.parametrize("kind", sorted(BAD))
def test_reader_names_file_line_and_reason(tmp_path, kind):
    text, line, reason = BAD[kind]
    path = write(tmp_path / f"{kind}.conllu", text)
    with pytest.raises(ConlluFormatError) as err:
        read_conllu(path, treebank="T", lang="fi", domain_of=lambda *_: "news")
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert reason in str(err.value)


def test_out_of_sequence_id(tmp_path):
    path = write(tmp_path / "seq.conllu", GOOD.replace("3\tmitään", "5\tmitään"))
    with pytest.raises(ConlluFormatError, match=r"seq.conllu:7: word ID 5 out of sequence \(expected 3\)"):
        read_conllu(path, treebank="T", lang="fi", domain_of=lambda *_: "news")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.conllu"
    path.write_bytes(GOOD.replace("mitään", "mit\xe4\xe4n").encode("latin-1"))
    with pytest.raises(ConlluFormatError, match=r"latin1.conllu:2: not valid UTF-8"):
        read_conllu(path, treebank="T", lang="fi", domain_of=lambda *_: "news")


def _check(*paths):
    return subprocess.run(
        [sys.executable, "-m", "metasparse.data", "check", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # a subprocess
def test_check_cli_reports_every_bad_file_and_fails(tmp_path):
    for kind, (text, _, _) in BAD.items():
        write(tmp_path / "bad" / f"{kind}.conllu", text)
    res = _check(tmp_path / "bad")
    assert res.returncode == 1
    for kind, (_, line, reason) in BAD.items():
        assert f"{tmp_path / 'bad' / kind}.conllu:{line}: {reason}" in res.stderr
    assert "5 file(s) checked, 5 error(s)" in res.stdout


@pytest.mark.slow  # a subprocess
def test_check_cli_passes_good_file_and_missing_path_is_an_error(tmp_path):
    res = _check(write(tmp_path / "good.conllu", GOOD))
    assert res.returncode == 0, res.stderr
    assert "1 file(s) checked, 0 error(s)" in res.stdout
    res = _check(tmp_path / "nope")
    assert res.returncode == 2 and "no such file or folder" in res.stderr


@pytest.mark.slow  # a subprocess
def test_check_cli_on_all_shared_data(ud_root):
    res = _check(ud_root)
    assert res.returncode == 0, res.stderr
    assert "38 file(s) checked, 0 error(s)" in res.stdout


def test_load_folder_outside_registry(tmp_path):
    write(tmp_path / "UD_Test-X" / "xx_x-ud-test.conllu", GOOD)
    ds = load_folder(tmp_path / "UD_Test-X", lang="xx", domain="legal")
    assert ds.num_rows == 2
    assert set(ds["domain"]) == {"legal"} and set(ds["treebank"]) == {"UD_Test-X"}
    assert set(ds["ud_split"]) == {"test"}
