"""Data-parallel meta-training: with gloo and 2 processes on CPU, the meta-gradient of a fixed meta-batch
equals the one a single process computes."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from model_utils import tiny_model

from metasparse.config import MetaTrainConfig
from metasparse.control.controller import Controller
from metasparse.data.cells import Cell
from metasparse.data.episodes import Episode
from metasparse.distributed import shard
from metasparse.meta.outer import build_algorithm, meta_gradient
from metasparse.meta.system import GatedSystem
from metasparse.model.corpus import EncodedCorpus, EncodedRows
from metasparse.model.features import EncodedSentence

EPISODES = 4


def _setup(algorithm: str):
    """A tiny system, synthetic sentences and a fixed meta-batch: the same in every process."""
    torch.manual_seed(0)
    model = tiny_model()
    for p in model.parameters():
        p.requires_grad_(False)
    system = GatedSystem(model, Controller(model))
    cfg = MetaTrainConfig()
    cfg.meta.algorithm, cfg.meta.meta_batch, cfg.meta.inner_steps = algorithm, EPISODES, 2
    algo = build_algorithm(system, cfg)
    rng = np.random.default_rng(0)
    items, labels = [], []
    for _ in range(40):
        n = int(rng.integers(3, 9))
        items.append(
            EncodedSentence(
                rng.integers(4, 100, n).tolist(),
                list(range(n)),
                rng.integers(1, 64, n).tolist(),
                rng.integers(1, 64, (n, 3)).tolist(),
            )
        )
        labels.append(rng.integers(0, 17, n).tolist())
    corpus = EncodedCorpus(np.arange(40), items, {"upos": labels}, ["xx"] * 40, ["xx/d/T"] * 40)
    data = EncodedRows(corpus)
    cell = Cell("xx", "d", "UD_X-T")
    eps = [
        Episode(i, "upos", cell, tuple(range(8 * i, 8 * i + 4)), tuple(range(8 * i + 4, 8 * i + 8)))
        for i in range(EPISODES)
    ]
    return system, algo, data, list(enumerate(eps)), cfg


def _grads(algorithm: str, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
    system, algo, data, episodes, cfg = _setup(algorithm)
    meta_gradient(algo, system, data, shard(episodes, rank, world), cfg, target=0.5, tau=1.0)
    # a part no episode's loss reaches (here the DEPREL head: upos episodes) has no gradient: zeros, as the
    # all-reduce counts it
    return {
        n: (p.grad if p.grad is not None else torch.zeros_like(p)).clone()
        for n, p in system.named_parameters()
        if p.requires_grad
    }


def _worker(rank: int, world: int, port: int, algorithm: str, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        grads = _grads(algorithm, rank, world)
        if rank == 0:
            out.update({n: g.numpy() for n, g in grads.items()})
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # starts two processes
@pytest.mark.parametrize("algorithm", ["fomaml", "reptile"])
def test_two_gloo_processes_give_the_one_process_meta_gradient(algorithm):
    single = _grads(algorithm)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), algorithm, out), nprocs=2, join=True)
        two = dict(out)
    assert set(two) == set(single) and any(float(g.abs().sum()) > 0 for g in single.values())
    for n, g in single.items():
        np.testing.assert_allclose(two[n], g.numpy(), rtol=1e-5, atol=1e-7, err_msg=n)


@pytest.mark.slow
def test_torchrun_meta_train_matches_one_process(smoke_run, tmp_path):
    import json
    import shutil
    import subprocess

    torchrun = shutil.which("torchrun")
    assert torchrun, "torchrun comes with torch"
    out = tmp_path / "ddp"
    res = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            "-m",
            "metasparse.meta_train",
            "experiment=smoke",
            "+domain=legal",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (smoke_run, out))
    # The same meta-batches, split over 2 ranks: the logged losses and accuracies agree with one process
    # (up to the order of float sums in the all-reduce).
    for va, vb in zip(a["validation"], b["validation"], strict=True):
        assert vb["ce"] == pytest.approx(va["ce"], rel=1e-4) and vb["val_acc"] == pytest.approx(va["val_acc"], abs=0.02)
    for cell, e in a["targets"].items():
        assert b["targets"][cell]["zero_shot_acc"] == pytest.approx(e["zero_shot_acc"], abs=0.02)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "adapted",
        "ckpt",
        "meta_train.log",
        "metrics.json",
        "report.md",
        "tb",  # rank 0's event files (logger=tensorboard)
    ]


def _pretrain_grads(rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
    """One pretraining step's gradient (word dropout and the random pattern on) on a fixed batch, this
    rank's share all-reduced."""
    from model_utils import random_batch

    from metasparse.config import PretrainConfig
    from metasparse.distributed import all_reduce_grads
    from metasparse.model.features import IGNORE_INDEX
    from metasparse.train.pretrain_step import _step_loss

    model = tiny_model(seed=2).train()  # its dropout is 0: the one source of rank-shaped randomness
    batch = random_batch([5, 3, 7, 4, 6], seed=1)
    g = torch.Generator().manual_seed(5)
    batch.labels = {
        t: torch.randint(0, n, batch.word_mask.shape, generator=g).masked_fill(~batch.word_mask, IGNORE_INDEX)
        for t, n in model.spec.tasks.items()
    }
    cfg = PretrainConfig()
    assert cfg.pretrain.word_dropout > 0 and cfg.pretrain.sparse_weight > 0
    _step_loss(cfg, model, batch, 3, rank, world).backward()
    all_reduce_grads(model.parameters())
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _pretrain_worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        grads = _pretrain_grads(rank, world)
        if rank == 0:
            out.update({n: g.numpy() for n, g in grads.items()})
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # starts two processes
def test_two_gloo_processes_give_the_one_process_pretraining_gradient():
    single = _pretrain_grads()
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_pretrain_worker, args=(2, _free_port(), out), nprocs=2, join=True)
        two = dict(out)
    assert set(two) == set(single) and all(float(g.abs().sum()) > 0 for g in single.values())
    for n, g in single.items():
        assert np.allclose(two[n], g.numpy(), atol=1e-6, rtol=1e-5), n


def test_the_pretraining_step_skips_a_non_finite_gradient_and_stops_past_the_limit():
    from metasparse.errors import NonFiniteError
    from metasparse.train.pretrain_step import _finite_or_skip

    skipped: list[dict] = []
    assert _finite_or_skip(torch.tensor(1.5), 0, skipped, limit=1) and skipped == []
    assert not _finite_or_skip(torch.tensor(float("nan")), 4, skipped, limit=1)
    assert skipped == [{"step": 5, "grad_norm": pytest.approx(float("nan"), nan_ok=True)}]
    with pytest.raises(NonFiniteError, match=r"2 non-finite pretraining steps \(pretrain.max_nonfinite=1\)"):
        _finite_or_skip(torch.tensor(float("inf")), 9, skipped, limit=1)
