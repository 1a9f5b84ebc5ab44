"""Batching, lookup baseline, checkpoints, controller budget and int8 slices."""

from __future__ import annotations

import json

import pytest
import torch
from model_utils import random_batch, tiny_model

from metasparse.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metasparse.control.controller import Controller, controlled
from metasparse.control.train import ControllerTrainConfig, calibrate_bias, train_controller
from metasparse.model.corpus import EncodedCorpus, language_weights
from metasparse.model.freeze import frozen
from metasparse.runtime.quantized import QuantizedSlices
from metasparse.scoring import score
from metasparse.scoring.lookup import LookupTagger
from metasparse.scoring.metrics import AccuracyTable


def test_lookup_tagger_by_hand():
    tagger = LookupTagger().fit(
        ["fi", "fi", "en"],
        [["kissa", "juoksee", "kissa"], ["kissa"], ["run"]],
        [["NOUN", "VERB", "NOUN"], ["PROPN"], ["VERB"]],
    )
    assert tagger.predict("fi", ["kissa", "juoksee", "koira"]) == [
        "NOUN",
        "VERB",
        "NOUN",
    ]  # OOV: fi's top tag
    assert tagger.predict("en", ["run", "walk"]) == ["VERB", "VERB"]
    assert tagger.predict("xx", ["a"]) == ["NOUN"]  # unknown language: overall most frequent


def test_accuracy_table_macro_and_micro():
    t = AccuracyTable()
    t.add("fi", "upos", 9, 10)
    t.add("en", "upos", 50, 100)
    assert t.macro("upos") == pytest.approx((0.9 + 0.5) / 2)
    assert t.micro("upos") == pytest.approx(59 / 110)


def test_checkpoint_roundtrip_and_tamper_detection(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", {"w": torch.arange(6.0).view(2, 3)}, {"step": 3})
    tensors, state = load_checkpoint(folder)
    assert torch.equal(tensors["w"], torch.arange(6.0).view(2, 3)) and state["step"] == 3
    save_checkpoint(folder, {"w": torch.ones(2)}, {"step": 4})  # replaces atomically
    assert load_checkpoint(folder)[1]["step"] == 4
    data = (folder / "tensors.safetensors").read_bytes()
    (folder / "tensors.safetensors").write_bytes(data[:-3])
    with pytest.raises(CheckpointError, match="truncated or altered"):
        load_checkpoint(folder)
    (folder / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "nothing")


def test_checkpoint_state_is_json_not_pickle(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", {"w": torch.zeros(1)}, {"note": "x"})
    assert json.loads((folder / "state.json").read_text())["note"] == "x"
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "tensors.safetensors"]


@pytest.fixture(scope="module")
def fi_corpus(ud_dataset, cell_index):
    from metasparse.data.tokenizer import TokenizerConfig, train_tokenizer
    from metasparse.tasks import load_task

    rows = sorted(int(r) for c in cell_index.cells if c.lang == "fi" for r in cell_index.rows(c, "train"))
    words = ud_dataset["words"]
    tok, _ = train_tokenizer({"fi": [words[i] for i in rows]}, TokenizerConfig(vocab_size=1000))
    return EncodedCorpus.build(ud_dataset, rows, tok, {"upos": load_task("upos")}, 64), tok


def test_batches_cover_every_sentence_once_within_budget(fi_corpus):
    corpus, _ = fi_corpus
    for shuffle in (False, True):
        batches = corpus.batches(512, shuffle=shuffle, seed=1, epoch=2)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(corpus)))
        lengths = corpus.lengths()
        assert all(max(lengths[b]) * len(b) <= 512 or len(b) == 1 for b in batches)
    assert corpus.batches(512, shuffle=True, seed=1, epoch=2) == corpus.batches(512, shuffle=True, seed=1, epoch=2)
    assert corpus.batches(512, shuffle=True, seed=1, epoch=2) != corpus.batches(512, shuffle=True, seed=1, epoch=3)


def test_language_weights_give_each_language_its_exponent_share():
    langs = ["fi"] * 100 + ["hi"] * 25
    w = language_weights(langs, 0.5)
    assert w.sum() == pytest.approx(1.0)
    assert w[:100].sum() == pytest.approx(10 / 15) and w[100:].sum() == pytest.approx(5 / 15)  # sqrt 100 : sqrt 25
    assert w[100] > w[0]  # a sentence of the small language is drawn more often than one of the large
    natural = language_weights(langs, 1.0)
    assert natural == pytest.approx([1 / 125] * 125)


def test_weighted_epochs_draw_languages_in_their_shares(fi_corpus):
    corpus, _ = fi_corpus
    n = len(corpus)
    small = n // 5  # pretend the first fifth is another language
    langs = ["xx"] * small + ["fi"] * (n - small)
    w = language_weights(langs, 0.0001)  # nearly equal shares
    drawn = [i for b in corpus.batches(512, shuffle=True, seed=1, epoch=0, weights=w) for i in b]
    assert len(drawn) == n and len(set(drawn)) < n  # as many items as the corpus, some drawn twice
    share = sum(i < small for i in drawn) / n
    assert 0.4 < share < 0.6, share  # about half, against a natural fifth
    again = corpus.batches(512, shuffle=True, seed=1, epoch=0, weights=w)
    assert again == corpus.batches(512, shuffle=True, seed=1, epoch=0, weights=w)  # the seed fixes the draw


def test_language_alpha_is_checked_by_name():
    from metasparse.config.training import PretrainOptimConfig
    from metasparse.errors import ConfigValueError

    with pytest.raises(ConfigValueError, match="pretrain.language_alpha"):
        PretrainOptimConfig(language_alpha=0.0)


def test_controller_learns_to_meet_a_budget(fi_corpus):
    from metasparse.model.encoder import EncoderSpec, GatedEncoder

    corpus, tok = fi_corpus
    torch.manual_seed(0)
    model = GatedEncoder(
        EncoderSpec(
            vocab_size=tok.vocab_size,
            tasks={"upos": 17},
            word_buckets=tok.hash_buckets,
            suffix_buckets=64,
            layers=2,
            d_model=32,
            heads=4,
            d_ffn=64,
            ffn_groups=4,
        )
    )
    ctrl = Controller(model)
    model.blocks[0].requires_grad_(False)  # the caller froze part of the backbone on purpose
    flags = [p.requires_grad for p in model.parameters()]
    hist = train_controller(
        model, ctrl, corpus, ControllerTrainConfig(target=0.5, steps=25, max_words=512), progress=False
    )
    assert hist[-1]["flops"] < hist[0]["flops"]  # expected FLOPs fell from dense toward the target
    assert [p.requires_grad for p in model.parameters()] == flags  # the caller's flags, not all switched on
    assert False in flags and True in flags
    calibrate_bias(model, ctrl, corpus, 0.5, iters=10)
    r = score(controlled(model, ctrl), corpus)
    assert 0.3 < r.flops_fraction <= 0.5 + 1e-9  # hard decisions meet the budget


def _first(corpus: EncodedCorpus, n: int) -> EncodedCorpus:
    labels = {t: v[:n] for t, v in corpus.labels.items()}
    return EncodedCorpus(corpus.rows[:n], corpus.items[:n], labels, corpus.langs[:n], corpus.cells[:n])


def test_calibration_meets_the_budget_whatever_the_logit_scale(fi_corpus):
    """A controller whose patterns differ by more than the first bracket's shift moves them (as one trained
    from scratch on the co-trained legal backbone did) still meets the target: the bracket widens. A target
    below the cheapest decisions is refused with the reachable cost, the controller handed back unchanged."""
    from metasparse.control.controller import ControllerSpec
    from metasparse.model.encoder import EncoderSpec, GatedEncoder

    full_corpus, tok = fi_corpus
    corpus = _first(full_corpus, 300)  # enough sentences for a graded cost, few for two dozen calibration passes
    torch.manual_seed(0)
    spec = EncoderSpec(vocab_size=tok.vocab_size, tasks={"upos": 17}, word_buckets=tok.hash_buckets, layers=2)
    model = GatedEncoder(spec).eval()
    ctrl = Controller(model, ControllerSpec(placement="upfront", uncertainty_task=None, token_router=False))
    full = model.codebook.index(model.full)
    with torch.no_grad():  # input-dependent margins of hundreds of logits, the full pattern ahead
        ctrl.nets[0][2].weight.normal_(0, 20.0)
        ctrl.nets[0][2].bias.view(len(model.blocks), -1)[:, full] = 300.0
    assert score(controlled(model, ctrl), corpus).flops_fraction > 0.9
    calibrate_bias(model, ctrl, corpus, 0.5)
    assert 0.3 < score(controlled(model, ctrl), corpus).flops_fraction <= 0.5 + 1e-9
    before = ctrl.nets[0][2].bias.detach().clone()
    with pytest.raises(ValueError, match=r"target 0.001 is below the cost of the cheapest decisions"):
        calibrate_bias(model, ctrl, corpus, 0.001)
    assert torch.equal(ctrl.nets[0][2].bias, before)


def test_a_trained_controller_can_start_from_another_and_leaves_it_as_it_was(fi_corpus):
    """bench.speed starts each target's controller from the joint phase's (same settings only)."""
    from metasparse.baselines.controllers import trained_controller
    from metasparse.bench.speed import _joint_start
    from metasparse.control.controller import ControllerSpec
    from metasparse.model.encoder import EncoderSpec, GatedEncoder

    corpus, tok = fi_corpus
    corpus = _first(corpus, 300)
    torch.manual_seed(0)
    spec = EncoderSpec(vocab_size=tok.vocab_size, tasks={"upos": 17}, word_buckets=tok.hash_buckets, layers=2)
    model = GatedEncoder(spec).eval()
    cspec = ControllerSpec(placement="upfront", uncertainty_task=None)
    init = Controller(model, cspec)
    with torch.no_grad():
        init.nets[0][2].weight.normal_(0, 1.0)
    before = {k: v.clone() for k, v in init.state_dict().items()}
    ctrl = trained_controller(model, corpus, corpus, 0.5, spec=cspec, steps=0, init=init)
    assert ctrl is not init and torch.equal(ctrl.nets[0][2].weight, init.nets[0][2].weight)
    assert all(torch.equal(v, before[k]) for k, v in init.state_dict().items())  # calibration shifted the copy
    assert _joint_start(init, cspec) is init
    assert _joint_start(init, ControllerSpec(placement="per_layer", uncertainty_task=None)) is None
    assert _joint_start(None, cspec) is None


def test_int8_slices_follow_fp32_closely():
    model, batch = tiny_model(scale=0.1), random_batch([7, 3, 5, 6])
    q = QuantizedSlices.wrap(model)
    assert all(b.packed is None for b in model.blocks)  # the original is untouched
    m = batch.word_mask
    with torch.no_grad():
        for plan in ([6, 6, 6], [3, 3, 3], [0, 1, 4]):
            a, c = model(batch, plan=plan).logits["upos"][m], q(batch, plan=plan).logits["upos"][m]
            # int8 rounding differs by CPU kernel (x86/onednn vs fbgemm): 0.0915 of the largest logit was seen
            # on one machine where 0.05 had held on another; argmax agreement below is what users notice.
            assert (a - c).abs().max() < 0.1 * a.abs().max()
            assert (a.argmax(-1) == c.argmax(-1)).float().mean() > 0.9


def test_collate_pads_words_subwords_and_labels(fi_corpus):
    from metasparse.model.features import IGNORE_INDEX, collate

    _, tok = fi_corpus
    batch = collate(
        [["Kissa", "juoksee", "."], ["Hyvä"]], tok, suffix_bucket_count=64, labels={"upos": [[7, 15, 12], [0]]}
    )
    assert batch.word_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.labels["upos"].tolist() == [[7, 15, 12], [0, IGNORE_INDEX, IGNORE_INDEX]]
    wi = batch.word_index
    assert set(wi[0][wi[0] >= 0].tolist()) == {0, 1, 2} and set(wi[1][wi[1] >= 0].tolist()) == {0}
    assert (batch.input_ids[wi < 0] == 0).all() and (batch.word_hash[~batch.word_mask] == 0).all()
    assert (batch.suffix_hash[batch.word_mask] > 0).all()


def test_frozen_restores_each_parameters_own_flag_even_on_error():
    model = tiny_model()
    model.blocks[1].requires_grad_(False)
    before = [p.requires_grad for p in model.parameters()]
    with pytest.raises(RuntimeError), frozen(model):
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("training failed half-way")
    assert [p.requires_grad for p in model.parameters()] == before


def test_the_budget_reads_a_saturated_controller_through_a_tempered_softmax():
    """``budget_view``: rows whose logits span at most ``BUDGET_SPREAD`` read as the plain softmax; a
    saturated row (the joint phase's controller: margins of ~12) keeps a budget gradient the plain softmax
    has lost, pointing from the costly pattern to the cheap ones, with the same argmax."""
    from metasparse.control.controller import BUDGET_SPREAD, budget_view

    calm = torch.tensor([[0.5, -1.0, 2.0, 1.0, -0.5]])
    torch.testing.assert_close(budget_view(calm), torch.softmax(calm, -1), atol=0, rtol=0)
    cost = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    saturated = torch.tensor([[-12.0, -12.0, -12.0, 0.0, -11.5]], requires_grad=True)
    grads = {}
    for name, view in (("plain", lambda z: torch.softmax(z, -1)), ("tempered", budget_view)):
        (grad,) = torch.autograd.grad((view(saturated) * cost).sum(), saturated)
        grads[name] = grad
    assert grads["plain"].abs().max() < 1e-4
    assert grads["tempered"][0, 3] > 100 * grads["plain"].abs().max()  # less of the 0.75 pattern ...
    assert (grads["tempered"][0, :3] < -1e-3).all()  # ... more of each cheaper one
    probs = budget_view(saturated).detach()
    assert int(probs.argmax()) == 3
    assert float(probs.log().max() - probs.log().min()) <= BUDGET_SPREAD + 1e-5
