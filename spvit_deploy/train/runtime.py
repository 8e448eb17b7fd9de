"""This process's place in a training job: the torchrun group (DDP; gloo on CPU, nccl on GPU), the
device, the AMP dtype and the seeds. `loop.py` re-exports these names."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import SpvitError


@dataclass
class Runtime:
    """This process's place in the job: device, rank, world size."""

    device: torch.device
    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def all_max(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def all_sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics) before evaluating or saving."""
        if self.distributed:
            for b in model.buffers():
                if b.numel():
                    dist.broadcast(b, 0)


def setup_runtime(device: str = "auto", threads: int = 0) -> Runtime:
    """Join the torchrun job when `WORLD_SIZE` is set; pick the device."""
    if threads:
        torch.set_num_threads(threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise SpvitError("--device cuda: no CUDA device is visible; use --device cpu")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    return Runtime(device=dev, rank=rank, world=world, owns_group=owns)


def close_runtime(rt: Runtime) -> None:
    if rt.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype. `auto`: on GPU bf16 where supported, else fp16 (with loss scaling);
    on CPU bf16 where the CPU computes it natively (AVX512-BF16 / AMX), else fp32."""
    if amp == "none":
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise SpvitError("--amp fp16 needs a GPU; use --amp bf16 or none on CPU")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cpu":
        return torch.bfloat16 if _cpu_has_bf16() else None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
