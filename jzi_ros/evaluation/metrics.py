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

"""Localization metrics shared by training validation, replay and the demo."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from jzi_ros.inference.posterior import nees_2d  # noqa: F401  (re-exported)

DEFAULT_RECALL_M = (25.0, 50.0, 100.0, 250.0)


def recall_at(errors_m: Sequence[float], thresholds_m: Iterable[float] = DEFAULT_RECALL_M
              ) -> dict[float, float]:
    """Fraction of errors <= each threshold (Recall@1 within d metres). Empty -> None."""
    errors = np.asarray(errors_m, dtype=np.float64)
    return {float(d): float(np.mean(errors <= d)) if errors.size else None for d in thresholds_m}


def error_summary(errors_m: Sequence[float]) -> dict[str, float]:
    """
    Median, mean and 95th percentile error in metres.

    NaN-free, and no number where there is none: empty -> count 0 and None (a 0.0 m median
    would read as perfect).
    """
    errors = np.asarray(errors_m, dtype=np.float64)
    if errors.size == 0:
        return {"count": 0, "median_m": None, "mean_m": None, "p95_m": None}
    return {"count": int(errors.size), "median_m": float(np.median(errors)),
            "mean_m": float(errors.mean()), "p95_m": float(np.percentile(errors, 95))}


# chi-square(2 dof) quantiles for the 1-sigma and 2-sigma probability masses of a 1-D normal
CHI2_2D_1SIGMA = 2.2957489288986
CHI2_2D_2SIGMA = 6.1800743826


def path_accuracy(predicted: Sequence[Sequence[int] | None], truth: Sequence[Sequence[int]],
                  depth: int) -> dict[int, float]:
    """
    Fraction of frames whose predicted path is right on the first ``level`` actions.

    For level 1..depth (the zoom step at which the policy first goes wrong shows as the drop
    between levels). A missing prediction (None) counts as wrong at every level.
    """
    if len(predicted) != len(truth):
        raise ValueError(f"path_accuracy: {len(predicted)} predictions for {len(truth)} truths")
    result = {}
    for level in range(1, depth + 1):
        hits = [p is not None and len(p) >= level and tuple(p[:level]) == tuple(t[:level])
                for p, t in zip(predicted, truth)]
        result[level] = float(np.mean(hits)) if hits else None
    return result


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """Median, 95th percentile and mean of latencies in milliseconds (empty -> None)."""
    values = np.asarray(values_ms, dtype=np.float64)
    if values.size == 0:
        return {"count": 0, "median_ms": None, "p95_ms": None, "mean_ms": None}
    return {"count": int(values.size), "median_ms": float(np.median(values)),
            "p95_ms": float(np.percentile(values, 95)), "mean_ms": float(values.mean())}


def calibration_summary(error_en: np.ndarray, covariance_en: np.ndarray) -> dict[str, float]:
    """
    Covariance consistency: mean NEES and the fractions of errors inside the 1/2-sigma ellipses.

    Ideal: mean NEES 2; 0.683 of the errors inside the 1-sigma and 0.954 inside the 2-sigma
    ellipse. Empty -> count 0 and None (never a 0.0 NEES that reads as perfect).
    """
    nees = nees_2d(error_en, covariance_en) if len(error_en) else np.zeros(0)
    if nees.size == 0:
        return {"count": 0, "mean_nees": None, "median_nees": None, "inside_1sigma": None,
                "inside_2sigma": None}
    return {"count": int(nees.size), "mean_nees": float(nees.mean()),
            "median_nees": float(np.median(nees)),
            "inside_1sigma": float(np.mean(nees <= CHI2_2D_1SIGMA)),
            "inside_2sigma": float(np.mean(nees <= CHI2_2D_2SIGMA))}


# what a perfectly calibrated 2-D Gaussian estimator would score
IDEAL_CALIBRATION = {"mean_nees": 2.0, "median_nees": float(2 * np.log(2)),
                     "inside_1sigma": 0.6826894921370859, "inside_2sigma": 0.9544997361036416}


MISSING = "\u2014"  # what a text report shows where a number does not exist (no frames)


def fmt(value: float | None, spec: str = ".1f", suffix: str = "", scale: float = 1.0) -> str:
    """Format a metric for text; None (nothing measured) -> "\u2014", never a number."""
    if value is None:
        return MISSING
    return f"{value * scale:{spec}}{suffix}"
