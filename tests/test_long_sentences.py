"""Any sentence length: past the learned position table positions wrap around; under it nothing changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import conllu
import pytest
import torch
from model_utils import random_batch, tiny_model

from metasparse.model.encoder import EncoderSpec, GatedEncoder


def _short_limit_model() -> GatedEncoder:
    """The tiny model with only 8 learned positions, so 'long' is 9 words and more."""
    base = tiny_model()
    spec = EncoderSpec(**{**base.spec.__dict__, "max_positions": 8})
    model = GatedEncoder(spec).eval()
    state = {k: v for k, v in base.state_dict().items() if k != "pos_emb.weight"}
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        model.pos_emb.weight.copy_(base.pos_emb.weight[:8])
    return model


def test_sentences_under_the_limit_are_unchanged_and_longer_ones_get_every_word_labelled():
    model = _short_limit_model()
    mixed = random_batch([5, 30, 8, 1])
    with torch.no_grad():
        out = model(mixed)
        for b, n in enumerate([5, 30, 8, 1]):
            alone = model(mixed.select([b])).logits["upos"][0, :n]
            torch.testing.assert_close(out.logits["upos"][b, :n], alone, atol=1e-5, rtol=0)
        # under the limit: exactly the plain table lookup (what every earlier version computed)
        short = random_batch([7])
        ref = model.embed(short)
        manual = model.emb_drop(
            model.emb_ln(ref.new_zeros(()) + _lexical(model, short) + model.pos_emb(torch.arange(7))[None])
        )
        torch.testing.assert_close(ref, manual, atol=1e-6, rtol=0)
    assert torch.isfinite(out.logits["upos"][1, :30]).all()


def _lexical(model: GatedEncoder, batch) -> torch.Tensor:
    """Word inputs without positions, recomputed the plain way (mean of subwords + form + suffixes)."""
    B, T = batch.word_mask.shape
    sub = model.subword_emb(batch.input_ids)
    pooled = torch.zeros(B, T, sub.shape[-1])
    for b in range(B):
        for w in range(T):
            pieces = sub[b][batch.word_index[b] == w]
            if len(pieces):
                pooled[b, w] = pieces.mean(0)
    return pooled + model.word_emb(batch.word_hash) + model.suffix_emb(batch.suffix_hash).sum(2)


def _long_conllu(source: Path, target: Path, words: int, sentences: int) -> int:
    """Write ``sentences`` sentences of about ``words`` words each, by joining consecutive real sentences
    (ids and heads renumbered; each joined sentence's root attaches to the first one's root)."""
    with source.open(encoding="utf-8") as f:
        real = [s for s in conllu.parse_incr(f)]
    out, longest, k = [], 0, 0
    for sid in range(sentences):
        rows, offset, root = [], 0, None
        while offset < words:
            s = [t for t in real[k % len(real)] if isinstance(t["id"], int)]
            k += 1
            for t in s:
                head = 0 if t["head"] == 0 else t["head"] + offset
                if head == 0 and root is not None:
                    head = root
                rows.append((t["id"] + offset, t["form"], t["upos"], head, t["deprel"] if head else "root"))
            root = root or next(r[0] for r in rows if r[3] == 0)
            offset += len(s)
        longest = max(longest, offset)
        out.append(f"# sent_id = long-{sid}\n# text = {' '.join(r[1] for r in rows)}")
        out += [
            "\t".join([str(i), form, form, upos, "_", "_", str(h), rel, "_", "_"]) for i, form, upos, h, rel in rows
        ]
        out.append("")
    target.write_text("\n".join(out) + "\n", encoding="utf-8")
    return longest


@pytest.mark.slow
def test_a_thousand_word_sentence_through_adapt_and_monitor(smoke_run, ud_root, tmp_path):
    folder = tmp_path / "UD_Long-Legal"
    folder.mkdir()
    src = next((ud_root / "UD_Finnish-TDT").glob("*-test.conllu"))
    longest = _long_conllu(src, folder / "fi_long-ud-test.conllu", 1000, 12)
    assert longest >= 1000
    out = tmp_path / "adapt"
    cmd = [sys.executable, "-m", "metasparse.adapt", f"run_dir={smoke_run}", f"target.path={folder}"]
    cmd += ["target.lang=fi", "target.domain=legal", "steps=2", "shots=2", f"hydra.run.dir={out}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    a = json.loads((out / "adapt_metrics.json").read_text())
    assert a["test_sentences"] >= 1 and 0 < a["final_acc"] <= 1 and [p["step"] for p in a["curve"]] == [0, 1, 2]

    text = tmp_path / "long.txt"
    with (folder / "fi_long-ud-test.conllu").open(encoding="utf-8") as f:
        text.write_text("\n".join(s.metadata["text"] for s in conllu.parse_incr(f)), encoding="utf-8")
    res = subprocess.run(
        [sys.executable, "-m", "metasparse.monitor", f"run_dir={smoke_run}", f"input={text}", "lang=fi"]
        + [f"out={tmp_path / 'monitor.json'}", f"hydra.run.dir={tmp_path / 'mon'}"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert json.loads((tmp_path / "monitor.json").read_text())["incoming"]["sentences"] == 12


@pytest.mark.slow
def test_a_thousand_word_sentence_is_scored_word_for_word(smoke_run, ud_root, tmp_path):
    """The walker evaluate uses: one prediction per word of a 1,000-word sentence, gated and dense."""
    from metasparse.data.ud import load_folder
    from metasparse.meta.load import load_run
    from metasparse.model.corpus import EncodedCorpus
    from metasparse.scoring import Dense, score

    src = next((ud_root / "UD_Finnish-TDT").glob("*-test.conllu"))
    path = tmp_path / "fi_long-ud-test.conllu"
    n = _long_conllu(src, path, 1000, 1)
    loaded = load_run(smoke_run)
    b = loaded.bundle
    ds = load_folder(path, lang="fi", domain="legal")
    corpus = EncodedCorpus.build(ds, [0], b.tokenizer, b.tasks, loaded.system.backbone.spec.suffix_buckets)
    for method in (Dense(loaded.system.backbone), loaded.system.method()):
        s = score(method, corpus, observe=None)
        assert len(s.predictions["upos"][0]) == n and 0 < s.accuracy["upos"] <= 1
