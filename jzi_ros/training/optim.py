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
The optimisation recipe: AdamW parameter groups, the learning-rate schedule, mixed precision.

The paper's settings (AdamW, 5 % linear warm-up then cosine decay, bf16/fp16 autocast) as
small functions of the training config, shared by the training loop and
``benchmarks/train_throughput.py``.
"""
from __future__ import annotations

import math
import time

import torch

from jzi_ros.errors import JziError
from jzi_ros.model.zoom import ZoomModel
from jzi_ros.training.config import TrainConfig


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def out_of_budget(config: TrainConfig, step: int, started: float, clock: bool = True) -> bool:
    """Whether the step or wall-clock budget is spent (``clock``: also read the clock)."""
    return bool((config.max_steps and step >= config.max_steps) or (
        clock and config.max_minutes and time.time() - started >= config.max_minutes * 60))


def fit_schedule_to_budget(config: TrainConfig, total: int, warmup: int, step: int,
                           first_step: int, epoch_s: float, started: float) -> tuple[int, int]:
    """
    Return ``(total, warmup)`` steps fitted to what ``config.max_minutes`` still allows.

    Called after the first epoch (``first_step`` .. ``step`` took ``epoch_s``): the cosine
    schedule then ends when the wall-clock budget does instead of being cut off half-way.
    """
    fit = int(step + (config.max_minutes * 60 - (time.time() - started))
              * (step - first_step) / max(epoch_s, 1e-9))
    total = max(step + 1, min(total, fit))
    return total, max(1, min(warmup, int(config.warmup * total)))


def make_optimizer(model: ZoomModel, config: TrainConfig,
                   device: torch.device) -> torch.optim.AdamW:
    groups: dict[tuple[str, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "encoder" if name.startswith("encoder.") else "decoder"
        # no weight decay on biases, norms, layer scales and embedding tokens (all < 2-D)
        groups.setdefault((part, param.ndim >= 2), []).append(param)
    param_groups = []
    for (part, decay), params in sorted(groups.items()):
        lr = config.lr * (config.encoder_lr_scale if part == "encoder" else 1.0)
        param_groups.append({"params": params, "lr": lr, "base_lr": lr,
                             "weight_decay": config.weight_decay if decay else 0.0})
    return torch.optim.AdamW(param_groups, lr=config.lr, betas=(0.9, 0.999),
                             fused=device.type == "cuda")


def amp_settings(config: TrainConfig, device: torch.device) -> tuple[dict, bool]:
    """(autocast kwargs, use a GradScaler): bf16 where supported, fp16 + scaler otherwise."""
    mode = config.amp
    if mode == "auto":
        if device.type != "cuda":
            mode = "off"
        else:
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "off":
        return {"device_type": device.type, "enabled": False}, False
    if mode == "fp16" and device.type != "cuda":
        raise JziError("training config: amp=fp16 needs a CUDA device (use bf16 or off on CPU)")
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return {"device_type": device.type, "dtype": dtype, "enabled": True}, mode == "fp16"
