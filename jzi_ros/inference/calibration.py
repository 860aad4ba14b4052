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


def calibrate(estimates: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
              beam_width: int, position: str, sigma_floor_m: float,
              target: str = "mean") -> Calibration:
    """Fit the scale from ``(estimate_en [2], truth_en [2], raw_cov_en [2, 2])`` triples."""
    rows = list(estimates)
    if len(rows) < 2:
        raise JziError(f"calibration needs at least 2 validation frames, got {len(rows)}")
    estimate = np.array([r[0] for r in rows], dtype=np.float64)
    truth = np.array([r[1] for r in rows], dtype=np.float64)
    raw = np.array([r[2] for r in rows], dtype=np.float64)
    errors = estimate - truth
    scale = fit_covariance_scale(errors, raw, sigma_floor_m, target)
    nees = _nees(errors, raw, scale, sigma_floor_m)
    raw_nees = _nees(errors, raw, 1.0, 0.0)
    result = Calibration(covariance_scale=float(scale), target=target, frames=len(rows),
                         mean_nees=float(nees.mean()), median_nees=float(np.median(nees)),
                         raw_mean_nees=float(raw_nees.mean()), beam_width=int(beam_width),
                         position=position, sigma_floor_m=float(sigma_floor_m),
                         median_error_m=float(np.median(np.hypot(*errors.T))))
    LOG.info("calibration: scale %.4g over %d frames (mean NEES %.2f -> %.2f)", scale,
             len(rows), result.raw_mean_nees, result.mean_nees)
    return result


def calibrate_localizer(localizer, samples: Iterable[tuple[np.ndarray, float, float]],
                        target: str = "mean", progress: bool = False,
                        total: int | None = None) -> Calibration:
    """
    Fit the covariance scale of ``localizer`` on validation samples.

    The samples are ``(image_rgb, latitude, longitude)``; the scale holds for the localizer's
    beam width, position mode and sigma floor.
    """
    from tqdm import tqdm

    tree = localizer.tree
    rows = []
    for image, lat, lon in tqdm(samples, desc="calibrating", unit="frame", total=total,
                                disable=not progress):
        position, raw = localizer.raw_estimate(image)
        truth = np.array(tree.to_local(lat, lon), dtype=np.float64)
        rows.append((position, truth, raw))
    return calibrate(rows, localizer.searched_beam_width, localizer.config.position,
                     localizer.config.sigma_floor_m, target)


def save_calibration(model_path: str | Path, calibration: Calibration) -> None:
    """Store the calibration in the checkpoint's metadata (atomic, via the checkpoint API)."""
    from jzi_ros.model.checkpoint import update_checkpoint_metadata

    update_checkpoint_metadata(model_path, **{METADATA_KEY: calibration.to_dict()})
