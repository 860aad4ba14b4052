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
Training throughput (samples/s) of the zoom model's training step.

Times the real step of ``jzi train`` (jzi_ros.training.loop.TrainStep + AdamW + grad clipping,
AMP on CUDA) on synthetic tensors, so the number is the model's cost without disk or JPEG
decoding. Two modes: "frozen" (encoder frozen, map views from the embedding table: only the
ground crops are encoded) and "trainable" (the preset's trainable blocks; the batch's unique
map views are encoded in the step, as in training).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/train_throughput.py            # CPU: demo
    .venv/bin/python benchmarks/train_throughput.py --presets dinov2-s14,dinov2-b14  # GPU

``--config`` times the model of a training config instead, once per ``--arm "LABEL
[KEY=VALUE ...]"`` (the overrides ``jzi train`` takes): encoders compared at equal time per
step, in one run (docs/any-area.md, "Encoders").
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from jzi_ros.geo import CellTree
from jzi_ros.model import ModelConfig, ZoomModel
from jzi_ros.training.config import load_train_config, TrainConfig
from jzi_ros.training.data import prefix_view_indices
from jzi_ros.training.loop import TrainStep
from jzi_ros.training.optim import amp_settings, make_optimizer


def synthetic_batch(config: ModelConfig, batch: int, device: torch.device,
                    rng: np.random.Generator) -> dict:
    tree = CellTree(0.0, 0.0, 10000.0, grid=config.grid, depth=config.depth)
    paths = rng.integers(0, config.num_actions, (batch, config.depth))
    rows = torch.from_numpy(prefix_view_indices(tree, paths))
    unique, slots = torch.unique(rows, return_inverse=True)
    size = config.encoder.image_size
    return {"ground": torch.randn(batch, config.n_crops, 3, size, size, device=device),
            "path": torch.from_numpy(paths).to(device),
            "view_rows": rows.to(device),
            "views": torch.randn(len(unique), 3, size, size, device=device),
            "view_slots": slots.to(device)}, tree.num_views


def measure(preset: str, mode: str, batch: int, steps: int, device: torch.device,
            amp: str, config: ModelConfig | None = None) -> dict:
    if config is None:
        config = ModelConfig.preset(preset)
    if mode == "frozen":
        config = dataclasses.replace(config, encoder=dataclasses.replace(
            config.encoder, trainable_blocks=0))
    torch.manual_seed(0)
    model = ZoomModel(config).to(device).train()
    train_config = TrainConfig(manifest="-", map="-", out="-", amp=amp)
    optimizer = make_optimizer(model, train_config, device)
    autocast, use_scaler = amp_settings(train_config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    step_module = TrainStep(model, frozen=mode == "frozen")
    data, num_views = synthetic_batch(config, batch, device, np.random.default_rng(0))
    table = torch.randn(num_views, model.embed_dim, device=device)
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        with torch.autocast(**autocast):
            logits = step_module(data, table)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1),
                                                 data["path"].flatten(), label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):  # warm-up: allocator, kernels, autotuning
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    elapsed = time.perf_counter() - start
    return {"preset": preset, "mode": mode, "device": str(device), "batch": batch,
            "amp": autocast.get("dtype", "off") if autocast["enabled"] else "off",
            "views_per_batch": int(data["views"].shape[0]) if mode != "frozen" else 0,
            "trainable_M": sum(p.numel() for p in params) / 1e6,
            "step_ms": 1000 * elapsed / steps, "samples_per_s": batch * steps / elapsed,
            "peak_gib": (torch.cuda.max_memory_allocated(device) / 2**30
                         if device.type == "cuda" else float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.lstrip("\n"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--presets", default="demo,dinov2-s14,dinov2-b14" if cuda else "demo",
                        help="comma-separated model presets")
    parser.add_argument("--modes", default="frozen,trainable",
                        help="comma-separated: frozen and/or trainable")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per step (default: 16 on CPU, 64 on CUDA)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (default: 5 on CPU, 20 on CUDA)")
    parser.add_argument("--config", default=None,
                        help="training config YAML: time its model (with --arm overrides)")
    parser.add_argument("--arm", action="append", default=[],
                        help='with --config: "LABEL KEY=VALUE ..." (repeatable)')
    parser.add_argument("--device", default="cuda" if cuda else "cpu", help="torch device")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"),
                        help="mixed precision (auto: bf16/fp16 on CUDA, off on CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    batch = args.batch_size or (64 if on_gpu else 16)
    steps = args.steps or (20 if on_gpu else 5)
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if on_gpu else
             f", {torch.get_num_threads()} threads"))
    header = (f"{'preset':<11} {'mode':<9} {'batch':>5} {'amp':>14} {'views':>5} "
              f"{'train M':>7} {'step ms':>8} {'samples/s':>9} {'peak GiB':>8}")
    print(header)
    print("-" * len(header))
    if args.config:
        arms = [arm.split() for arm in args.arm or ["config"]]
        base = ["manifest=-", "map=-", "out=-", "render=null"]  # the model only
        runs = [(arm[0], load_train_config(args.config, base + arm[1:]).model_config())
                for arm in arms]
    else:
        runs = [(preset.strip(), None) for preset in args.presets.split(",")]
    for preset, config in runs:
        for mode in args.modes.split(","):
            r = measure(preset, mode.strip(), batch, steps, device, args.amp, config)
            print(f"{r['preset']:<11} {r['mode']:<9} {r['batch']:>5} {str(r['amp']):>14} "
                  f"{r['views_per_batch']:>5} {r['trainable_M']:>7.1f} {r['step_ms']:>8.1f} "
                  f"{r['samples_per_s']:>9.1f} {r['peak_gib']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
