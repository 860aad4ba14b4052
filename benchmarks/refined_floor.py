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
Sweep ``refined_sigma_floor_m``: fused error, NEES and effective sample size (synthetic).

Why a sweep and not a fit: the floor keeps the particles from collapsing onto a refined fix,
and sizes the published covariance after it. A synthetic flight (test_fusion.py's 2.5 km tree
and simulated zoom steps, right 60 % of the time), 80 frames at 1 Hz; from frame 20 three of
four frames bring a refined fix with 0.6 m error per axis (the demo same-day accepted median
is 0.7 m). Scored from frame 30. With ``--bags`` the same sweep runs on replays instead:
each bag is localized once (zoom + refinement), then the filters with refined fixes run on the
stored frames for every floor, both motions and ``--seeds`` filter seeds (the validation
flights: ``benchmarks/same_day_bag.py --seed 1/2/3``). ``--cost`` times one filter step
with and without a refined fix instead (2,048 particles). Measured, never asserted. Usage::

    PYTHONPATH=. python benchmarks/refined_floor.py
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/refined_floor.py --cost
    PYTHONPATH=. python benchmarks/refined_floor.py --bags BAG1 BAG2 BAG3 --map DEMO/map \
        --intrinsics 228.504,228.504,159.5,119.5
"""
from __future__ import annotations

import argparse
import itertools
import math

import numpy as np

from jzi_ros.geo import CellTree
from jzi_ros.inference.bench_filter import simulated_steps
from jzi_ros.inference.fusion import CellFilter
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.measurement import Measurement, PointMeasurement

TREE = CellTree(45.0, 7.0, 2500.0, grid=4, depth=3)


def flight(n: int = 80, speed: float = 15.0, seed: int = 0) -> np.ndarray:
    """Return a straight-ish constant-speed track (local metres), as test_fusion.py flies."""
    rng = np.random.default_rng(seed)
    heading, pos, out = 0.6, np.array([-700.0, -500.0]), []
    for _ in range(n):
        out.append(pos.copy())
        heading += rng.normal(0, 0.03)
        pos = pos + speed * np.array([math.cos(heading), math.sin(heading)])
    return np.array(out)


def run(floor_m: float, odometry: bool, seed: int = 4) -> dict[str, float]:
    track = flight()
    rng = np.random.default_rng(seed)
    filt = CellFilter(TREE, FusionConfig(seed=seed, refined_sigma_floor_m=floor_m))
    errors, nees, ess = [], [], []
    for i, truth in enumerate(track):
        steps = simulated_steps(TREE, *truth, rng.uniform() < 0.6, rng)
        point = None
        if i >= 20 and i % 4 != 3:
            point = PointMeasurement(truth + rng.normal(0, 0.6, 2), np.eye(2) * 0.36)
        moved = track[i] - track[i - 1] if odometry and i else None
        est = filt.step(10**18 + i * 10**9, Measurement.from_steps(TREE, steps), moved, point)
        fix = filt.fix(est, 0.0, 100.0)
        if i >= 30:
            error = np.array([fix.east_m, fix.north_m]) - truth
            errors.append(math.hypot(*error))
            nees.append(float(error @ np.linalg.solve(fix.covariance_enu[:2, :2], error)))
            ess.append(1.0 / float(np.sum(filt.weights ** 2)))
    return {"median_m": float(np.median(errors)), "p90_m": float(np.percentile(errors, 90)),
            "mean_nees": float(np.mean(nees)), "min_ess": min(ess),
            "median_ess": float(np.median(ess))}


FLOORS_M = (0.5, 1.0, 2.0, 3.0, 5.0)


def cost(rounds: int = 3, frames: int = 400) -> None:
    """Print the median step time with and without a refined fix, interleaved rounds."""
    import time

    rng = np.random.default_rng(0)
    zooms = [Measurement.from_steps(TREE, simulated_steps(TREE, 0.0, 0.0, True, rng))
             for _ in range(50)]
    point = PointMeasurement(np.array([1.0, 2.0]), np.eye(2))
    for round_ in range(rounds):
        for name, given in (("zoom", None), ("zoom + refined fix", point)):
            filt = CellFilter(TREE, FusionConfig(seed=1))
            filt.step(0, zooms[0])
            times = []
            for i in range(1, frames):
                start = time.perf_counter()
                filt.step(i * 10**9, zooms[i % len(zooms)], None, given)
                times.append(time.perf_counter() - start)
            print(f"round {round_}: {name}: {np.median(times) * 1e3:.3f} ms median per step")
    with open("/proc/loadavg", encoding="utf-8") as loadavg:
        print(f"load average {loadavg.read().split()[0]}")


def replays(args: argparse.Namespace) -> None:
    """Sweep on real replays: localize each bag once, then run only the filters per floor."""
    from dataclasses import replace

    from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC
    from jzi_ros.demo.flow import shipped_model
    from jzi_ros.demo.odometry import ODOM_TOPIC
    from jzi_ros.evaluation.fusion_replay import FusionOptions, run_filter, track_summary
    from jzi_ros.evaluation.replay import replay_bag, ReplayOptions
    from jzi_ros.inference.camera_pose import Intrinsics
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig
    from jzi_ros.inference.refine import Refiner, RefiningLocalizer

    results = []
    for bag in args.bags:
        localizer = RefiningLocalizer(
            Localizer.from_paths(args.map, args.model or shipped_model(),
                                 LocalizerConfig(backend="torch", device="cpu")),
            Refiner.for_map(args.map), Intrinsics.parse(args.intrinsics, "--intrinsics"))
        options = ReplayOptions(IMAGE_TOPIC, GT_TOPIC, progress=False,
                                fusion=FusionOptions(FusionConfig(), odom_topic=ODOM_TOPIC))
        results.append(replay_bag(bag, localizer, options))
        localizer.close()
        refined = [r.fix.refined for r in results[-1].records if r.fix is not None]
        print(f"{bag}: {len(refined)} frames, {np.mean(refined):.1%} refined")
    print("| floor m | proposal | motion | median m | R@25 m | R@100 m | FIX share | "
          "FIX mean NEES |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    # the zoom-only filters first (the baseline: no refined fix reaches them), then the grid
    grid = [(None, None, odometry) for odometry in (False, True)] + list(
        itertools.product(FLOORS_M, args.proposal, (False, True)))
    for floor_m, fraction, odometry in grid:
        rows = []
        for result in results:
            for seed in range(args.seeds):
                config = replace(FusionConfig(), seed=seed)
                if floor_m is not None:
                    config = replace(config, refined_sigma_floor_m=floor_m,
                                     refined_proposal_fraction=fraction)
                fixes = [fix for fix, _ in run_filter(
                    result.records, result.tree, config,
                    result.fusion_track if odometry else None, refined=floor_m is not None)]
                rows.append(track_summary(result, fixes))
        nees = [r["calibration"]["mean_nees"] for r in rows
                if r["calibration"]["mean_nees"] is not None]
        name = "zoom only | -" if floor_m is None else f"{floor_m:g} | {fraction:g}"
        print(f"| {name} | {'odometry' if odometry else 'random walk'} | "
              f"{np.mean([r['all']['median_m'] for r in rows]):.1f} | "
              f"{np.mean([r['all']['recall']['25'] for r in rows]):.1%} | "
              f"{np.mean([r['all']['recall']['100'] for r in rows]):.1%} | "
              f"{np.mean([r['fix_fraction'] for r in rows]):.1%} | "
              f"{np.mean(nees):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bags", nargs="*", default=[], help="replay these bags instead")
    parser.add_argument("--map", default=None, help="the bags' map (with imagery)")
    parser.add_argument("--model", default=None, help="zoom model (default: the demo's)")
    parser.add_argument("--intrinsics", default=None, help="FX,FY,CX,CY of the bags' camera")
    parser.add_argument("--seeds", type=int, default=3, help="filter seeds per bag")
    parser.add_argument("--cost", action="store_true", help="time a filter step instead")
    parser.add_argument("--proposal", type=float, nargs="+",
                        default=[FusionConfig().refined_proposal_fraction],
                        help="refined_proposal_fraction values to sweep too (bags only)")
    args = parser.parse_args()
    if args.cost:
        cost()
        return
    if args.bags:
        replays(args)
        return
    print("| floor m | motion | median m | p90 m | mean NEES | min ESS | median ESS |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for floor_m in FLOORS_M:
        for odometry in (False, True):
            r = run(floor_m, odometry)
            print(f"| {floor_m:g} | {'odometry' if odometry else 'random walk'} | "
                  f"{r['median_m']:.2f} | {r['p90_m']:.2f} | {r['mean_nees']:.2f} | "
                  f"{r['min_ess']:.0f} | {r['median_ess']:.0f} |")


if __name__ == "__main__":
    main()
