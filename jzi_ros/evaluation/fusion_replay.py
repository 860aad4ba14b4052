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
Temporal fusion in replay: filters over the frames' measurements, next to single frames.

The localizer runs once per frame (it stores each frame's :class:`Measurement`); the filters
run after the frame loop, in stamp order, so several motion models (the random walk, and the
bag's odometry when it has some) are compared on the very same measurements, and fitting the
likelihood exponent re-runs only the filters (milliseconds per frame), never the network.

The prior-seeded zoom (``FusionConfig.seed_beam``) cannot work that way: each frame's zoom
depends on that filter's prior, so :class:`SeededRuns` localizes every frame again inside the
frame loop, once per seeded filter, and the report shows them next to the unseeded runs.

When the frames went through geometric refinement (``--method refine``), the filters run twice:
on the zoom's measurements alone, and with each refined fix as a point measurement too (what
the node does with ``refine.enabled``), so the report shows what the refined fixes add.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
import logging
from pathlib import Path
import time
from typing import Any, Sequence

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.evaluation.bag_heading import (HeadingOptions, message_yaw, ODOMETRY_TYPE,
                                            read_heading)
from jzi_ros.evaluation.bags import iter_messages, require_topic, stamp_ns
from jzi_ros.evaluation.metrics import (calibration_summary, DEFAULT_RECALL_M, error_summary, fmt,
                                        recall_at)
from jzi_ros.inference.calibration import fit_covariance_scale
from jzi_ros.inference.fix import Fix, FixStatus
from jzi_ros.inference.fusion import CellFilter
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.measurement import PointMeasurement
from jzi_ros.inference.motion import HeadingSeries, OdometryTrack
from jzi_ros.inference.visual_odometry import filter_config

LOG = logging.getLogger(__name__)

RANDOM_WALK = "fused_random_walk"
ODOMETRY = "fused_odometry"
VISUAL = "fused_visual"  # visual odometry from the frames themselves
SINGLE = "single_frame"
SEEDED = "_seeded"  # suffix of a run whose zoom was seeded by its own filter's prior
REFINED = "_refined"  # suffix of a run that also fuses the refined fixes
LABELS = {SINGLE: "single frame", RANDOM_WALK: "fused, random walk",
          ODOMETRY: "fused, odometry", VISUAL: "fused, visual odometry",
          RANDOM_WALK + SEEDED: "fused + seeded zoom, random walk",
          ODOMETRY + SEEDED: "fused + seeded zoom, odometry",
          RANDOM_WALK + REFINED: "fused + refined fixes, random walk",
          ODOMETRY + REFINED: "fused + refined fixes, odometry"}
# what --fit-fusion and the demo recipe fit, in this order (fit_fusion)
FIT_GRIDS = {"accel_sigma_mps2": (1.0, 2.0, 4.0, 6.0, 8.0, 12.0),
             "likelihood_exponent": (0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
             "proposal_fraction": (0.05, 0.1, 0.2)}
# what it fits for visual odometry's filter when the replays have it, in this order
FIT_VISUAL_GRIDS = {"visual_noise_fraction": (0.1, 0.15, 0.2, 0.3),
                    "visual_scale_sigma": (0.0, 0.01, 0.02, 0.03)}
# FIX gates (fix_mode_mass, fix_sigma_m), stricter first within each mass
FIT_GATES = tuple((mass, sigma) for mass in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
                  for sigma in (75.0, 100.0, 150.0, 250.0))


@dataclass
class FusionOptions:
    """What ``jzi replay --fusion`` fuses and with what."""

    config: FusionConfig
    odom_topic: str | None = None
    imu_topic: str | None = None
    heading_source: str = "odometry"  # odometry, imu or fixed (jzi_ros.heading)
    heading_yaw_deg: float = 0.0  # ENU yaw for heading_source fixed
    fit: bool = False  # fit likelihood exponent + covariance scale on this bag
    # the map's georeferencing 1-sigma the filters add to their fixes (--georef-sigma-m);
    # None: the map's, as refinement (maps.georef.georef_sigma_used)
    georef_sigma_m: float | None = None
    # also a filter moved by the frames' own visual odometry (--visual-odometry); its camera:
    visual_odometry: Any = None  # inference.visual_odometry.VisualOdometryConfig, or None
    intrinsics: Any = None  # inference.camera_pose.Intrinsics of the frames, or None


def read_odometry(reader: Any, bag: Path, options: FusionOptions) -> OdometryTrack | None:
    """Read the bag's odometry (twist + heading) into an OdometryTrack; None without topic."""
    if not options.odom_topic:
        return None
    source = heading_options(options)
    from_odometry = source.source == "odometry"  # then one pass reads twist and yaw
    track = OdometryTrack(HeadingSeries("odometry") if from_odometry
                          else read_heading(reader, bag, source))
    require_topic(reader, bag, options.odom_topic, (ODOMETRY_TYPE,), "odometry", "--odom-topic")
    for msg in iter_messages(reader, bag, options.odom_topic):
        twist = msg.twist.twist.linear
        yaw = message_yaw(msg, "odometry", options.odom_topic) if from_odometry else None
        track.add(stamp_ns(msg), float(twist.x), float(twist.y), yaw)
    if not track.stamps_ns:
        raise JziError(f"bag {bag}: no usable odometry on {options.odom_topic}")
    return track


def heading_options(options: FusionOptions) -> HeadingOptions:
    """Return the fusion's heading source as :class:`HeadingOptions` (one reader for both)."""
    return HeadingOptions(options.heading_source, options.odom_topic, options.imu_topic,
                          options.heading_yaw_deg)


def run_filter(records: Sequence[Any], tree, config: FusionConfig,
               track: OdometryTrack | None, altitude_m: float = 0.0,
               altitude_sigma_m: float = 100.0, refined: bool = False,
               georef_sigma_m: float = 0.0) -> list[tuple[Fix, Any]]:
    """
    One filter over the records (stamp order): ``(fused Fix, FilterEstimate)`` per record.

    Records without a measurement (skipped frames) only propagate the filter. ``refined``:
    a record whose fix is refined also brings that fix as a point measurement.
    ``georef_sigma_m``: the map's georeferencing 1-sigma (CellFilter).
    """
    fused = CellFilter(tree, config, georef_sigma_m)
    out = []
    previous: int | None = None
    for record in records:
        start = time.perf_counter()
        displacement = None
        if track is not None and previous is not None:
            displacement = track.displacement(previous, record.stamp_ns)
        point = PointMeasurement.from_fix(getattr(record, "fix", None)) if refined else None
        estimate = fused.step(record.stamp_ns, getattr(record, "measurement", None),
                              displacement, point)
        fix = fused.fix(estimate, altitude_m, altitude_sigma_m)
        elapsed = (time.perf_counter() - start) * 1e3
        out.append((replace(fix, timings_ms={"filter": elapsed}), estimate))
        previous = record.stamp_ns
    return out


class SeededRuns:
    """
    Filters whose zoom is seeded by their own prior: they localize each frame online.

    ``frame(record, rgb)`` once per selected frame in stamp order (``rgb`` None for a frame
    that could not be decoded): seeds from the filter's prior, the seeded zoom, the filter
    step. Each fused Fix's timings hold ``filter`` (seeds + step + Fix, ms) and ``frame``
    (the seeded localization, ms) and ``seeded`` (1.0 when the zoom was seeded).
    """

    def __init__(self, localizer: Any, config: FusionConfig, track: OdometryTrack | None,
                 georef_sigma_m: float = 0.0) -> None:
        self.localizer = localizer
        localizer.warm_seeded(config.fix_sigma_m)  # build the seeded search before frame 1
        self.track = track
        motions = {RANDOM_WALK: None, **({ODOMETRY: track} if track is not None else {})}
        self.filters = {name + SEEDED: (CellFilter(localizer.tree, config, georef_sigma_m),
                                        motion)
                        for name, motion in motions.items()}
        self.fixes: dict[str, list[Fix]] = {name: [] for name in self.filters}
        self.previous: int | None = None

    def frame(self, record: Any, rgb: np.ndarray | None, heading_deg: float | None = None
              ) -> None:
        for name, (fused, motion) in self.filters.items():
            displacement = None
            if motion is not None and self.previous is not None:
                displacement = motion.displacement(self.previous, record.stamp_ns)
            start = time.perf_counter()
            seeds = fused.seed_cells(record.stamp_ns, displacement)
            seeded_at = time.perf_counter()
            measurement = None
            if rgb is not None:
                heading = {} if heading_deg is None else {"heading_deg": heading_deg}
                _, measurement = self.localizer.localize_measured(rgb, seeds=seeds, **heading)
            localized_at = time.perf_counter()
            estimate = fused.step(record.stamp_ns, measurement, displacement)
            fix = fused.fix(estimate, 0.0, 100.0)
            filter_ms = ((seeded_at - start) + (time.perf_counter() - localized_at)) * 1e3
            self.fixes[name].append(replace(fix, timings_ms={
                "filter": filter_ms, "frame": (localized_at - seeded_at) * 1e3,
                "seeded": float(seeds is not None)}))
        self.previous = record.stamp_ns


def fuse_replay(result: Any, options: FusionOptions, track: OdometryTrack | None,
                seeded: SeededRuns | None = None, georef_sigma_m: float = 0.0,
                visual: Any = None) -> None:
    """
    Run the filters over a finished replay; fills ``result.fused`` (and ``fusion_fit``).

    ``seeded``: the prior-seeded runs that went along with the frame loop, added as they are.
    ``visual``: the frames' :class:`~jzi_ros.inference.visual_odometry.VisualOdometry`, fed
    in the frame loop: one more filter moves by it.
    ``georef_sigma_m``: the map's georeferencing 1-sigma the filters add to their fixes (the
    fit never sees it: it scores the beliefs, which live in the map's frame).
    """
    config = options.config
    result.fusion_track = track
    result.fusion_visual = visual
    result.fusion_georef_sigma_m = georef_sigma_m
    if options.fit:
        result.fusion_fit = fit_fusion(result, config)
        config = replace(config, **result.fusion_fit["config"])
    result.fusion_config = config
    runs = {RANDOM_WALK: None}
    if track is not None:
        runs[ODOMETRY] = track
    if visual is not None:
        runs[VISUAL] = visual
    # refinement ran on the frames (--method refine): the same filters with the refined fixes
    variants = {"": False}
    if any(getattr(record.fix, "refinement", "") for record in result.records
           if record.fix is not None):
        variants[REFINED] = True
    for suffix, refined in variants.items():
        for name, motion in runs.items():
            result.fused[name + suffix] = [fix for fix, _ in run_filter(
                result.records, result.tree,
                filter_config(config) if name == VISUAL else config, motion,
                refined=refined, georef_sigma_m=georef_sigma_m)]
    if seeded is not None:
        result.fused.update(seeded.fixes)


def _track_errors(result: Any, fixes: Sequence[Fix | None]) -> tuple[np.ndarray, ...]:
    """(error_en [N, 2], cov [N, 2, 2], is_fix [N], stamps_s [N]) over the scored frames."""
    tree = result.tree
    rows = [(r, f) for r, f in zip(result.records, fixes) if r.used and f is not None]
    if not rows:
        return np.zeros((0, 2)), np.zeros((0, 2, 2)), np.zeros(0, bool), np.zeros(0)
    est = np.array([tree.to_local(f.latitude, f.longitude) for _, f in rows], float)
    gt = np.array([(r.gt.east_m, r.gt.north_m) for r, _ in rows], float)
    cov = np.array([f.covariance_enu[:2, :2] for _, f in rows], float)
    is_fix = np.array([f.status == FixStatus.FIX for _, f in rows], bool)
    stamps = np.array([r.stamp_ns for r, _ in rows], np.int64)
    return est - gt, cov, is_fix, (stamps - stamps.min()) / 1e9


def track_summary(result: Any, fixes: Sequence[Fix | None]) -> dict[str, Any]:
    """Recall/median of every scored frame's estimate, FIX share, NEES, time to first fix."""
    error_en, cov, is_fix, t = _track_errors(result, fixes)
    errors = np.hypot(*error_en.T) if len(error_en) else np.zeros(0)
    first = float(t[np.argmax(is_fix)]) if is_fix.any() else None
    filter_ms = [f.timings_ms["filter"] for f in fixes
                 if f is not None and "filter" in f.timings_ms]
    frame_ms = [f.timings_ms["frame"] for f in fixes if f is not None and "frame" in f.timings_ms]
    seeded = [f.timings_ms["seeded"] for f in fixes
              if f is not None and "seeded" in f.timings_ms]
    return {
        "all": {**error_summary(errors),
                "recall": {f"{d:g}": v for d, v in recall_at(errors, DEFAULT_RECALL_M).items()}},
        "fix": {**error_summary(errors[is_fix]), "recall": {
            f"{d:g}": v for d, v in recall_at(errors[is_fix], DEFAULT_RECALL_M).items()}},
        "fix_fraction": float(is_fix.mean()) if is_fix.size else 0.0,
        "time_to_first_fix_s": first,
        "calibration": calibration_summary(error_en[is_fix], cov[is_fix]),
        "filter_ms_median": float(np.median(filter_ms)) if filter_ms else None,
        # seeded runs: their own (seeded) localization per frame, and how often it was seeded
        "frame_ms_median": float(np.median(frame_ms)) if frame_ms else None,
        "seeded_fraction": float(np.mean(seeded)) if seeded else None,
    }


def fusion_summary(result: Any) -> dict[str, Any] | None:
    """Return the side-by-side block of the report (None when the replay ran without fusion)."""
    fused = getattr(result, "fused", None)
    if not fused:
        return None
    rows = {SINGLE: track_summary(result, [r.fix for r in result.records])}
    for name, fixes in fused.items():
        rows[name] = track_summary(result, fixes)
    config = getattr(result, "fusion_config", None)
    return {"runs": rows, "config": None if config is None else vars(config).copy(),
            "fit": getattr(result, "fusion_fit", None),
            "visual_odometry": _visual_counts(getattr(result, "fusion_visual", None), config),
            "georef_sigma_m": getattr(result, "fusion_georef_sigma_m", 0.0)}


def _visual_counts(visual: Any, config: FusionConfig | None) -> dict[str, Any] | None:
    """Return how many frame pairs visual odometry matched, its settings and its filter's."""
    if visual is None:
        return None
    noise = {} if config is None else {
        "noise_fraction": config.visual_noise_fraction, "noise_mps": config.visual_noise_mps,
        "scale_sigma": config.visual_scale_sigma}
    return {"matched": visual.matched, "tried": visual.tried, "guessed_focal": visual.guessed,
            "config": asdict(visual.config), "filter": noise}


def fitted_words(fit: dict[str, Any]) -> str:
    """Return the fitted values as ``key value, ...`` (the keys of --fusion-config)."""
    return ", ".join(f"{key} {value:.4g}" for key, value in fit["config"].items())


def fusion_markdown(block: dict[str, Any] | None) -> list[str]:
    """Report lines: one row per run (single frame, fused random walk, fused odometry)."""
    if not block:
        return []
    runs = block["runs"]
    thresholds = list(next(iter(runs.values()))["all"]["recall"])
    lines = ["## Temporal fusion (every scored frame's estimate; FIX columns: published fixes)",
             "", "| run | " + " | ".join(f"R@{d} m" for d in thresholds)
             + " | median | FIX share | FIX median | FIX mean NEES | first FIX | filter ms |",
             "|---|" + "---:|" * (len(thresholds) + 6)]
    for name, row in runs.items():
        first = row["time_to_first_fix_s"]
        lines.append(
            f"| {LABELS.get(name, name)} | "
            + " | ".join(fmt(v, ".1f", " %", 100.0) for v in row["all"]["recall"].values())
            + f" | {fmt(row['all']['median_m'], '.1f', ' m')} | "
            f"{fmt(row['fix_fraction'], '.1f', ' %', 100.0)} | "
            f"{fmt(row['fix']['median_m'], '.1f', ' m')} | "
            f"{fmt(row['calibration']['mean_nees'], '.2f')} | "
            f"{fmt(first, '.0f', ' s')} | {fmt(row['filter_ms_median'], '.2f')} |")
    visual = block.get("visual_odometry")
    if visual:
        cfg = visual.get("config") or {}
        noise = visual.get("filter") or cfg  # reports before the noise moved to FusionConfig
        lines += ["", f"Visual odometry matched {visual['matched']} of {visual['tried']} "
                  f"consecutive frame pairs (the rest: random walk)"
                  + ("; focal length guessed (70 deg)" if visual["guessed_focal"] else "")
                  + (f"; scaled by a {cfg['height_m']:g} m height" if cfg else "")
                  + (f", its filter with motion noise {noise['noise_fraction']:g} of the "
                     f"distance + {noise['noise_mps']:g} m/s and scale sigma "
                     f"{noise['scale_sigma']:g} per step" if "scale_sigma" in noise else "")
                  + "."]
    if block.get("georef_sigma_m"):
        lines += ["", f"Fused FIX covariances hold the map's georeferencing 1-sigma "
                  f"{block['georef_sigma_m']:g} m per axis, added once (refinement.md)."]
    if block.get("fit"):
        fit = block["fit"]
        lines += ["", f"Fitted on this bag: {fitted_words(fit)} (R@100 m by value: "
                  f"{fit['recall_100']}; FIX gate mass/sigma, right minus wrong FIXes: "
                  f"{fit['gate_right_minus_wrong']})"]
    lines += ["", "![tracks](fusion_tracks.png)", ""]
    return lines


def _runs(results: Sequence[Any], config: FusionConfig, seeds: int, odometry: bool = False,
          visual: bool = False) -> list[tuple[Any, Fix, Any]]:
    """
    ``(record, fix, estimate)`` of every scored frame over ``seeds`` filter seeds.

    Random walk, or (``odometry``) each result's ``fusion_track``, or (``visual``) its visual
    odometry with its filter settings (results without the motion skipped).
    """
    rows = []
    for seed in range(seeds):
        trial = replace(config, seed=config.seed + seed)
        for result in results:
            motion = (getattr(result, "fusion_track", None) if odometry
                      else getattr(result, "fusion_visual", None) if visual else None)
            if (odometry or visual) and motion is None:
                continue
            runs = run_filter(result.records, result.tree,
                              filter_config(trial) if visual else trial, motion)
            rows += [(record, fix, est) for record, (fix, est) in zip(result.records, runs)
                     if record.used]
    return rows


def _errors(rows: Sequence[tuple[Any, Fix, Any]]) -> np.ndarray:
    """``[N, 2]`` estimate - truth (East/North metres) of the rows' filter estimates."""
    if not rows:
        return np.zeros((0, 2))
    return np.array([est.mean_en - (record.gt.east_m, record.gt.north_m)
                     for record, _, est in rows], np.float64)


def fit_fusion(results: Any, config: FusionConfig, grids: dict[str, Sequence[float]] | None = None,
               gates: Sequence[tuple[float, float]] = FIT_GATES, seeds: int = 10
               ) -> dict[str, Any]:
    """
    Fit the random-walk filter on (validation) replays, pooled; return the fitted values.

    1. The parameters of ``grids`` (default :data:`FIT_GRIDS`: acceleration noise, likelihood
       exponent, proposal fraction), one after the other, each keeping the value whose
       random-walk filter has the best R@100 m over all scored frames, averaged over
       ``seeds`` filter seeds (one seed's curve is noisy on hard flights; ties: the earlier
       value of the grid).
    2. The FIX gate (``fix_mode_mass``, ``fix_sigma_m``) from ``gates``: the one with the most
       right (within 100 m) minus wrong FIXes, so a published FIX is right more often than
       wrong (ties: the stricter gate, listed first).
    3. ``covariance_scale``: the NEES of those FIX frames matched to the chi-square(2) median
       (``--calibrate``'s robust target: a few frames of a wrong mode must not inflate every
       covariance). ``odom_covariance_scale`` the same way on the odometry filter's FIX
       frames, for the results with odometry (``fusion_track``; kept when none has): its
       belief is far tighter than the random walk's, one scale cannot fit both.
    4. With visual odometry in the results (``fusion_visual``): ``visual_noise_fraction`` then
       ``visual_scale_sigma`` (:data:`FIT_VISUAL_GRIDS`), each by its filter's R@100 m as in 1.
    """
    results = results if isinstance(results, (list, tuple)) else [results]
    grids = FIT_GRIDS if grids is None else grids
    config = replace(config, covariance_scale=1.0)
    recall: dict[str, dict[str, float]] = {}
    rows: list = []
    for name, values in grids.items():
        best: tuple[float, float, list] | None = None
        recall[name] = {}
        for value in values:
            trial_rows = _runs(results, replace(config, **{name: value}), seeds)
            errors = np.hypot(*_errors(trial_rows).T)
            r100 = float(np.mean(errors <= 100.0)) if len(errors) else 0.0
            recall[name][f"{value:g}"] = round(r100, 4)
            if best is None or r100 > best[1]:
                best = (value, r100, trial_rows)
        if best is None:
            raise JziError(f"fusion fit: no value of {name} to try")
        config, rows = replace(config, **{name: best[0]}), best[2]
    if not rows:  # an empty grid: run the filter as configured
        rows = _runs(results, config, seeds)
    error_en = _errors(rows)
    errors = np.hypot(*error_en.T) if len(error_en) else np.zeros(0)
    mass = np.array([est.modes[0].mass if est.modes else 0.0 for _, _, est in rows])
    sigma = np.sqrt(np.array([np.linalg.eigvalsh(est.cov_en)[-1] for _, _, est in rows]))
    score: dict[str, int] = {}
    best_gate: tuple[tuple[float, float], int] | None = None
    for mode_mass, sigma_m in gates:
        fixed = (mass >= mode_mass) & (sigma <= sigma_m)
        net = int(np.sum(errors[fixed] <= 100.0)) - int(np.sum(errors[fixed] > 100.0))
        score[f"{mode_mass:g}/{sigma_m:g}"] = net
        if best_gate is None or net > best_gate[1]:
            best_gate = ((mode_mass, sigma_m), net)
    if best_gate is None:
        raise JziError("fusion fit: no FIX gate to try")
    (mode_mass, sigma_m), _ = best_gate
    fixed = (mass >= mode_mass) & (sigma <= sigma_m)
    if fixed.sum() < 2:
        raise JziError(f"fusion fit: only {int(fixed.sum())} fused FIX frames with ground "
                       "truth; use longer validation bags")
    scale = fit_covariance_scale(error_en[fixed], np.array([est.cov_en for _, _, est in rows])[
        fixed], config.sigma_floor_m, "median")
    fitted = {name: getattr(config, name) for name in grids}
    fitted.update(fix_mode_mass=mode_mass, fix_sigma_m=sigma_m, covariance_scale=float(scale))
    config = replace(config, fix_mode_mass=mode_mass, fix_sigma_m=sigma_m)
    odometry = [row for row in _runs(results, config, seeds, odometry=True) if row[1].ok]
    if len(odometry) >= 2:
        fitted["odom_covariance_scale"] = float(fit_covariance_scale(
            _errors(odometry), np.array([est.cov_en for _, _, est in odometry]),
            config.sigma_floor_m, "median"))
    if any(getattr(r, "fusion_visual", None) is not None for r in results):
        # 4. visual odometry's motion noise and scale state, on its own filter's R@100 m
        for name, values in FIT_VISUAL_GRIDS.items():
            recall[name] = {}
            for value in values:
                errors = np.hypot(*_errors(_runs(results, replace(config, **{name: value}),
                                                 seeds, visual=True)).T)
                recall[name][f"{value:g}"] = round(float(np.mean(errors <= 100.0)), 4) \
                    if len(errors) else 0.0
            best = max(values, key=lambda v: (recall[name][f"{v:g}"], -values.index(v)))
            config = replace(config, **{name: best})
            fitted[name] = best
    LOG.info("fusion fit: %s (R@100 %s, gate right-wrong %s)", fitted, recall, score)
    return {"config": fitted, "recall_100": recall, "gate_right_minus_wrong": score,
            "frames": sum(len(r.used) for r in results), "seeds": seeds,
            "bags": [str(r.bag) for r in results]}
