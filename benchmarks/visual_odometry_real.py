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
Visual odometry on real imagery: ``benchmarks/visual_odometry_real.py RASTER``.

Flies the demo's drone (north-up gimbal with yaw jitter, 84-90 deg pitch, slowly changing
altitude) over a real orthophoto, renders each frame with the training renderer (perspective,
then blur, vignetting, exposure drift, noise, occluders) and runs
:class:`~jzi_ros.inference.visual_odometry.VisualOdometry` on the frames, scaled by the
flight's mean altitude as a robot would guess it. Prints, per flight seed, the share of frame
pairs matched, the error of each step against the true move (median, p90, max; and relative to
the step), the median scale ratio and the thread CPU time per frame. ``--m-per-px``: the
ground sampling of a raster whose georeferencing is not in metres (autzen's world file is in
feet: 0.3048). Numbers: docs/fusion.md.
"""
import argparse
from pathlib import Path
import sys
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's jzi_ros, installed or not

from jzi_ros.demo.flight import FlightSpec, fly  # noqa: E402
from jzi_ros.inference.visual_odometry import VisualOdometry, VisualOdometryConfig  # noqa: E402
from jzi_ros.training.render import ArrayGround, degrade_frame  # noqa: E402


def read_raster(path: Path, m_per_px: float | None) -> tuple[np.ndarray, float]:
    """Return the raster's RGB array and its metres per pixel (rasterio reads world files)."""
    import rasterio

    with rasterio.open(path) as src:
        rgb = np.moveaxis(src.read((1, 2, 3)), 0, -1)
        size = m_per_px or abs(src.transform.a)
    return np.ascontiguousarray(rgb), float(size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/visual_odometry_real.py",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raster", type=Path, help="an RGB orthophoto rasterio can read")
    parser.add_argument("--m-per-px", type=float, default=None,
                        help="ground sampling in metres (default: the raster's transform)")
    parser.add_argument("--altitude", type=float, nargs=2, default=(120.0, 180.0),
                        metavar=("LOW", "HIGH"), help="flight altitude range, m (120 180)")
    parser.add_argument("--speed", type=float, default=12.0, help="m/s at 1 frame/s (12)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    rgb, m_per_px = read_raster(args.raster, args.m_per_px)
    height_px, width_px = rgb.shape[:2]
    half_w, half_h = width_px * m_per_px / 2, height_px * m_per_px / 2
    ground = ArrayGround(rgb, np.array([[m_per_px, 0, -half_w], [0, -m_per_px, half_h],
                                        [0, 0, 1.0]]), args.raster.name)
    spec = FlightSpec(frames=args.frames, speed_mps=args.speed,
                      altitude_m=tuple(args.altitude), edge_margin_m=150.0)
    guess = sum(args.altitude) / 2
    print(f"{args.raster.name}: {width_px} x {height_px} px at {m_per_px:.3f} m; flights of "
          f"{args.frames} frames at {args.speed:g} m/s, {args.altitude[0]:g}-"
          f"{args.altitude[1]:g} m up, scaled by {guess:g} m; {spec.width} x {spec.height} "
          f"px, {spec.hfov_deg:g} deg\n")
    print("| seed | pairs matched | step error median / p90 / max | relative median | "
          "scale ratio median (p10-p90) | ms CPU per frame |")
    print("|---:|---:|---:|---:|---:|---:|")
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        poses, stamps = fly(rng, 2 * min(half_w, half_h), spec)
        odometry = VisualOdometry(VisualOdometryConfig(height_m=guess, hfov_deg=spec.hfov_deg))
        errors, ratios, cpu = [], [], []
        for i, (pose, stamp) in enumerate(zip(poses, stamps)):
            image = degrade_frame(ground.view(spec.camera, pose)[0], rng)
            started = time.thread_time()
            step = odometry.add_frame(int(stamp), image, 0.0)  # the gimbal holds North up
            cpu.append(time.thread_time() - started)
            if step is None:
                continue
            truth = np.array([pose.east_m - poses[i - 1].east_m,
                              pose.north_m - poses[i - 1].north_m])
            errors.append(float(np.hypot(*(step - truth))))
            ratios.append(float(np.hypot(*step) / max(np.hypot(*truth), 1e-9)))
        errors, ratios = np.array(errors), np.array(ratios)
        if errors.size == 0:
            print(f"| {seed} | 0 of {odometry.tried} | - | - | - | "
                  f"{1e3 * np.median(cpu):.2f} |")
            continue
        relative = np.median(np.abs(ratios - 1))
        print(f"| {seed} | {odometry.matched} of {odometry.tried} | {np.median(errors):.2f} / "
              f"{np.percentile(errors, 90):.2f} / {errors.max():.1f} m | {100 * relative:.1f} % | "
              f"{np.median(ratios):.3f} ({np.percentile(ratios, 10):.3f}-"
              f"{np.percentile(ratios, 90):.3f}) | {1e3 * np.median(cpu):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
