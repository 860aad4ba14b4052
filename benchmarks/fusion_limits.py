#!/usr/bin/env python3
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
Where the fused random walk loses: ``benchmarks/fusion_limits.py BAG --map MAP``.

Replays the bag once (single-frame fixes and measurements), runs the random-walk and odometry
filters over the same records for each filter seed, and splits the scored frames by how
often the single frame was right (within ``--radius`` m) in a window of ``--window`` s
around each frame. A random walk can only coast between informative frames; where the
single frames are wrong for longer than it can coast, it has nothing to fuse and only
odometry carries the estimate through. The table says how much of the random walk's loss
lies in such stretches, and what R@radius it would reach if it were right on every frame
there (its ceiling without a better single frame). ``--visual-odometry`` adds the filter
moved by the frames' own motion (the demo camera: a north-up gimbal, 70 deg, ~250 m up).
Numbers: docs/fusion.md.
"""
import argparse
from pathlib import Path
import sys

import demo_bag_args  # benchmarks/, next to this file (puts the checkout on sys.path)
import numpy as np

from jzi_ros.evaluation.bag_heading import HeadingOptions
from jzi_ros.evaluation.fusion_replay import FusionOptions, run_filter
from jzi_ros.evaluation.replay import replay_bag, ReplayOptions
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.visual_odometry import filter_config, VisualOdometryConfig


def errors_m(result, fixes) -> np.ndarray:
    """Horizontal error of each scored frame's estimate (NaN where there is none)."""
    tree = result.tree
    out = []
    for record, fix in zip(result.records, fixes):
        if not record.used:
            continue
        if fix is None:
            out.append(np.nan)
            continue
        east, north = tree.to_local(fix.latitude, fix.longitude)
        out.append(float(np.hypot(east - record.gt.east_m, north - record.gt.north_m)))
    return np.array(out)


def window_hit_rate(stamps_s: np.ndarray, hits: np.ndarray, window_s: float) -> np.ndarray:
    """Share of hits among the frames within ``window_s / 2`` of each frame (itself included)."""
    half = window_s / 2
    return np.array([hits[np.abs(stamps_s - t) <= half].mean() for t in stamps_s])


def main(argv: list[str] | None = None) -> int:
    """Replay once, filter per seed, print the split."""
    parser = argparse.ArgumentParser(prog="benchmarks/fusion_limits.py", description=__doc__)
    parser.add_argument("bag", type=Path, help="a demo-style bag (DEMO/bag)")
    demo_bag_args.add_arguments(parser)
    parser.add_argument("--filter-seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--window", type=float, default=20.0,
                        help="window around each frame, s (default 20)")
    parser.add_argument("--radius", type=float, default=100.0,
                        help="a frame is right within this many metres (default 100)")
    parser.add_argument("--poor", type=float, default=0.2,
                        help="a stretch is poor where fewer than this share of its single "
                             "frames are right (default 0.2)")
    parser.add_argument("--visual-odometry", action="store_true",
                        help="also the filter moved by the frames' own motion (north-up "
                             "camera, 70 deg field of view, 250 m above the ground)")
    args = parser.parse_args(argv)
    localizer = demo_bag_args.localizer(args)
    visual = VisualOdometryConfig(hfov_deg=70.0) if args.visual_odometry else None
    fusion = FusionOptions(FusionConfig(), args.odom_topic, visual_odometry=visual)
    result = replay_bag(args.bag, localizer, ReplayOptions(
        args.image_topic, args.gt_topic, progress=False, fusion=fusion,
        heading=HeadingOptions("fixed", yaw_deg=90.0) if visual else None))
    track = result.fusion_track  # the bag's odometry, as the replay read it
    used = [r for r in result.records if r.used]
    stamps = np.array([r.stamp_ns for r in used], np.int64)
    stamps_s = (stamps - stamps.min()) / 1e9
    single = errors_m(result, [r.fix for r in result.records])
    hits = single <= args.radius
    poor = window_hit_rate(stamps_s, hits, args.window) < args.poor
    runs = {"random walk": None, "odometry": track}
    if result.fusion_visual is not None:
        runs["visual odometry"] = result.fusion_visual
    recall = {name: [] for name in runs}
    medians = {name: [] for name in runs}
    for seed in args.filter_seeds:
        config = FusionConfig(seed=seed)
        for name, motion in runs.items():
            own = filter_config(config) if name == "visual odometry" else config
            fixes = [fix for fix, _ in run_filter(result.records, result.tree, own, motion)]
            errors = errors_m(result, fixes)
            recall[name].append(errors <= args.radius)
            medians[name].append(float(np.nanmedian(errors)))
    print(f"{args.bag}: {len(used)} scored frames; poor stretches: fewer than "
          f"{args.poor:.0%} of the single frames within {args.radius:g} m in a {args.window:g} s "
          f"window; filter seeds {args.filter_seeds}\n")
    print(f"| frames | count | single R@{args.radius:g} | "
          + " | ".join(f"{name} R@{args.radius:g}" for name in runs) + " |")
    print("|---|---:|---:|" + "---:|" * len(runs))
    for label, mask in (("poor stretches", poor), ("the rest", ~poor),
                        ("all", np.ones_like(poor))):
        cells = [f"{100 * hits[mask].mean():.1f} %" if mask.any() else "-"]
        for name in runs:
            values = [h[mask].mean() for h in recall[name]] if mask.any() else []
            cells.append(f"{100 * np.mean(values):.1f} %" if values else "-")
        print(f"| {label} | {int(mask.sum())} | " + " | ".join(cells) + " |")
    print(f"\nsingle frame: R@{args.radius:g} {100 * hits.mean():.1f} %, median "
          f"{np.nanmedian(single):.1f} m")
    for name in runs:
        values = [h.mean() for h in recall[name]]
        print(f"{name}: R@{args.radius:g} {100 * np.mean(values):.1f} % "
              f"({100 * min(values):.1f}-{100 * max(values):.1f} over filter seeds), median "
              f"{np.mean(medians[name]):.1f} m ({min(medians[name]):.1f}-"
              f"{max(medians[name]):.1f})")
    walk = np.mean([h.mean() for h in recall["random walk"]])
    ceiling = np.mean([(h | poor).mean() for h in recall["random walk"]])
    print(f"\nrandom walk R@{args.radius:g}: {100 * walk:.1f} %; right on every frame of the "
          f"poor stretches too it would be {100 * ceiling:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
