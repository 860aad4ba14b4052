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
Temporal filter cost next to the ground encoder, interleaved as in the node, several repeats.

``jzi bench`` prints the same measurement once per run (``bench_filter`` with an encoder: each
filter frame follows one encoder pass, which flushes the caches a tight loop would keep warm);
this repeats it ``--repeats`` times on one thread, on this map and a 65,536-cell map, and
prints every repeat's medians of wall and thread CPU time (the latter less sensitive to other
processes on a busy machine), their ratio and the load average, so a noisy machine shows as a
spread; each repeat times every ``--kernels`` value (FusionConfig.kernel) back to back. The
zooms fed to the filter are simulated (``simulated_steps``, right on half the
frames) along a track across the map. Measures and prints; asserts nothing.

Usage::

    PYTHONPATH=. python benchmarks/filter_interleaved.py --map DEMO_DIR/map \
        --model jzi_ros/data/demo_model.safetensors --frames 200 --repeats 3
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path


from jzi_ros.geo import CellTree
from jzi_ros.inference.bench import cpu_encoder_input
from jzi_ros.inference.bench_filter import bench_filter
from jzi_ros.inference.fusion_config import FusionConfig


def main() -> None:
    """Time encoder and filter alternately; print medians and ratios per repeat."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--map", type=Path, required=True, help="map directory")
    parser.add_argument("--model", type=Path, required=True, help="model checkpoint")
    parser.add_argument("--frames", type=int, default=200, help="timed frames (+20 warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per map")
    parser.add_argument("--particles", type=int, default=FusionConfig.particles)
    parser.add_argument("--kernels", default="numba,numpy",
                        help="FusionConfig.kernel values to time, comma-separated, each "
                             "repeat runs them back to back (numba needs Numba installed)")
    args = parser.parse_args()
    localizer, pixels = cpu_encoder_input(args.map, args.model)
    tree = localizer.tree
    big = CellTree(tree.center_lat, tree.center_lon, 10_000.0, grid=4, depth=4)
    print("| map | repeat | kernel | encoder ms wall / CPU | filter ms wall / CPU | "
          "filter / encoder, wall / CPU | load |\n|---|---:|---|---:|---:|---:|---:|")
    for which in (tree, big):
        for repeat in range(args.repeats):
            for kernel in args.kernels.split(","):
                config = FusionConfig(particles=args.particles, kernel=kernel)
                t = bench_filter(which, args.frames, config=config, seed=repeat,
                                 encode=lambda: localizer.backend.encode(pixels))
                load_1min = f"{os.getloadavg()[0]:.2f}"
                print(f"| {t['terminal_cells']} cells | {repeat} | {t['kernel']} | "
                      f"{t['encoder_median']:.2f} / {t['encoder_cpu_median']:.2f} | "
                      f"{t['median']:.3f} / {t['cpu_median']:.3f} | "
                      f"{100 * t['median'] / t['encoder_median']:.1f} % / "
                      f"{100 * t['cpu_median'] / t['encoder_cpu_median']:.1f} % | {load_1min} |")
    print(f"({args.particles} particles, one thread, medians of {args.frames} frames)")
    localizer.close()


if __name__ == "__main__":
    main()
