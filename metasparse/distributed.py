"""Data parallelism on torch.distributed (``torchrun``) for pretraining and meta-training; only rank 0
writes. Pretraining splits each batch's sentences across ranks; meta-training each meta-batch's episodes.

    torchrun --nproc_per_node=2 -m metasparse.pretrain +domain=legal hydra.run.dir=outputs/pre_ddp
    torchrun --nproc_per_node=2 -m metasparse.meta_train +domain=legal hydra.run.dir=outputs/legal_ddp

Every rank runs the same outer loop on the same parameters; after the all-reduce every rank holds the
meta-gradient of the whole meta-batch, so the optimiser steps stay identical without a broadcast.
Episode ``i``'s Gumbel noise is seeded by ``i`` itself, so a rank computes exactly what one process
would for that episode.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist


def init_from_env() -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); gloo runs on CPUs."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend=os.environ.get("METASPARSE_DIST_BACKEND", "gloo"))
    return dist.is_available() and dist.is_initialized()


def rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the only rank that writes files and logs."""
    return rank_and_size()[0] == 0


def shard(items: Sequence, rank: int, size: int) -> list:
    """This rank's share of ``items`` (round robin)."""
    return list(items)[rank::size]


def all_reduce_grads(params: Iterable[torch.Tensor]) -> None:
    """Sum ``.grad`` across ranks (a rank whose share produced no gradient contributes zeros)."""
    if rank_and_size()[1] == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def shared_run_dir(out_dir: Path) -> Path:
    """Under torchrun: join the process group, agree on rank 0's run dir and keep the other ranks quiet;
    in one process: ``out_dir`` as it is."""
    if init_from_env():
        out_dir = Path(broadcast_object(str(out_dir)))
        quiet_unless_main()
    return out_dir


def quiet_unless_main() -> None:
    """On ranks other than 0: no log file (rank 0 writes the run's) and errors only on the console."""
    import logging

    if is_main():
        return
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler):
            root.removeHandler(h)
    root.setLevel(logging.ERROR)


def all_reduce_sum(value: float) -> float:
    """The sum of ``value`` over ranks (e.g. a rank's share of the batch loss, for the log)."""
    if rank_and_size()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t[0])


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (e.g. the run directory, so all ranks agree on one)."""
    if rank_and_size()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (filling caches), the other ranks after it (reading them)."""
    if rank_and_size()[1] == 1:
        yield
        return
    if not is_main():
        dist.barrier()
    yield
    if is_main():
        dist.barrier()


def gather_lists(items: list) -> list:
    """Every rank's ``items`` concatenated in rank order (e.g. per-episode loss statistics for the log)."""
    if rank_and_size()[1] == 1:
        return items
    out: list = [None] * rank_and_size()[1]
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]
