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
Issue #17's kidnap test on the demo flight: a bag whose camera is teleported 1 km mid-flight.

    PYTHONPATH=. python benchmarks/kidnap_bag.py --demo-workdir DEMO --out BAG

writes the demo flight (``jzi demo``'s poses, stamps, day and odometry for ``--seed``) as a bag
in which every frame from ``--at`` on is rendered ``--distance`` m away (the compass direction
that keeps the rest of the flight furthest inside the map); the ground truth moves with the
camera, the odometry does not (it was carried, as in a kidnap: odometry says the robot flew on).
No time jump, no gap: only the frames disagree with the filter. Then it replays that bag and
the unkidnapped flight (the same poses, day and frames before ``--at``) with the random-walk and
odometry filters for each ``--filter-seeds`` seed, the model's CPU backend on one thread, and
prints per filter: the frame (s after the teleport) at which the estimate is back within
``--radius`` m and stays there for ``--hold`` frames, when the kidnap test fired, R@radius
after the teleport next to the unkidnapped flight's over the same frames, and how long a
fresh filter started on the teleport's frame takes (the best a kidnapped filter can do).
Measures and prints; numbers: docs/fusion.md.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import math
from pathlib import Path
import sys

import demo_bag_args  # benchmarks/, next to this file (puts the checkout on sys.path)
from fusion_limits import errors_m  # the scored frames' errors, NaN without an estimate
import numpy as np

from jzi_ros.demo import odometry, stages
from jzi_ros.demo.bag import write_bag
from jzi_ros.demo.flight import FlightSpec, fly
from jzi_ros.demo.flow import model_card, shipped_model
from jzi_ros.demo.style import render
from jzi_ros.demo.views import capture
from jzi_ros.evaluation.fusion_replay import FusionOptions, run_filter
from jzi_ros.evaluation.replay import replay_bag, ReplayOptions
from jzi_ros.inference.fusion_config import FusionConfig

MARGIN_M = 150.0  # the teleported camera stays this far inside the map's root square


def teleport(track: np.ndarray, at: int, distance_m: float, half: float) -> np.ndarray:
    """Return the East/North shift (``distance_m`` long) keeping ``track[at:]`` most inside."""
    best, shift = -math.inf, None
    for angle in np.radians(np.arange(0, 360, 15)):
        d = distance_m * np.array([math.sin(angle), math.cos(angle)])
        room = float(np.min(half - np.abs(track[at:] + d)))
        if room > best:
            best, shift = room, d
    if best < MARGIN_M:
        raise SystemExit(f"no {distance_m:g} m teleport keeps frames {at}.. {MARGIN_M:g} m "
                         f"inside the map (best {best:.0f} m): choose another --at")
    return shift


def write_flight(out: Path, seed: int, at: int | None, distance_m: float) -> np.ndarray:
    """Write the demo flight (kidnapped at frame ``at`` unless None); return the shift."""
    spec, tree, _ = model_card(shipped_model())
    world = stages.world_of(spec)
    rng, style = stages.flight_day(seed)  # the demo flight's stream and day, as its bag
    flight = FlightSpec()
    poses, stamps = fly(rng, tree.size_m, flight)
    track = np.array([(p.east_m, p.north_m) for p in poses])
    shift = np.zeros(2) if at is None else teleport(track, at, distance_m, tree.size_m / 2)
    styled = render(world, style)
    camera = flight.camera
    frames = []
    for i, (stamp, pose) in enumerate(zip(stamps, poses)):
        if at is not None and i >= at:
            pose = replace(pose, east_m=pose.east_m + shift[0],
                           north_m=pose.north_m + shift[1])
        frames.append((stamp, capture(world, styled, camera, pose, rng),
                       (pose.east_m, pose.north_m, pose.altitude_m)))
    write_bag(out, tree, frames, overwrite=True,
              odometry=odometry.simulate(seed, track, stamps))  # the flight flown on
    return shift


class _Tail:
    """The records of a replay from index ``first`` on (what ``errors_m`` reads)."""

    def __init__(self, result, first: int) -> None:
        self.tree, self.records = result.tree, result.records[first:]


def recovered_at(errors: np.ndarray, at: int, radius: float, hold: int) -> int | None:
    """First frame >= ``at`` from which ``hold`` estimates in a row are within ``radius``."""
    good = errors <= radius
    for i in range(at, len(errors) - hold + 1):
        if good[i:i + hold].all():
            return i
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/kidnap_bag.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-workdir", type=Path, required=True,
                        help="a `jzi demo --workdir` directory (its map/ is replayed against)")
    parser.add_argument("--out", type=Path, required=True,
                        help="directory for the two bags (kidnap/, control/)")
    parser.add_argument("--seed", type=int, default=0, help="flight seed (the demo's: 0)")
    parser.add_argument("--at", type=int, default=100, help="frame of the teleport")
    parser.add_argument("--distance", type=float, default=1000.0, help="teleport, m")
    parser.add_argument("--radius", type=float, default=100.0)
    parser.add_argument("--hold", type=int, default=5,
                        help="recovered: this many estimates in a row within --radius")
    parser.add_argument("--filter-seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--backend", default="onnxruntime", choices=("torch", "onnxruntime"))
    args = parser.parse_args(argv)
    args.map = args.demo_workdir / "map"
    args.model = demo_bag_args.SHIPPED_MODEL
    bags = {"kidnap": args.out / "kidnap", "control": args.out / "control"}
    shift = write_flight(bags["kidnap"], args.seed, args.at, args.distance)
    write_flight(bags["control"], args.seed, None, args.distance)
    print(f"teleport at frame {args.at}: {np.hypot(*shift):.0f} m, East {shift[0]:+.0f} m, "
          f"North {shift[1]:+.0f} m; bags in {args.out}")
    localizer = demo_bag_args.localizer(args)
    options = ReplayOptions(demo_bag_args.IMAGE_TOPIC, demo_bag_args.GT_TOPIC, progress=False,
                            fusion=FusionOptions(FusionConfig(), demo_bag_args.ODOM_TOPIC))
    results = {name: replay_bag(bag, localizer, options) for name, bag in bags.items()}
    single = errors_m(results["kidnap"], [r.fix for r in results["kidnap"].records])
    print(f"single frame after the teleport: R@{args.radius:g} m "
          f"{np.mean(single[args.at:] <= args.radius):.1%} (kidnap bag)\n")
    print(f"| filter | seed | back within {args.radius:g} m for {args.hold} frames, s after "
          f"the teleport | kidnap test fired, s after | R@{args.radius:g} m after: kidnap bag "
          f"| same frames unkidnapped | a fresh filter from the teleport's frame, s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for name, motion in (("random walk", None), ("odometry", "odometry")):
        delays, colds, recalls = [], [], []
        for seed in args.filter_seeds:
            config = FusionConfig(seed=seed)
            row = {}
            for bag, result in results.items():
                track = result.fusion_track if motion else None
                runs = run_filter(result.records, result.tree, config, track)
                row[bag] = (errors_m(result, [fix for fix, _ in runs]),
                            [est for record, (_, est) in zip(result.records, runs)
                             if record.used])
            errors, estimates = row["kidnap"]
            back = recovered_at(errors, args.at, args.radius, args.hold)
            fired = [i - args.at for i, est in enumerate(estimates)
                     if i >= args.at and est.event.startswith("kidnap")]
            after = float(np.mean(errors[args.at:] <= args.radius))
            control = float(np.mean(row["control"][0][args.at:] <= args.radius))
            # the best a kidnapped filter can do: a fresh one started on the teleport's frame
            kidnap = results["kidnap"]
            first = [i for i, r in enumerate(kidnap.records) if r.used][args.at]
            fresh = run_filter(kidnap.records[first:], kidnap.tree, config,
                               kidnap.fusion_track if motion else None)
            cold = recovered_at(errors_m(_Tail(kidnap, first), [f for f, _ in fresh]), 0,
                                args.radius, args.hold)
            delays.append(math.inf if back is None else back - args.at)
            colds.append(math.inf if cold is None else cold)
            recalls.append((after, control))
            print(f"| {name} | {seed} | {'never' if back is None else back - args.at} | "
                  f"{', '.join(map(str, fired[:3])) or '-'} | {after:.1%} | {control:.1%} | "
                  f"{'never' if cold is None else cold} |", flush=True)
        summary[name] = (delays, colds, np.mean(recalls, axis=0))
    print()
    for name, (delays, colds, (after, control)) in summary.items():
        finite = [d for d in delays if math.isfinite(d)]
        print(f"{name}: recovered in {len(finite)} of {len(delays)} seeds, median "
              f"{np.median(delays):.0f} s (range {min(delays):.0f}-{max(delays):.0f}; a fresh "
              f"filter from the teleport's frame {np.median(colds):.0f} s, range "
              f"{min(colds):.0f}-{max(colds):.0f}); "
              f"R@{args.radius:g} m after the teleport {after:.1%} vs {control:.1%} unkidnapped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
