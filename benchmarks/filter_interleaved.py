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
Temporal filter cost next to the ground encoder, interleaved as in the node.

``jzi bench`` times the filter in a tight loop (warm caches); in the node each filter step
follows an encoder pass that has flushed the caches, and numpy's per-call overhead grows. This
runs encoder, filter, encoder, filter... in one process on one thread and prints the medians
of wall time and of thread CPU time (the latter less sensitive to other processes on a busy
machine), and their ratio. The zooms fed to the filter are simulated (``simulated_steps``,
right on half the frames) along a track across the map, as in ``jzi bench``. Measures and
prints; asserts nothing.

Usage::

    PYTHONPATH=. python benchmarks/filter_interleaved.py --map DEMO_DIR/map \
        --model jzi_ros/data/demo_model.safetensors --frames 200
"""
from __future__ import annotations

import argparse
from pathlib import Path
import time

import numpy as np
import torch

from jzi_ros.inference.bench import simulated_steps
from jzi_ros.inference.fusion import CellFilter, FusionConfig
from jzi_ros.inference.localizer import Localizer, LocalizerConfig
from jzi_ros.inference.measurement import Measurement


def main() -> None:
    """Time encoder and filter alternately; print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--map", type=Path, required=True, help="map directory")
    parser.add_argument("--model", type=Path, required=True, help="model checkpoint")
    parser.add_argument("--frames", type=int, default=200, help="timed frames (+20 warm-up)")
    parser.add_argument("--particles", type=int, default=FusionConfig.particles)
    args = parser.parse_args()
    torch.set_num_threads(1)
    localizer = Localizer.from_paths(args.map, args.model, LocalizerConfig(device="cpu"))
    tree = localizer.tree
    pixels = localizer.preprocess(
        np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))[None]
    rng = np.random.default_rng(0)
    total = args.frames + 20
    half = tree.size_m / 2
    east = np.linspace(-0.8 * half, 0.8 * half, total)
    zooms = [simulated_steps(tree, e, 0.3 * half * np.sin(e / half * 3), rng.uniform() < 0.5,
                             rng) for e in east]
    fusion = CellFilter(tree, FusionConfig(particles=args.particles))
    rows = []
    for i, steps in enumerate(zooms):
        wall, cpu = time.perf_counter(), time.thread_time()
        localizer.backend.encode(pixels)
        encoder = (time.perf_counter() - wall, time.thread_time() - cpu)
        wall, cpu = time.perf_counter(), time.thread_time()
        fusion.fix(fusion.step(10**18 + i * 10**9, Measurement.from_steps(tree, steps)), 0.0,
                   100.0)
        rows.append(encoder + (time.perf_counter() - wall, time.thread_time() - cpu))
    enc_wall, enc_cpu, fil_wall, fil_cpu = 1e3 * np.median(np.array(rows[20:]), axis=0)
    localizer.close()
    print(f"| clock | encoder ms | filter ms | filter / encoder |\n|---|---:|---:|---:|\n"
          f"| wall | {enc_wall:.2f} | {fil_wall:.3f} | {100 * fil_wall / enc_wall:.1f} % |\n"
          f"| thread CPU | {enc_cpu:.2f} | {fil_cpu:.3f} | {100 * fil_cpu / enc_cpu:.1f} % |\n"
          f"({tree.num_actions ** tree.depth} terminal cells, {args.particles} particles, "
          f"one thread, medians of {args.frames} frames)")


if __name__ == "__main__":
    main()
