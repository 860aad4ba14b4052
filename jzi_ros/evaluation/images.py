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
Evaluation without a bag: a labelled manifest of images through the replay report.

A user with rendered or geotagged test images has no rosbag; the same report (recall, median,
NEES, path accuracy, plots) is built from the manifest by turning each row into a replay
frame whose ground truth is the row's latitude/longitude. Beside the model the report puts two
baselines measured on the same frames, because recall alone says little on a small map:

- chance: a uniformly random terminal cell (the expectation over every cell, exact);
- no-image prior: the best constant guess from the training rows (their geometric median;
  the map's centre when the training views are uniform over the root). Chance understates it
  when queries cluster.

When the checkpoint carries a calibration (fitted on held-out views with
``jzi localize --calibrate``), the report compares the test NEES with the value it was fitted
to and says when it drifts, i.e. when the covariance cannot be trusted on these images.
"""
from __future__ import annotations

import os
from pathlib import Path
import time
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from jzi_ros.errors import BadImageError, JziError
from jzi_ros.evaluation.groundtruth import GroundTruth, GtSample
from jzi_ros.evaluation.metrics import DEFAULT_RECALL_M, error_summary, recall_at
from jzi_ros.evaluation.replay import (FrameRecord, LocalizerLike, ReplayOptions, ReplayResult,
                                       SKIP_BAD_IMAGE, SKIP_GT_OUTSIDE)
from jzi_ros.geo import CellTree
from jzi_ros.inference.camera_pose import Intrinsics
from jzi_ros.inference.image import read_image

IMAGE_SOURCE = "manifest images"
DRIFT_FACTOR = 1.5  # test NEES more than this factor off its calibrated value is drift


def replay_manifest(manifest: str | os.PathLike, rows: Sequence[Any],
                    localizer: LocalizerLike, progress: bool = True,
                    row_intrinsics: bool = False) -> ReplayResult:
    """
    Localize manifest rows as if they were bag frames.

    ``rows`` are :class:`jzi_ros.training.manifest.Sample` (image, latitude, longitude,
    heading, hfov), read by the caller: evaluation does not import training.
    ``row_intrinsics``: a row's ``hfov`` gives the camera's intrinsics to a localizer that
    registers geometry (refinement, classical); rows without one use the localizer's own.
    """
    manifest = Path(manifest)
    tree = localizer.tree
    if not rows:
        raise JziError(f"manifest {manifest} has no rows to evaluate")
    east, north = (np.asarray(v, np.float64) for v in
                   tree.to_local([s.latitude for s in rows], [s.longitude for s in rows]))
    truth = GroundTruth(f"{manifest.name}:latitude,longitude", tree,
                        np.arange(len(rows), dtype=np.int64),
                        np.array([s.latitude for s in rows]),
                        np.array([s.longitude for s in rows]), east, north,
                        {"messages": len(rows), "used": len(rows)})
    options = ReplayOptions(IMAGE_SOURCE, truth.topic, progress=progress)
    result = ReplayResult(manifest, options, "image file", tree, str(localizer.backend_name),
                          len(rows), len(rows), truth)
    began = time.perf_counter()
    half = tree.size_m / 2
    try:
        for index, row in enumerate(tqdm(rows, unit="image", desc="evaluate",
                                         disable=not progress, dynamic_ncols=True)):
            gt = GtSample(row.latitude, row.longitude, float(east[index]), float(north[index]),
                          False)
            record = FrameRecord(index, index, index, index, frame_id=Path(row.image).name,
                                 gt=gt)
            if max(abs(gt.east_m), abs(gt.north_m)) > half:
                record.skip, record.detail = SKIP_GT_OUTSIDE, f"{row.image.name} lies outside"
            t0 = time.perf_counter()
            try:
                rgb = read_image(row.image)
                t1 = time.perf_counter()
                record.decode_ms = (t1 - t0) * 1e3
                camera = {}
                if row_intrinsics and getattr(row, "hfov", None) is not None:
                    camera["intrinsics"] = Intrinsics.from_hfov(rgb.shape[1], rgb.shape[0],
                                                                row.hfov)
                record.fix = localizer.localize(rgb, heading_deg=row.heading, **camera)
                record.localize_ms = (time.perf_counter() - t1) * 1e3
            except (BadImageError, JziError) as err:
                record.skip, record.detail = SKIP_BAD_IMAGE, str(err)
            result.records.append(record)
    except KeyboardInterrupt:
        result.interrupted = True
    result.loop_s = result.wall_s = time.perf_counter() - began
    return result


def _block(errors: np.ndarray, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Error block like the report's; ``weights`` make it an expectation over guesses."""
    if weights is None:
        return {**error_summary(errors), "recall": {
            f"{d:g}": v for d, v in recall_at(errors, DEFAULT_RECALL_M).items()}}
    order = np.argsort(errors)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    quantile = (lambda q: float(errors[order][min(np.searchsorted(cumulative, q),
                                                  errors.size - 1)]))
    return {"count": int(weights.sum().round()), "median_m": quantile(0.5),
            "mean_m": float(np.average(errors, weights=weights)), "p95_m": quantile(0.95),
            "recall": {f"{d:g}": float(np.average(errors <= d, weights=weights))
                       for d in DEFAULT_RECALL_M}}


def geometric_median(points_en: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Return the point minimising the summed distance to ``points_en`` (Weiszfeld)."""
    guess = points_en.mean(axis=0)
    for _ in range(iterations):
        distance = np.maximum(np.hypot(*(points_en - guess).T), 1e-6)
        step = (points_en / distance[:, None]).sum(axis=0) / (1 / distance).sum()
        if np.hypot(*(step - guess)) < 1e-3:
            return step
        guess = step
    return guess


def baselines(tree: CellTree, truth_en: np.ndarray, train_en: np.ndarray | None
              ) -> dict[str, Any]:
    """Chance (uniform terminal cell) and the no-image prior, scored on ``truth_en``."""
    truth_en = np.asarray(truth_en, np.float64).reshape(-1, 2)
    n = tree.grid ** tree.depth
    side = tree.size_m / n
    centres = (np.arange(n) + 0.5) * side - tree.size_m / 2
    cells = np.stack(np.meshgrid(centres, centres), -1).reshape(-1, 2)
    errors = np.hypot(truth_en[:, None, 0] - cells[None, :, 0],
                      truth_en[:, None, 1] - cells[None, :, 1]).ravel()
    chance = _block(errors, np.full(errors.size, len(truth_en) / errors.size))
    chance["path_accuracy"] = {str(level): float(tree.num_actions ** -level)
                               for level in range(1, tree.depth + 1)}
    if train_en is None or not len(train_en):
        guess, source = np.zeros(2), "the map's centre (training views uniform over the root)"
    else:
        guess = geometric_median(np.asarray(train_en, np.float64).reshape(-1, 2))
        source = f"geometric median of {len(train_en)} training rows"
    prior = _block(np.hypot(*(truth_en - guess).T))
    path = tree.path_of_local(*np.clip(guess, -tree.size_m / 2, tree.size_m / 2))
    truth_paths = [tree.path_of_local(e, n) for e, n in truth_en]
    prior["path_accuracy"] = {str(level): float(np.mean(
        [p[:level] == path[:level] for p in truth_paths])) for level in range(1, tree.depth + 1)}
    prior["guess_en_m"] = [float(v) for v in guess]
    prior["from"] = source
    return {"chance": chance, "prior": prior}


def calibration_check(calibration: Any, measured: dict[str, Any]) -> dict[str, Any] | None:
    """Compare the test NEES with what the checkpoint's calibration fitted (None: none)."""
    if calibration is None or not measured.get("count"):
        return None
    key = "median_nees" if calibration.target == "median" else "mean_nees"
    fitted, test = float(getattr(calibration, key)), float(measured[key])
    ratio = test / fitted if fitted > 0 else float("inf")
    drift = not 1 / DRIFT_FACTOR <= ratio <= DRIFT_FACTOR
    verdict = (f"test {key.replace('_', ' ')} {test:.2f} vs {fitted:.2f} fitted on "
               f"{calibration.frames} calibration frames: "
               + ("drifts (x{:.1f}); the covariance is {} here, recalibrate on views like "
                  "these".format(ratio, "too small" if ratio > 1 else "too large")
                  if drift else "consistent"))
    return {"statistic": key, "fitted": fitted, "test": test, "ratio": ratio,
            "drift": drift, "calibration_frames": calibration.frames, "verdict": verdict}


def training_positions(rows: Sequence[Any], tree: CellTree) -> np.ndarray:
    """Local positions of training rows (latitude, longitude) inside the root."""
    east, north = tree.to_local([s.latitude for s in rows], [s.longitude for s in rows])
    points = np.stack([np.asarray(east, float), np.asarray(north, float)], axis=1)
    return points[np.max(np.abs(points), axis=1) <= tree.size_m / 2]
