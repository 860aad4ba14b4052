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
Tracked refinement on flights over real imagery: SIFT on every frame vs tracking between.

``PYTHONPATH=. python benchmarks/refine_tracking.py --datasets telluric autzen``

Flies the demo's drone (north-up gimbal with yaw jitter, slowly changing altitude and pitch;
:func:`jzi_ros.demo.flight.fly`) over a map built from real imagery, renders every frame
from imagery of the query date (telluric: the other date, ground truth corrected by the two
dates' measured offset; autzen: the map's own imagery with photometric changes and the demo
camera's degradation), and refines each frame around its true terminal cell (the zoom's best
case: no zoom model is trained on these areas, as in ``refine_bench.py``). The same frames
go through refinement with ``track_frames`` 0 (SIFT on every frame) and the values given
(``--set track_async=true``: SIFT in the background).
Prints per setting: frames accepted, of them tracked, the accepted fixes' median / p90 error,
false acceptances (> 50 m), mean NEES of the accepted fixes and of the tracked ones (the
registration's own covariance against the corrected truth) and refinement's thread CPU time
per frame (median, p95, mean). Measured, never asserted; numbers in docs/refinement.md.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import math
from pathlib import Path
import sys
import time

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # the checkout's jzi_ros, installed or not
sys.path.insert(0, str(ROOT))

import refine_bench as rb  # noqa: E402

from jzi_ros.demo.flight import FlightSpec, fly  # noqa: E402
from jzi_ros.geo import CellTree  # noqa: E402
from jzi_ros.inference.camera_pose import Intrinsics  # noqa: E402
from jzi_ros.inference.refine import RefineConfig, Refiner  # noqa: E402
from jzi_ros.training.camera import render_view  # noqa: E402
from jzi_ros.training.render import degrade_frame  # noqa: E402

DATASETS = {
    # map raster, query raster, tree, flight, refinement height guess, photometric change
    "telluric": {"map": "telluric/overlap1.tif", "query": "telluric/overlap2.tif",
                 "tree": (42.064, 12.3857, 3600.0), "altitude": (1500.0, 2200.0),
                 "speed": 40.0, "margin": 450.0, "photometric": False},
    "autzen": {"map": "autzen/autzen.jpg", "query": None, "tree": (44.0562, -123.0690, 950.0),
               "altitude": (120.0, 180.0), "speed": 12.0, "margin": 150.0,
               "photometric": True, "crs": "autzen/autzen-srs.wkt"},
}


def read_local(imagery: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return a map's imagery.tif (north-up, local frame) and its pixel -> local metres."""
    import rasterio

    with rasterio.open(imagery) as ds:
        rgb = np.moveaxis(ds.read((1, 2, 3)), 0, -1)
        t = ds.transform
    return np.ascontiguousarray(rgb), np.array([[t.a, t.b, t.c], [t.d, t.e, t.f], [0, 0, 1.0]])


def flight_frames(name: str, spec: dict, work: Path, frames: int, seed: int,
                  yaw_mode: str = "north"):
    """Return map dir, tree, frames [(image, true east, north, stamp)], intrinsics, guess."""
    tree = CellTree(*spec["tree"], grid=4, depth=3)
    crs = str(rb.DATA / spec["crs"]) if "crs" in spec else None
    map_dir = rb.build_map(rb.DATA / spec["map"], work / f"{name}_map", tree, crs=crs)
    offset = (0.0, 0.0)
    query_dir = map_dir
    if spec["query"]:
        query_dir = rb.build_map(rb.DATA / spec["query"], work / f"{name}_query", tree, crs=crs)
        offset = rb.measure_offset(map_dir / "imagery.tif", query_dir / "imagery.tif")
    source, to_local = read_local(query_dir / "imagery.tif")
    flight = FlightSpec(frames=frames, speed_mps=spec["speed"], altitude_m=spec["altitude"],
                        edge_margin_m=spec["margin"], yaw_mode=yaw_mode)
    rng = np.random.default_rng(seed)
    poses, stamps = fly(rng, tree.size_m - 2 * spec["margin"], flight)
    K = flight.camera.K()
    intrinsics = Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    out = []
    for pose, stamp in zip(poses, stamps):
        image = render_view(source, to_local, flight.camera, pose)
        image = rb.photometric_change(image, rng) if spec["photometric"] \
            else degrade_frame(image, rng)
        # the truth in the map date's frame: the query imagery sits `offset` from the map's
        out.append((image, pose.east_m - offset[0], pose.north_m - offset[1], int(stamp)))
    return map_dir, tree, out, intrinsics, float(np.mean(spec["altitude"])), offset


def run(refiner: Refiner, tree, frames, intrinsics) -> dict:
    """Refine every frame around its true cell, in order, with its stamp."""
    errors, nees, cpu, tracked, accepted, tracked_nees = [], [], [], 0, 0, []
    for image, east, north, stamp in frames:
        hypothesis = rb.cell_of(tree, east, north)
        started = time.thread_time()
        result = refiner.register(image, [hypothesis], intrinsics, stamp)
        cpu.append((time.thread_time() - started) * 1e3)
        if not result.accepted:
            continue
        accepted += 1
        tracked += result.scope.startswith("tracked")
        error = np.array([result.pose.east_m - east, result.pose.north_m - north])
        errors.append(float(np.hypot(*error)))
        nees.append(float(error @ np.linalg.solve(result.covariance_en, error)))
        if result.scope.startswith("tracked"):
            tracked_nees.append(nees[-1])
    errors, cpu = np.array(errors), np.array(cpu)
    return {"frames": len(frames), "accepted": accepted, "tracked": tracked,
            "median_m": float(np.median(errors)) if accepted else math.nan,
            "p90_m": float(np.percentile(errors, 90)) if accepted else math.nan,
            "false": int((errors > 50).sum()), "nees": float(np.mean(nees)) if nees else math.nan,
            "tracked_nees": float(np.mean(tracked_nees)) if tracked_nees else math.nan,
            "ms_median": float(np.median(cpu)), "ms_p95": float(np.percentile(cpu, 95)),
            "ms_mean": float(cpu.mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/refine_tracking.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--track-frames", type=int, nargs="+", default=[10, 30],
                        help="track_frames values compared with 0 (SIFT on every frame)")
    parser.add_argument("--yaw-mode", choices=("north", "track"), default="north",
                        help="the camera held north-up (a gimbal) or looking along the track "
                             "(turning with the drone)")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="RefineConfig fields for the tracked rows, e.g. track_points=50")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/refine-tracking"))
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    fields = {}
    for item in args.set:
        name, _, value = item.partition("=")
        kind = type(getattr(RefineConfig(), name))
        fields[name] = value.lower() in ("1", "true") if kind is bool else kind(value)
    if fields.get("track_async"):
        print("track_async: the ms columns are the caller's thread (the frame's latency); SIFT "
              "runs on a background thread\n")
    args.workdir.mkdir(parents=True, exist_ok=True)
    print("| flight | track_frames | accepted | of them tracked | median / p90 m | false > 50 m "
          "| mean NEES (tracked) | ms CPU median / p95 / mean |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.datasets:
        spec = DATASETS[name]
        for seed in args.seeds:
            map_dir, tree, frames, intrinsics, guess, offset = flight_frames(
                name, spec, args.workdir, args.frames, seed, args.yaw_mode)
            for track in [0, *args.track_frames]:
                config = replace(RefineConfig(), nominal_height_m=guess, max_height_m=4000.0,
                                 track_frames=track)
                if track:
                    config = replace(config, **fields)
                refiner = Refiner.for_map(map_dir, config)
                r = run(refiner, tree, frames, intrinsics)
                refiner.close()
                print(f"| {name} seed {seed} | {track} | {r['accepted']} of {r['frames']} | "
                      f"{r['tracked']} | {r['median_m']:.1f} / {r['p90_m']:.1f} | {r['false']} | "
                      f"{r['nees']:.2f} ({r['tracked_nees']:.2f}) | {r['ms_median']:.2f} / "
                      f"{r['ms_p95']:.2f} / {r['ms_mean']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
