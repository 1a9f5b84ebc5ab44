"""UDPipe 1 (Straka and Straková 2017), the classical CPU tagger a user would pick instead: one UPOS tagger
per language, trained with UDPipe's own trainer (``ufal.udpipe``) on the run's source train split, cached.

It is a peer, not a way of running the backbone: it reads word forms, not encoded batches, so it has its
own scorer (:func:`udpipe_scores`) that fills the same accuracy tables as :func:`metasparse.scoring.score`
(per cell, per language, macro). A language with no source training sentences (a held-out language) has
no tagger, and its cells are reported as not covered instead of guessed.

    models = train_taggers(dataset, train_rows, iterations=20)      # lang -> cached model file
    s = udpipe_scores(dataset, test_rows, cells, load_taggers(models))   # UdpipeScores
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from metasparse.data.fetch import cache_dir
from metasparse.io import atomic_write
from metasparse.scoring.metrics import AccuracyTable

log = logging.getLogger(__name__)

# UPOS only (the peer): no lemmas, XPOS or features, so its cost and accuracy are the tagger's.
TAGGER_OPTIONS = "use_lemma=0;provide_lemma=0;use_xpostag=0;provide_xpostag=0;use_feats=0;provide_feats=0"


def _udpipe():
    try:
        import ufal.udpipe as udpipe
    except ImportError as exc:  # an optional dependency: say how to get it
        raise ImportError("the udpipe peer needs ufal.udpipe: pip install 'metasparse[classical]'") from exc
    return udpipe


# UDPipe's tagger dictionary stores a form's length + 1 in one byte: a longer form (a URL in English web
# text) fails training with "Should encode value 474 in one byte!" (255 bytes fails, 250 trains). Such forms
# are cut for the peer alone.
MAX_FORM_BYTES = 200


def udpipe_form(word: str) -> str:
    """``word`` cut to :data:`MAX_FORM_BYTES` UTF-8 bytes (at a character boundary)."""
    b = word.encode("utf-8")
    return word if len(b) <= MAX_FORM_BYTES else b[:MAX_FORM_BYTES].decode("utf-8", "ignore")


def conllu_text(words: list[list[str]], upos: list[list[str]]) -> str:
    """Minimal CoNLL-U (ID, FORM, UPOS; a flat tree the tagger ignores) for UDPipe's trainer."""
    blocks = []
    for ws, ts in zip(words, upos, strict=True):
        lines = [
            f"{i}\t{udpipe_form(w)}\t_\t{t}\t_\t_\t{0 if i == 1 else 1}\t{'root' if i == 1 else 'dep'}\t_\t_"
            for i, (w, t) in enumerate(zip(ws, ts, strict=True), start=1)
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n\n"


def _sentences(text: str):
    udpipe = _udpipe()
    reader = udpipe.InputFormat.newConlluInputFormat()
    reader.setText(text)
    out, s, err = udpipe.Sentences(), udpipe.Sentence(), udpipe.ProcessingError()
    while reader.nextSentence(s, err):
        out.push_back(s)
        s = udpipe.Sentence()
    if err.occurred():
        raise ValueError(f"UDPipe could not read the training CoNLL-U: {err.message}")
    return out


def train_tagger(words: list[list[str]], upos: list[list[str]], *, iterations: int = 20) -> bytes:
    """A UDPipe tagger model (bytes) trained on these sentences with UDPipe's default tagger settings."""
    udpipe = _udpipe()
    err = udpipe.ProcessingError()
    opts = f"{TAGGER_OPTIONS};iterations={iterations}"
    model = udpipe.Trainer.train(
        "morphodita_parsito", _sentences(conllu_text(words, upos)), udpipe.Sentences(), "none", opts, "none", err
    )
    if err.occurred():
        raise RuntimeError(f"UDPipe training failed: {err.message}")
    return model if isinstance(model, bytes) else model.encode("latin-1")


def model_key(words: list[list[str]], upos: list[list[str]], iterations: int) -> str:
    """Cache key of a tagger: its training data, options and UDPipe's version."""
    udpipe = _udpipe()
    v = udpipe.Version.current()
    h = hashlib.sha256(f"{v.major}.{v.minor}.{v.patch}|{TAGGER_OPTIONS}|{iterations}".encode())
    h.update(conllu_text(words, upos).encode("utf-8"))
    return h.hexdigest()[:16]


def _train_to(path: Path, words: list[list[str]], upos: list[list[str]], iterations: int) -> float:
    """Train one tagger into ``path`` (atomically); returns the seconds it took (a worker process's job)."""
    t0 = time.time()
    atomic_write(path, train_tagger(words, upos, iterations=iterations))
    return time.time() - t0


def train_taggers(
    dataset, rows_by_lang: dict[str, list[int]], *, iterations: int = 20, workers: int = 1
) -> dict[str, Path]:
    """One cached tagger per language, trained on ``rows_by_lang[lang]`` (dataset rows); returns the files.

    UDPipe trains on one core, so ``workers`` > 1 trains that many languages at once, in processes.
    """
    out, todo = {}, {}
    for lang, rows in sorted(rows_by_lang.items()):
        if not rows:
            continue
        sub = dataset.select(rows)
        words, upos = list(sub["words"]), list(sub["upos"])
        out[lang] = cache_dir() / "udpipe" / f"{lang}-{model_key(words, upos, iterations)}.udpipe"
        if not out[lang].exists():
            todo[lang] = (out[lang], words, upos, iterations)
    if todo:
        log.info("udpipe: training %d tagger(s) (%s), %d at a time", len(todo), ", ".join(todo), workers)
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            jobs = {lang: pool.submit(_train_to, *args) for lang, args in todo.items()}
            for lang, job in jobs.items():
                log.info("udpipe %s: trained in %.0fs -> %s", lang, job.result(), out[lang])
    else:
        for lang, args in todo.items():
            log.info("udpipe %s: trained in %.0fs -> %s", lang, _train_to(*args), out[lang])
    return out


class Tagger:
    """A loaded UDPipe model that tags pre-tokenised sentences (UPOS)."""

    def __init__(self, path: Path) -> None:
        udpipe = _udpipe()
        self._udpipe, self.model = udpipe, udpipe.Model.load(str(path))
        if self.model is None:
            raise ValueError(f"{path}: not a UDPipe model")

    def tag(self, words: list[str]) -> list[str]:
        s = self._udpipe.Sentence()
        for w in words:
            s.addWord(udpipe_form(w))
        err = self._udpipe.ProcessingError()
        self.model.tag(s, self._udpipe.Model.DEFAULT, err)
        if err.occurred():
            raise RuntimeError(f"UDPipe tagging failed: {err.message}")
        return [s.words[i].upostag for i in range(1, len(s.words))]


def load_taggers(models: dict[str, Path]) -> dict[str, Tagger]:
    """Each language's model file, loaded once."""
    return {lang: Tagger(p) for lang, p in models.items()}


@dataclass
class UdpipeScores:
    """UPOS accuracy of the per-language taggers, in the tables every method fills."""

    by_cell: AccuracyTable
    by_lang: AccuracyTable
    words: int
    sentences: int
    seconds: float
    uncovered: dict[str, int] = field(default_factory=dict)  # cell -> sentences of a language with no tagger

    def summary(self) -> dict:
        """The same keys as :meth:`metasparse.scoring.Scores.summary` (UPOS only; no FLOPs)."""
        return {
            "accuracy": {"upos": self.by_cell.micro("upos")},
            "macro_cells": {"upos": self.by_cell.macro("upos")},
            "macro_langs": {"upos": self.by_lang.macro("upos")},
            "macro_f1": {},
            "by_cell": self.by_cell.as_dict(["upos"]),
            "by_lang": self.by_lang.as_dict(["upos"]),
            "flops_fraction": float("nan"),
            "flops_per_token": float("nan"),
            "words": self.words,
            "sentences": self.sentences,
            "words_per_s": self.words / self.seconds if self.seconds else float("nan"),
            "uncovered": self.uncovered,
        }


def udpipe_scores(dataset, rows: list[int], cells: list[str], taggers: dict[str, Tagger]) -> UdpipeScores:
    """Tag the dataset ``rows`` (their cell names in ``cells``) with their language's tagger and count hits."""
    sub = dataset.select(rows)
    by_cell, by_lang, uncovered = AccuracyTable(), AccuracyTable(), defaultdict(int)
    words, seconds = 0, 0.0
    for lang, ws, gold, cell in zip(sub["lang"], sub["words"], sub["upos"], cells, strict=True):
        if lang not in taggers:
            uncovered[cell] += 1
            continue
        t0 = time.perf_counter()
        pred = taggers[lang].tag(ws)
        seconds += time.perf_counter() - t0
        hits = sum(p == g for p, g in zip(pred, gold, strict=True))
        by_cell.add(cell, "upos", hits, len(gold))
        by_lang.add(lang, "upos", hits, len(gold))
        words += len(gold)
    sentences = len(rows) - sum(uncovered.values())
    return UdpipeScores(by_cell, by_lang, words, sentences, seconds, dict(uncovered))
