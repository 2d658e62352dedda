"""Several processes (GPUs) training one model: started by torchrun, joined with torch.distributed.

``torchrun --nproc_per_node N stages/finetune.py ...`` (or ``accelerate launch``) starts N
copies of a stage and sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``. Each copy trains on
its slice of every batch; gradients are averaged before each optimizer step, so N processes
take the same steps, with the same batch size and learning rate, as one process would.

Why not DistributedDataParallel: a SMART step runs several forwards per backward and PCGrad
needs each task's gradient averaged on its own, before surgery; DDP averages once per
backward. Averaging flat gradient vectors ourselves keeps both exact: one collective call
per step, or one per task and one for the heads with surgery.
Training runs inside :func:`process_group`; without torchrun every function here is a no-op,
so single-process runs are untouched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from smartmtl.train.pcgrad import assign_flat_grad, flatten_grads


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Within the block, this process is in torchrun's process group (NCCL on GPUs, gloo on
    CPUs) and on its own GPU; without torchrun nothing happens. The one place it starts and ends."""
    started = world_size() > 1 and not dist.is_initialized()
    if started:
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield
    finally:
        if started and dist.is_initialized():
            dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 logs, scores and saves; the others only train."""
    return rank() == 0


def shard(indices: np.ndarray) -> np.ndarray:
    """This process's slice of a batch: every N-th row, so slices have similar lengths.

    A batch with fewer rows than processes gives some processes a repeated row rather than
    none: every process must run every task's backward, or the averages would not line up.
    """
    world = world_size()
    if world == 1:
        return indices
    if len(indices) < world:
        return indices[[rank() % len(indices)]]
    return indices[rank() :: world]


def broadcast_parameters(model: nn.Module) -> None:
    """Start every process from rank 0's weights (its randomly initialised heads included)."""
    if dist.is_initialized():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_(flat: Tensor) -> Tensor:
    """Average a tensor over the processes, in place."""
    if dist.is_initialized():
        dist.all_reduce(flat)
        flat.div_(dist.get_world_size())
    return flat


def average_gradients(module: nn.Module) -> None:
    """Give every process the mean of the processes' gradients of ``module``'s parameters.

    Parameters without a gradient (a head whose task the step did not train) keep none, as
    the optimizer must skip them; every process trains the same tasks, so the set agrees.
    """
    if not dist.is_initialized():
        return
    with_grad = [p for p in module.parameters() if p.grad is not None]
    assign_flat_grad(with_grad, average_(flatten_grads(with_grad)))
