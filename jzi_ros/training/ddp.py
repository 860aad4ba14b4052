# Copyright 2026 jzi_ros contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Distributed data parallel through ``torchrun``; a plain single process otherwise.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; when WORLD_SIZE > 1
we join the process group (NCCL on CUDA, gloo on CPU). Rank 0 alone writes files.
"""
from __future__ import annotations

from dataclasses import dataclass
import os

import torch
import torch.distributed as dist

from jzi_ros.errors import JziError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    if requested == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise JziError(f"training config: device {requested!r} is not a torch device "
                       f"(expected auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise JziError(f"training config: device {requested!r} but CUDA is not available")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup(requested_device: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=pick_device(requested_device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64,
                          device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size


def broadcast_float(value: float, info: DistInfo) -> float:
    """Rank 0's ``value`` on every rank (a tensor, not a pickled object)."""
    if not info.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64,
                          device=info.device if info.device.type == "cuda" else "cpu")
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def teardown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
