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
From beam paths to a position, a 2x2 East/North covariance and a confidence.

The beam is a (truncated) posterior over terminal cells: hypothesis i has the model's path
log-probability l_i; renormalised over the beam, p_i = softmax(l)_i. The position is the top
cell's centre (the paper's answer) or the p-weighted mean of the cell centres. The covariance
is the p-weighted second moment of the centres about that position (how far the other
candidates are), plus the variance of a uniform position inside one terminal cell (side^2/12
per axis), times a scale calibrated on validation frames (mean NEES ~ 2), with a floor on
sigma so a filter never receives a near-zero covariance.

Confidence is the model's own probability of the top path, exp(l_0): unlike the renormalised
p_0 it does not become 1 for beam width 1, and a near-uniform policy gives a tiny value.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree

POSITION_MODES = ("top", "mean")


@dataclass(frozen=True)
class Posterior:
    """The beam of one frame, best first, as numpy arrays in the map's local frame."""

    paths: np.ndarray  # int [B, D]
    log_probs: np.ndarray  # float [B], the model's path log-probabilities
    probs: np.ndarray  # float [B], renormalised over the beam (sums to 1)
    centers_en: np.ndarray  # float [B, 2], terminal cell centres (metres E/N of the root)
    cell_variance_m2: float  # side^2 / 12 of a terminal cell

    @property
    def confidence(self) -> float:
        """Return the model's probability of the top path (0..1)."""
        return float(np.clip(np.exp(self.log_probs[0]), 0.0, 1.0))

    @property
    def normalized_entropy(self) -> float:
        """Entropy of the renormalised beam / log(B): 0 = one clear winner, 1 = flat."""
        if len(self.probs) < 2:
            return 0.0
        p = self.probs[self.probs > 0]
        return float(-(p * np.log(p)).sum() / math.log(len(self.probs)))


def posterior_from_beam(tree: CellTree, paths: np.ndarray, log_probs: np.ndarray) -> Posterior:
    """Build a :class:`Posterior` from one frame's beam (``paths`` [B, D], ``log_probs`` [B])."""
    paths = np.asarray(paths, dtype=np.int64).reshape(-1, tree.depth)
    log_probs = np.asarray(log_probs, dtype=np.float64).reshape(-1)
    if len(paths) == 0 or len(paths) != len(log_probs):
        raise JziError(f"beam: {len(paths)} paths and {len(log_probs)} log-probs; expected the "
                       "same non-zero number")
    if not np.all(np.isfinite(log_probs)):
        raise JziError("beam: the decoder produced non-finite log-probabilities")
    shifted = np.exp(log_probs - log_probs.max())
    side = tree.cell_side(tree.depth)
    return Posterior(paths, log_probs, shifted / shifted.sum(), tree.cell_centers_local(paths),
                     side * side / 12.0)


def raw_estimate(posterior: Posterior, position: str = "top") -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated (position [2], covariance [2, 2]) in metres East/North of the root."""
    if position not in POSITION_MODES:
        raise JziError(f"position mode must be one of {POSITION_MODES}, got {position!r}")
    centers, probs = posterior.centers_en, posterior.probs
    estimate = centers[0] if position == "top" else probs @ centers
    offsets = centers - estimate
    spread = (probs[:, None] * offsets).T @ offsets
    cov = spread + posterior.cell_variance_m2 * np.eye(2)
    return np.array(estimate, dtype=np.float64), 0.5 * (cov + cov.T)


def apply_scale_and_floor(cov: np.ndarray, scale: float, sigma_floor_m: float) -> np.ndarray:
    """Scale 2x2 covariance(s) ``[..., 2, 2]``; clip eigenvalues to >= ``sigma_floor_m``^2."""
    cov = np.asarray(cov, dtype=np.float64) * float(scale)
    if cov.shape == (2, 2):  # one matrix (the filter's fix, every frame): closed form
        return _floor_2x2(cov, float(sigma_floor_m) ** 2)
    sym = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    values, vectors = np.linalg.eigh(sym)
    values = np.maximum(values, float(sigma_floor_m) ** 2)
    out = (vectors * values[..., None, :]) @ np.swapaxes(vectors, -1, -2)
    return 0.5 * (out + np.swapaxes(out, -1, -2))


def _floor_2x2(cov: np.ndarray, floor: float) -> np.ndarray:
    """Clip the eigenvalues of one symmetric 2x2 to >= ``floor`` (np.linalg.eigh's result)."""
    a, b, c = floored_2x2(*cov.tolist(), floor)
    return np.array([[a, b], [b, c]])


def floored_2x2(row_0: list, row_1: list, floor: float) -> tuple[float, float, float]:
    """Return ``(xx, xy, yy)`` of a 2x2 (rows of floats) with eigenvalues clipped to >= floor."""
    (a, b1), (b2, c) = row_0, row_1
    b = 0.5 * (b1 + b2)
    mid, radius = 0.5 * (a + c), math.hypot(0.5 * (a - c), b)
    low, high = mid - radius, mid + radius
    if low >= floor:
        return a, b, c
    if high <= floor:
        return floor, 0.0, floor
    # raise only the low eigenvalue: add (floor - low) v v^T, v its unit eigenvector
    u, w = (b, low - a) if abs(low - a) >= abs(low - c) else (low - c, b)
    norm = u * u + w * w
    lift = (floor - low) / norm
    return a + lift * u * u, b + lift * u * w, c + lift * w * w


def fix_covariance(cov_en: np.ndarray, scale: float, sigma_floor_m: float,
                   up_sigma_m: float) -> list[list[float]]:
    """
    ``enu_covariance(apply_scale_and_floor(cov_en, ...), up_sigma_m)`` of one 2x2, as lists.

    The same numbers in plain Python floats (the filter's fix, every frame: a Fix makes the
    one array).
    """
    scale = float(scale)
    (a, b), (c, d) = np.asarray(cov_en, dtype=np.float64).tolist()
    xx, xy, yy = floored_2x2([a * scale, b * scale], [c * scale, d * scale],
                             float(sigma_floor_m) ** 2)
    return [[xx, xy, 0.0], [xy, yy, 0.0], [0.0, 0.0, float(up_sigma_m) ** 2]]


def enu_covariance(cov_en: np.ndarray, up_sigma_m: float) -> np.ndarray:
    """Return the 3x3 East-North-Up covariance a NavSatFix carries (Up: a large fixed variance)."""
    out = np.zeros((3, 3), dtype=np.float64)
    out[:2, :2] = cov_en
    out[2, 2] = float(up_sigma_m) ** 2
    return out


def nees_2d(error_en: np.ndarray, covariance_en: np.ndarray) -> np.ndarray:
    """
    Normalised estimation error squared e^T P^-1 e for 2-D errors.

    error_en: [N, 2] (estimate - truth, metres East/North); covariance_en: [N, 2, 2] m^2.
    A consistent estimator has mean NEES ~= 2 in 2-D; NEES <= 2.30 is inside the 1-sigma
    ellipse (68.3 % for chi-square with 2 dof is 2.30), <= 6.18 inside 2-sigma (95.4 %).
    """
    error_en = np.asarray(error_en, dtype=np.float64).reshape(-1, 2)
    cov = np.asarray(covariance_en, dtype=np.float64).reshape(-1, 2, 2)
    solved = np.linalg.solve(cov, error_en[..., None])[..., 0]
    return np.einsum("ni,ni->n", error_en, solved)
