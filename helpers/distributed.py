"""Several processes with PyTorch's own engine: ``torchrun --nproc_per_node N -m helpers run ...``.

torchrun starts N copies of the command with ``RANK``, ``WORLD_SIZE`` and a rendezvous address in the environment;
:func:`setup` joins them into one process group (gloo on CPU, NCCL on CUDA). The trainer then wraps its networks in
``DistributedDataParallel``: every process draws the same shuffled batches (same seed) and trains on its own
``1 / N`` slice of each, and DDP averages the gradients, so one step sees the same ``batch_size`` events as a
single process would and the learning rate stays as configured (docs/DESIGN.md#several-processes). Rank 0 alone
writes files (checkpoints, config, metrics, figures, logs) and runs the evaluation; every process reads the same
checkpoint on ``--resume``. Without torchrun's variables nothing here does anything.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def requested_world_size() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def setup(device_type: str = "cpu") -> int:
    """Join torchrun's process group if there is one; returns the world size (1 = a single process)."""
    if requested_world_size() > 1 and not dist.is_initialized():
        # On GPUs the networks' gradients go through NCCL and the pipeline's few CPU numbers (flags, sums) through
        # gloo: NCCL alone cannot send CPU tensors.
        backend = "cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return world_size()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True in a single process and in rank 0: the one process that writes files and logs."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_flag(value: bool) -> bool:
    """Rank 0's ``value`` on every rank (e.g. whether it resumed a checkpoint)."""
    if world_size() == 1:
        return bool(value)
    t = torch.tensor([1 if value else 0], dtype=torch.int64)
    dist.broadcast(t, src=0)
    return bool(t.item())


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum over the ranks (float64 on the CPU: the gloo and NCCL-agnostic path for a few numbers)."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
