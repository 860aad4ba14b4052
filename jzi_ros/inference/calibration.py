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
Calibrate the covariance scale so that the mean 2-D NEES on validation frames is ~2.

The raw covariance (beam spread + within-cell variance) has the right shape but not the right
size: a trained policy is over- or under-confident. One scalar s multiplies it; the sigma floor
is applied after scaling, so the fit searches s numerically (mean NEES decreases monotonically
in s) instead of using the closed form mean(NEES_raw) / 2.

``target="median"`` matches the median NEES to the chi-square(2) median (1.386) instead: far
less sensitive to a few frames whose coarse step went wrong (errors of kilometres), at the
price of under-covering those frames. The result is stored in the checkpoint's metadata under
``calibration`` and picked up by every Localizer built from that checkpoint.

The same validation frames also set the default **confidence gate**: a policy always answers a
cell, even for a frame it cannot place (a black frame, a lens cap, a view of somewhere else),
so a confidence threshold below which the frame is NO_FIX must come from data. A frame counts
as *placed* when its error is within the side of a terminal cell's parent (K terminal cells;
156 m on the paper's map); the gate is the confidence that best separates placed from
unplaced frames (Youden's J: the largest true-positive minus false-positive rate). The
covariance scale is then fitted on the frames the gate lets through, the ones that are
published. The fix-rate vs error trade-off at several thresholds is stored beside it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import datetime
import logging
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.inference.posterior import apply_scale_and_floor, nees_2d

LOG = logging.getLogger(__name__)

TARGETS = {"mean": 2.0, "median": 2.0 * math.log(2.0)}  # chi-square(2): mean 2, median 1.386
METADATA_KEY = "calibration"


@dataclass
class Calibration:
    """What calibration found; stored as a dict in the checkpoint metadata."""

    covariance_scale: float
    target: str
    frames: int
    mean_nees: float  # after scaling (and floor)
    median_nees: float
    raw_mean_nees: float  # before calibration (scale 1)
    beam_width: int
    position: str
    sigma_floor_m: float
    median_error_m: float
    confidence_threshold: float = 0.0  # the default gate (0: none fitted, older checkpoints)
    placed_radius_m: float | None = None  # error that counts as "placed" for the gate fit
    gate_fix_rate: float | None = None  # fraction of validation frames the gate accepts
    gate_median_error_m: float | None = None  # median error of the accepted frames
    gate_tradeoff: list = field(default_factory=list)  # rows of :func:`gate_tradeoff`
    created: str = field(default_factory=lambda: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_metadata(cls, metadata: dict) -> "Calibration | None":
        data = metadata.get(METADATA_KEY)
        if not data:
            return None
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as err:
            raise JziError(f"checkpoint metadata field {METADATA_KEY!r} is malformed: {err}")


def resolve_settings(calibration: Calibration | None, config, searched_width: int,
                     position: str, model_path) -> tuple[float, float]:
    """
    Return ``(covariance_scale, confidence_threshold)`` a localizer runs with.

    ``config``'s values where set (not None), else the checkpoint's ``calibration``, else
    1.0 and 0.0 (no gate), with one warning when the checkpoint has no calibrated gate and
    one when it was calibrated for another search width (beam or top-k) or position mode.
    Shared by the zoom's Localizer and the retrieval localizer.
    """
    scale = (config.covariance_scale if config.covariance_scale is not None
             else calibration.covariance_scale if calibration else 1.0)
    if calibration and config.covariance_scale is None and (
            calibration.beam_width != searched_width or calibration.position != position):
        LOG.warning("covariance calibrated for beam %d / position %s, running beam %d / "
                    "%s: recalibrate for consistent covariances",
                    calibration.beam_width, calibration.position, searched_width, position)
    threshold = (config.confidence_threshold if config.confidence_threshold is not None
                 else calibration.confidence_threshold if calibration else 0.0)
    if config.confidence_threshold is None and not calibration:
        LOG.warning("checkpoint %s has no calibrated confidence gate: every frame the "
                    "model decodes is a FIX (run `jzi localize --calibrate`)", model_path)
    return float(scale), float(threshold)


def _nees(errors: np.ndarray, raw: np.ndarray, scale: float, floor: float) -> np.ndarray:
    return nees_2d(errors, apply_scale_and_floor(raw, scale, floor))


def fit_covariance_scale(errors_en: np.ndarray, raw_cov_en: np.ndarray, sigma_floor_m: float,
                         target: str = "mean") -> float:
    """
    Return the scale s with statistic(NEES(s * raw, floored)) == the chi-square(2) target.

    errors_en: [N, 2] estimate - truth (metres); raw_cov_en: [N, 2, 2] unscaled covariances.
    """
    if target not in TARGETS:
        raise JziError(f"calibration target must be one of {sorted(TARGETS)}, got {target!r}")
    errors = np.asarray(errors_en, dtype=np.float64).reshape(-1, 2)
    raw = np.asarray(raw_cov_en, dtype=np.float64).reshape(-1, 2, 2)
    if len(errors) < 2 or len(errors) != len(raw):
        raise JziError(f"calibration needs >= 2 frames with a covariance each, got "
                       f"{len(errors)} errors and {len(raw)} covariances")
    stat = np.mean if target == "mean" else np.median
    goal = TARGETS[target]
    # bisection in log-space; the bracket covers scales from 1e-6 to 1e9
    lo, hi = math.log(1e-6), math.log(1e9)
    if stat(_nees(errors, raw, math.exp(hi), sigma_floor_m)) > goal:
        return math.exp(hi)
    if stat(_nees(errors, raw, math.exp(lo), sigma_floor_m)) < goal:
        return math.exp(lo)  # even tiny covariances over-cover: the floor dominates
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if stat(_nees(errors, raw, math.exp(mid), sigma_floor_m)) > goal:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def fit_confidence_gate(confidence: np.ndarray, placed: np.ndarray) -> float:
    """
    Return the confidence threshold that best separates placed from unplaced frames.

    Youden's J (true-positive rate minus false-positive rate, positives = placed frames) over
    every observed confidence; 0.0 (no gate) when one of the two classes is empty.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    placed = np.asarray(placed, dtype=bool)
    if placed.all() or not placed.any():
        return 0.0
    best_j, best_t = 0.0, 0.0
    for t in np.unique(confidence):
        accepted = confidence >= t
        j = accepted[placed].mean() - accepted[~placed].mean()
        if j > best_j + 1e-12:
            best_j, best_t = float(j), float(t)
    return best_t


def gate_tradeoff(confidence: np.ndarray, error_m: np.ndarray, placed_radius_m: float,
                  thresholds: Iterable[float]) -> list[dict]:
    """Fix rate, median error and placed fraction of the frames each threshold accepts."""
    confidence = np.asarray(confidence, dtype=np.float64)
    error_m = np.asarray(error_m, dtype=np.float64)
    rows = []
    for t in thresholds:
        kept = error_m[confidence >= t]
        rows.append({"threshold": round(float(t), 6),
                     "fix_rate": float(kept.size / max(error_m.size, 1)),
                     "median_error_m": float(np.median(kept)) if kept.size else None,
                     "placed": float(np.mean(kept <= placed_radius_m)) if kept.size else None})
    return rows


def calibrate(estimates: Iterable[tuple], beam_width: int, position: str, sigma_floor_m: float,
              target: str = "mean", placed_radius_m: float | None = None,
              gate: bool = True) -> Calibration:
    """
    Fit the gate and the scale from ``(estimate_en, truth_en, raw_cov_en[, confidence])``.

    With confidences and ``placed_radius_m`` (and ``gate``) the confidence gate is fitted
    first and the scale on the frames it accepts; otherwise the scale on every frame.
    """
    rows = list(estimates)
    if len(rows) < 2:
        raise JziError(f"calibration needs at least 2 validation frames, got {len(rows)}")
    estimate = np.array([r[0] for r in rows], dtype=np.float64)
    truth = np.array([r[1] for r in rows], dtype=np.float64)
    raw = np.array([r[2] for r in rows], dtype=np.float64)
    errors = estimate - truth
    distance = np.hypot(*errors.T)
    threshold, tradeoff, accepted = 0.0, [], np.ones(len(rows), bool)
    if gate and placed_radius_m is not None and all(len(r) > 3 for r in rows):
        confidence = np.array([r[3] for r in rows], dtype=np.float64)
        threshold = fit_confidence_gate(confidence, distance <= placed_radius_m)
        accepted = confidence >= threshold
        quantiles = np.quantile(confidence, [0.25, 0.5, 0.75, 0.9])
        levels = sorted({round(float(t), 6) for t in (0.0, threshold, *quantiles)})
        tradeoff = gate_tradeoff(confidence, distance, placed_radius_m, levels)
        if accepted.sum() < 2:  # too few to fit a scale on: fit it on every frame
            LOG.warning("confidence gate %.3g keeps %d validation frame(s); the covariance "
                        "scale is fitted on all %d", threshold, int(accepted.sum()), len(rows))
            accepted = np.ones(len(rows), bool)
    scale = fit_covariance_scale(errors[accepted], raw[accepted], sigma_floor_m, target)
    nees = _nees(errors[accepted], raw[accepted], scale, sigma_floor_m)
    raw_nees = _nees(errors[accepted], raw[accepted], 1.0, 0.0)
    kept = distance[accepted]
    result = Calibration(covariance_scale=float(scale), target=target, frames=len(rows),
                         mean_nees=float(nees.mean()), median_nees=float(np.median(nees)),
                         raw_mean_nees=float(raw_nees.mean()), beam_width=int(beam_width),
                         position=position, sigma_floor_m=float(sigma_floor_m),
                         median_error_m=float(np.median(distance)),
                         confidence_threshold=float(threshold),
                         placed_radius_m=placed_radius_m,
                         gate_fix_rate=float(accepted.mean()),
                         gate_median_error_m=float(np.median(kept)),
                         gate_tradeoff=tradeoff)
    LOG.info("calibration: gate %.4g keeps %.0f %% of %d frames; scale %.4g (mean NEES %.2f -> "
             "%.2f)", threshold, 100 * accepted.mean(), len(rows), scale,
             result.raw_mean_nees, result.mean_nees)
    return result


def calibrate_localizer(localizer, samples: Iterable[tuple[np.ndarray, float, float]],
                        target: str = "mean", progress: bool = False,
                        total: int | None = None) -> Calibration:
    """
    Fit the confidence gate and the covariance scale of ``localizer`` on validation samples.

    The samples are ``(image_rgb, latitude, longitude[, heading_deg])``; both hold for the
    localizer's beam width, position mode and sigma floor.
    """
    from tqdm import tqdm

    tree = localizer.tree
    rows = []
    for image, lat, lon, *heading in tqdm(samples, desc="calibrating", unit="frame",
                                          total=total, disable=not progress):
        position, raw, confidence = localizer.raw_estimate(
            image, heading[0] if heading else None, with_confidence=True)
        truth = np.array(tree.to_local(lat, lon), dtype=np.float64)
        rows.append((position, truth, raw, confidence))
    return calibrate(rows, localizer.searched_beam_width, localizer.position_mode,
                     localizer.config.sigma_floor_m, target,
                     placed_radius_m=placed_radius(tree))


def placed_radius(tree) -> float:
    """Return the error within which a frame counts as placed: a terminal cell's parent side."""
    return float(tree.cell_side(tree.depth - 1))


def save_calibration(model_path: str | Path, calibration: Calibration) -> None:
    """
    Store the calibration in the checkpoint's metadata (atomic rewrite, weights verified).

    A zoom checkpoint or a retrieval checkpoint (``jzi train-retrieval``), by its header.
    """
    from jzi_ros.model.checkpoint import RETRIEVAL_FORMAT, checkpoint_format
    from jzi_ros.model.checkpoint import update_checkpoint_metadata
    from jzi_ros.model.retrieval import update_retrieval_metadata

    update = (update_retrieval_metadata if checkpoint_format(model_path) == RETRIEVAL_FORMAT
              else update_checkpoint_metadata)
    update(model_path, **{METADATA_KEY: calibration.to_dict()})
