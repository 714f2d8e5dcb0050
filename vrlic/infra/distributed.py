"""Data-parallel training across processes (``torchrun``): which rank this process is, and the few
collectives the training loops need.

One process (no process group) is a world of size 1, and every helper here is then the identity:
the single-process path computes exactly what it computed before data parallelism existed.
Under ``torchrun --nproc_per_node N`` each rank takes its share of every global batch
(``shard``) and the ranks average their gradients before each step (``average_gradients_``): the
update is the one of the global batch, as PyTorch's DistributedDataParallel makes it. The loops
use these collectives instead of the DDP wrapper because MGDA needs the per-objective gradients of
the global batch, which come from ``torch.autograd.grad`` and so never reach DDP's reducer.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` data-parallel processes."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, model files and logs."""
        return self.rank == 0


def world() -> World:
    """The current world: the process group's, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env() -> World:
    """Join the process group ``torchrun`` describes in the environment (NCCL on GPUs, gloo on the
    CPU); each rank takes the GPU of its local rank. Without ``torchrun``: a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return world()


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global batch (all of it in one process). The global batch must split
    evenly: every rank's loss is then a mean over the same number of samples, and the average of
    the ranks' gradients is the gradient of the global batch's mean loss."""
    w = world()
    if w.size == 1:
        return batch
    n = batch.shape[0]
    if n % w.size:
        raise ValueError(f"batch_size {n} does not split evenly over {w.size} processes")
    k = n // w.size
    return batch[w.rank * k:(w.rank + 1) * k]


def mean(t: torch.Tensor) -> torch.Tensor:
    """The average of ``t`` over the ranks (``t`` itself in one process)."""
    w = world()
    if w.size == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out / w.size


class _GlobalGradient(torch.autograd.Function):
    """Identity forward; backward: the gradient averaged over the ranks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad / dist.get_world_size()


def global_gradient(x: torch.Tensor) -> torch.Tensor:
    """``x`` (a tensor computed from parameters alone), whose gradient is averaged over the ranks on
    its way back: for an op behind it whose backward is not linear in the gradient it receives
    (CompressAI's ``LowerBound`` passes it on or not by its sign), averaging afterwards would not
    give the global batch's gradient. ``x`` itself in one process."""
    if world().size == 1:
        return x
    return _GlobalGradient.apply(x)


def average_gradients_(params: Sequence[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its average over the ranks, in one all-reduce (what DDP
    does with a single bucket). Parameters without a gradient are skipped: every rank runs the same
    graph, so they are the same on every rank."""
    w = world()
    if w.size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= w.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def recorded() -> dict[str, int]:
    """What a model file records of the data parallelism that trained it: the number of processes,
    when there were several (floating-point sums then run in another order; one process records
    nothing, so its files keep the bytes they had before data parallelism existed)."""
    w = world()
    return {"processes": w.size} if w.size > 1 else {}


def barrier() -> None:
    """Wait for every rank (nothing in one process)."""
    if world().size > 1:
        dist.barrier()
