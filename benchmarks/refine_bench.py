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
Refinement benchmark: zoom, zoom + refinement and classical registration side by side.

Datasets (each prints one table; measured, never asserted):

- ``demo``: the demo world and model (``jzi demo --workdir WORKDIR`` first). Frames rendered
  like the demo bag: ``cross-day`` is the demo flight's day (other season, sun and colours than
  the map), ``same-day`` renders the map's own style (imagery of the map's epoch). The zoom is
  the real demo model.
- ``telluric``: map from ``overlap1.tif``, drone-like views rendered by homography from
  ``overlap2.tif`` (another date), and the reverse pairing. No model is trained on this area,
  so the zoom is replaced by its two extremes: ``cell right`` (the true terminal cell is the
  zoom's answer: refinement's upper bound) and ``cell wrong`` (a random cell at least 1.5 km
  away: every acceptance is a false one).
- ``autzen``: map from the orthophoto, views rendered from it with photometric changes
  (gamma, colour cast, blur, noise, occluders), same two zoom extremes.
- ``foreign``: telluric views registered against the autzen map around a random cell: no
  acceptance can be right, so this measures false acceptances alone.

Usage::

    PYTHONPATH=. python benchmarks/refine_bench.py --frames 80 --detectors sift orb
        --demo-workdir /tmp/refine-demo --workdir /tmp/refine-bench
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
import json
import math
from pathlib import Path
import time

import cv2
import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.evaluation.classical import ClassicalLocalizer, format_methods, method_summary
from jzi_ros.evaluation.metrics import nees_2d
from jzi_ros.geo import CellTree
from jzi_ros.inference.calibration import fit_covariance_scale
from jzi_ros.inference.camera_pose import Intrinsics
from jzi_ros.inference.fix import Hypothesis
from jzi_ros.inference.refine import RefineConfig, Refiner
from jzi_ros.training.camera import CameraModel, CameraPose, render_view
from jzi_ros.training.render import degrade_frame

DATA = Path("/work/shared/data")


def rss_mib() -> float:
    """Return this process's resident memory (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Frame:
    image: np.ndarray
    east_m: float
    north_m: float
    intrinsics: Intrinsics


def cell_of(tree: CellTree, east: float, north: float) -> Hypothesis:
    path = tree.path_of_local(east, north)
    ce, cn = tree.cell_center_local(path)
    return Hypothesis(path, 1.0, 0.0, ce, cn, 0.0, 0.0)


def wrong_cell(tree: CellTree, east: float, north: float, rng, min_m: float) -> Hypothesis:
    half = tree.size_m / 2
    for _ in range(1000):
        e, n = rng.uniform(-half, half, 2)
        if math.hypot(e - east, n - north) >= min_m:
            return cell_of(tree, e, n)
    raise RuntimeError("map too small for a wrong cell")


def render_frames(imagery_path: Path, tree: CellTree, count: int, rng, altitude, hfov,
                  size=(320, 240), photometric=True, margin_m=0.0) -> list[Frame]:
    """Drone-like views rendered by homography from a north-up local-frame raster."""
    import rasterio

    with rasterio.open(imagery_path) as ds:
        source = np.moveaxis(ds.read((1, 2, 3)), 0, -1)
        t = ds.transform
    to_local = np.array([[t.a, t.b, t.c], [t.d, t.e, t.f], [0, 0, 1.0]])
    half = tree.size_m / 2 - margin_m
    frames = []
    while len(frames) < count:
        camera = CameraModel(size[0], size[1], float(rng.uniform(*hfov)))
        pose = CameraPose(float(rng.uniform(-half, half)), float(rng.uniform(-half, half)),
                          float(rng.uniform(*altitude)), float(rng.uniform(0, 360)),
                          float(rng.uniform(75, 90)))
        image = render_view(source, to_local, camera, pose)
        if (image.max(axis=2) == 0).mean() > 0.05:
            continue  # views off the imagery's edge or over a no-data wedge
        if photometric:
            image = photometric_change(image, rng)
        K = camera.K()
        frames.append(Frame(image, pose.east_m, pose.north_m,
                            Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2])))
    return frames


def photometric_change(image: np.ndarray, rng) -> np.ndarray:
    """Gamma, colour cast and contrast change, then the demo's camera degradation."""
    img = image.astype(np.float32) / 255.0
    img = img ** rng.uniform(0.6, 1.6)
    img = img * rng.uniform(0.75, 1.25, 3)[None, None, :]
    img = (img - 0.5) * rng.uniform(0.7, 1.3) + 0.5
    return degrade_frame(np.clip(img * 255, 0, 255).astype(np.uint8), rng, 1.0)


def run_methods(name: str, frames: list[Frame], map_dir: Path, tree: CellTree,
                zoom_fixes, hypotheses_sets: dict, configs: dict, rng, **overrides) -> dict:
    """Score every method on the frames; returns {method: summary}."""
    configs = {k: replace(c, **overrides) for k, c in configs.items()}
    rows = {}
    truth = np.array([(f.east_m, f.north_m) for f in frames])
    if zoom_fixes is not None:
        fixes, latency = zoom_fixes
        errors = [math.hypot(x.east_m - e, x.north_m - n) for x, (e, n) in zip(fixes, truth)]
        rows["zoom"] = method_summary(errors, [x.ok for x in fixes], latency)
    for label, config in configs.items():
        base = rss_mib()
        refiner = Refiner.for_map(map_dir, config)
        for hyp_label, hypotheses in hypotheses_sets.items():
            errors, fixed, refined, latency, calib = [], [], [], [], []
            zoom_ok = ([x.ok for x in zoom_fixes[0]] if zoom_fixes is not None
                       else [True] * len(frames))
            for frame, hyps, fallback, ok in zip(frames, hypotheses, _fallbacks(hypotheses),
                                                 zoom_ok):
                start = time.perf_counter()
                result = refiner.register(frame.image, hyps, frame.intrinsics)
                latency.append((time.perf_counter() - start) * 1e3)
                if result.accepted:
                    pos = (result.pose.east_m, result.pose.north_m)
                    calib.append((pos[0] - frame.east_m, pos[1] - frame.north_m,
                                  result.raw_covariance_en, result.covariance_en))
                else:
                    pos = fallback
                errors.append(math.hypot(pos[0] - frame.east_m, pos[1] - frame.north_m))
                fixed.append(result.accepted or ok)  # rejected: the zoom's fix or NO_FIX
                refined.append(result.accepted)
            row = method_summary(errors, fixed, latency, refined)
            row["memory_mib"] = rss_mib() - base
            row.update(covariance_check(calib, config))
            rows[f"{hyp_label} + refine ({label})"] = row
        refiner.close()
    for label, config in configs.items():
        if not config.use_index or config.global_fallback:
            continue  # the classical baseline always uses the index (one row per detector)
        base = rss_mib()
        try:
            classical = ClassicalLocalizer(map_dir, config)
        except JziError as err:  # the index holds another detector's features
            print(f"classical ({label}) skipped: {err}")
            continue
        memory = rss_mib() - base
        errors, fixed, latency = [], [], []
        for frame in frames:
            start = time.perf_counter()
            fix = classical.localize(frame.image, frame.intrinsics)
            latency.append((time.perf_counter() - start) * 1e3)
            errors.append(math.hypot(fix.east_m - frame.east_m, fix.north_m - frame.north_m))
            fixed.append(fix.ok)
        row = method_summary(errors, fixed, latency)
        row["memory_mib"] = max(memory, classical.nbytes / 2**20)
        rows[f"classical ({label})"] = row
    print(f"\n### {name}: {len(frames)} frames\n")
    print(format_methods(rows))
    for method, row in rows.items():
        if "mean_nees" in row:
            print(f"- {method}: mean NEES {row['mean_nees']:.2f} (median "
                  f"{row['median_nees']:.2f}) at covariance_scale {config.covariance_scale:g} "
                  f"over {row['accepted_frames']} accepted frames; scale for mean NEES 2: "
                  f"{row['fitted_scale_mean']:.3g}, for median: "
                  f"{row['fitted_scale_median']:.3g}")
    return rows


def covariance_check(calib: list, config: RefineConfig) -> dict:
    """Return the mean NEES of the accepted fixes and the scale that would make it 2."""
    if len(calib) < 2:
        return {}
    errors = np.array([(e, n) for e, n, _, _ in calib])
    raw = np.array([c[2] for c in calib])
    published = np.array([c[3] for c in calib])
    nees = nees_2d(errors, published)
    # the scale that would make the NEES right, keeping the floor (one map resolution per row)
    floor = float(np.median(np.sqrt(np.min(np.linalg.eigvalsh(published), axis=1))))
    scale = fit_covariance_scale(errors, raw, floor, "mean")
    median_scale = fit_covariance_scale(errors, raw, floor, "median")
    return {"mean_nees": float(nees.mean()), "median_nees": float(np.median(nees)),
            "fitted_scale_mean": scale, "fitted_scale_median": median_scale,
            "accepted_frames": len(calib)}


def _fallbacks(hypotheses):
    """Return the position published when refinement rejects: the zoom's top cell centre."""
    return [(h[0].east_m, h[0].north_m) for h in hypotheses]


def demo_dataset(args, configs) -> dict:
    from jzi_ros.demo import stages
    from jzi_ros.demo.flight import FlightSpec, fly
    from jzi_ros.demo.flow import model_card, shipped_model
    from jzi_ros.demo.style import render, Style
    from jzi_ros.demo.views import capture
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig

    model = shipped_model()
    spec, tree, _ = model_card(model)
    map_dir = Path(args.demo_workdir) / "map"
    world = stages.world_of(spec)
    localizer = Localizer.from_paths(map_dir, model, LocalizerConfig(device="cpu"))
    results = {}
    for day in ("cross-day", "same-day"):
        rng, style = stages.flight_day(args.seed)
        styled = render(world, style if day == "cross-day" else Style.map())
        flight = FlightSpec(frames=args.frames)
        poses, _ = fly(rng, tree.size_m, flight)
        camera = flight.camera
        K = camera.K()
        intrinsics = Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        frames = [Frame(capture(world, styled, camera, pose, rng), pose.east_m, pose.north_m,
                        intrinsics) for pose in poses]
        fixes, latency, hyps = [], [], []
        for frame in frames:
            start = time.perf_counter()
            fix = localizer.localize(frame.image)
            latency.append((time.perf_counter() - start) * 1e3)
            fixes.append(fix)
            hyps.append(fix.hypotheses)
        encoder_ms = float(np.median([f.timings_ms.get("encode", np.nan) for f in fixes]))
        print(f"\ndemo {day}: zoom encoder {encoder_ms:.1f} ms/frame (median)")
        results[day] = run_methods(f"demo {day}", frames, map_dir, tree, (fixes, latency),
                                   {"zoom": hyps}, configs, rng)
        results[day]["encoder_ms"] = encoder_ms
    localizer.close()
    return results


def build_map(source: Path, out: Path, tree: CellTree, crs: str | None = None) -> Path:
    from jzi_ros.maps.build import build_pyramid

    if not (out / "features.npz").is_file():
        build_pyramid(source, out, tree, tile_px=64, overwrite=True, progress=False, crs=crs,
                      max_nodata=None)
    return out


def extremes(frames, tree, rng, min_wrong_m):
    right = [[cell_of(tree, f.east_m, f.north_m)] for f in frames]
    wrong = [[wrong_cell(tree, f.east_m, f.north_m, rng, min_wrong_m)] for f in frames]
    return {"cell right": right, "cell wrong": wrong}


def telluric_dataset(args, configs) -> dict:
    """Two dates: map from one, queries from the other, both directions."""
    work = Path(args.workdir)
    # common footprint of the two scenes (lat 42.0417..42.0864, lon 12.3594..12.4119)
    tree = CellTree(42.064, 12.3857, 3600.0, grid=4, depth=3)
    maps = {k: build_map(DATA / "telluric" / f"overlap{k}.tif", work / f"telluric{k}", tree)
            for k in (1, 2)}
    offset = measure_offset(maps[1] / "imagery.tif", maps[2] / "imagery.tif")
    print(f"\ntelluric: date 2 is offset from date 1 by ({offset[0]:+.1f}, {offset[1]:+.1f}) m "
          "E/N (phase correlation); ground truth corrected by it")
    results = {}
    rng = np.random.default_rng(args.seed)
    for query, ref in ((2, 1), (1, 2)):
        frames = render_frames(maps[query] / "imagery.tif", tree, args.frames, rng,
                               altitude=tuple(args.telluric_altitude), hfov=(60.0, 75.0),
                               photometric=False, margin_m=300.0)
        sign = 1.0 if query == 2 else -1.0
        for f in frames:  # the truth in the reference date's frame
            f.east_m -= sign * offset[0]
            f.north_m -= sign * offset[1]
        results[f"{query}->{ref}"] = run_methods(
            f"telluric: views from date {query}, map from date {ref}", frames, maps[ref],
            tree, None, extremes(frames, tree, rng, 1500.0), configs, rng,
            nominal_height_m=float(np.mean(args.telluric_altitude)), max_height_m=4000.0)
    return results


def measure_offset(a: Path, b: Path) -> tuple[float, float]:
    """Shift (east, north metres) of imagery b relative to a by phase correlation."""
    import rasterio

    with rasterio.open(a) as da, rasterio.open(b) as db:
        ga = cv2.cvtColor(np.moveaxis(da.read((1, 2, 3)), 0, -1), cv2.COLOR_RGB2GRAY)
        gb = cv2.cvtColor(np.moveaxis(db.read((1, 2, 3)), 0, -1), cv2.COLOR_RGB2GRAY)
        res = da.transform.a
    both = (ga > 0) & (gb > 0)
    rows, cols = np.nonzero(both)
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    win = cv2.createHanningWindow((int(c1 - c0), int(r1 - r0)), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(ga[r0:r1, c0:c1].astype(np.float32),
                                     gb[r0:r1, c0:c1].astype(np.float32), win)
    return dx * res, -dy * res


def autzen_dataset(args, configs) -> dict:
    work = Path(args.workdir)
    tree = CellTree(44.0562, -123.0690, 950.0, grid=4, depth=3)
    map_dir = build_map(DATA / "autzen" / "autzen.jpg", work / "autzen", tree,
                        crs=str(DATA / "autzen" / "autzen-srs.wkt"))
    rng = np.random.default_rng(args.seed + 1)
    frames = render_frames(map_dir / "imagery.tif", tree, args.frames, rng,
                           altitude=(120.0, 220.0), hfov=(60.0, 75.0), margin_m=150.0)
    return {"autzen": run_methods("autzen: photometrically changed views of the map imagery",
                                  frames, map_dir, tree, None,
                                  extremes(frames, tree, rng, 400.0), configs, rng,
                                  nominal_height_m=170.0)}


def foreign_dataset(args, configs) -> dict:
    """Register views of one place against the map of another: every acceptance is false."""
    work = Path(args.workdir)
    telluric = CellTree(42.064, 12.3857, 3600.0, grid=4, depth=3)
    source = build_map(DATA / "telluric" / "overlap2.tif", work / "telluric2", telluric)
    tree = CellTree(44.0562, -123.0690, 950.0, grid=4, depth=3)
    map_dir = build_map(DATA / "autzen" / "autzen.jpg", work / "autzen", tree,
                        crs=str(DATA / "autzen" / "autzen-srs.wkt"))
    rng = np.random.default_rng(args.seed + 2)
    frames = render_frames(source / "imagery.tif", telluric, args.frames, rng,
                           altitude=(1500.0, 2200.0), hfov=(60.0, 75.0), margin_m=300.0)
    cells = [[cell_of(tree, *rng.uniform(-400, 400, 2))] for _ in frames]
    for f in frames:  # no true position on this map: any accepted fix is a false one
        f.east_m = f.north_m = 1e6
    print("\nforeign: only the acceptance columns mean something (every acceptance is false)")
    return {"foreign": run_methods("foreign: telluric views against the autzen map", frames,
                                   map_dir, tree, None, {"random cell": cells}, configs, rng,
                                   nominal_height_m=170.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+",
                        default=["demo", "telluric", "autzen", "foreign"],
                        choices=("demo", "telluric", "autzen", "foreign"))
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", nargs="+", default=["sift"], choices=("sift", "orb"))
    parser.add_argument("--demo-workdir", default="/tmp/refine-demo")
    parser.add_argument("--workdir", default="/tmp/refine-bench")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--telluric-altitude", nargs=2, type=float, default=[1500.0, 2200.0],
                        metavar=("LOW", "HIGH"), help="telluric views' height range (metres)")
    parser.add_argument("--no-window", action="store_true",
                        help="skip the 'sift, window' rows (detection on an imagery window)")
    parser.add_argument("--global-fallback", action="store_true",
                        help="add 'sift, whole-map fallback' rows (RefineConfig.global_fallback)")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="RefineConfig fields for every row, e.g. min_inliers=50")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    fields = {}
    for item in args.set:
        name, _, value = item.partition("=")
        kind = type(getattr(RefineConfig(), name))
        fields[name] = kind(value)
    configs = {}
    for detector in args.detectors:
        configs[detector] = RefineConfig(detector=detector, **fields)
        if detector == "sift" and not args.no_window:  # the index vs detection on the window
            configs["sift, window"] = RefineConfig(detector=detector, use_index=False, **fields)
        if args.global_fallback:  # the zoom's cells, then the whole index when they fail
            configs[f"{detector}, whole-map fallback"] = RefineConfig(
                detector=detector, global_fallback=True, **fields)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.datasets:
        results[name] = {"demo": demo_dataset, "telluric": telluric_dataset,
                         "autzen": autzen_dataset, "foreign": foreign_dataset}[name](args, configs)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
