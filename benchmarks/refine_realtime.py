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
Background SIFT at camera rates: replay's waiting vs the node's real time.

``PYTHONPATH=. python benchmarks/refine_realtime.py --map DEMO/map --hz 10 30``

With ``track_async`` a frame that starts or renews a keyframe hands SIFT to a background
thread. Replay makes the next frame wait for it (deterministic); the node (``realtime``)
never waits and tracks from the old keyframe, or keeps the zoom's fix, until SIFT is done.
Flies ``jzi bench``'s 50-frame pass over the map (the shipped demo model's zoom, then
refinement, as the node runs them) at each camera rate, paced in wall time, both ways, and
prints refinement's latency per frame (median / p95 / max), frames refined and tracked, and
the zoom's encoder in the same frames. Measured, never asserted; numbers in
docs/refinement.md.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
import sys

import cv2
import torch

from jzi_ros.cli.bench import moving_pass
from jzi_ros.inference.bench_refine import bench_tracked_refinement
from jzi_ros.inference.localizer import Localizer, LocalizerConfig
from jzi_ros.inference.refine import RefineConfig, Refiner

MODEL = Path(__file__).resolve().parents[1] / "jzi_ros" / "data" / "demo_model.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--map", type=Path, required=True, help="a map with imagery (jzi demo)")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--hz", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--track-frames", type=int, default=3)
    parser.add_argument("--hfov", type=float, default=70.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    config = RefineConfig(track_frames=args.track_frames, track_async=True,
                          hfov_deg=args.hfov)
    localizer = Localizer.from_paths(args.map, args.model,
                                     LocalizerConfig(device="cpu", backend="torch"))
    localizer.warmup(1)
    images, K = moving_pass(args.map, config.nominal_height_m)
    print("| camera | background SIFT | refinement ms median / p95 / max | refined | tracked "
          "| encoder in the same frames ms median |")
    print("|---|---|---:|---:|---:|---:|")
    for hz in args.hz:
        for realtime in (False, True):
            refiner = Refiner.for_map(args.map, replace(config), realtime=realtime)
            out = bench_tracked_refinement(localizer, refiner, images, K,
                                           period_ns=int(1e9 / hz))
            refiner.close()
            wall = out["wall_ms"]
            how = "never waited for (node)" if realtime else "waited for (replay)"
            print(f"| {hz:g} Hz | {how} | {wall['median']:.2f} / {wall['p95']:.2f} / "
                  f"{out['max_wall_ms']:.2f} | {out['accepted']} of {out['frames']} | "
                  f"{out['tracked']} | {out['encoder_in_sequence_ms']['median']:.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
