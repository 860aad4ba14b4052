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
The camera side of refinement: pinhole intrinsics, and the camera pose a ground homography gives.

With the intrinsics ``K`` the homography from the ground plane to the image is ``K [r1 r2 t]``;
decomposing it gives the camera's rotation and centre: its nadir point, height above ground,
heading and tilt. Pure geometry (no matching, no acceptance policy: those are
:mod:`jzi_ros.inference.refine`), and ROS-free: the node passes ``CameraInfo.k`` through
:meth:`Intrinsics.from_matrix`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import Sequence

import cv2
import numpy as np

from jzi_ros.errors import JziError


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the frames as they reach the localizer (pixels, OpenCV centres)."""

    fx: float
    fy: float
    cx: float
    cy: float
    # relative 1-sigma of the focal length: 0 for calibrated intrinsics (CameraInfo, a given
    # matrix or field of view); a guessed field of view carries its doubt into the covariance
    focal_sigma: float = 0.0

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(float(v)) for v in values) or self.fx <= 0 or self.fy <= 0:
            raise JziError(f"camera intrinsics: need finite fx, fy > 0 and finite cx, cy, got "
                           f"fx={self.fx!r} fy={self.fy!r} cx={self.cx!r} cy={self.cy!r}")
        if not 0.0 <= float(self.focal_sigma) < 0.5:
            raise JziError(f"camera intrinsics: focal_sigma is a relative 1-sigma in [0, 0.5), "
                           f"got {self.focal_sigma!r}")

    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_deg: float) -> "Intrinsics":
        """Square pixels, principal point at the image centre, horizontal field of view."""
        if not (width >= 2 and height >= 2 and 1.0 < hfov_deg < 170.0):
            raise JziError(f"camera intrinsics: need an image of at least 2 x 2 px and "
                           f"1 < hfov_deg < 170, got {width} x {height}, hfov {hfov_deg!r}")
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        return cls(f, f, (width - 1) / 2, (height - 1) / 2)

    @classmethod
    def from_matrix(cls, k: Sequence[float]) -> "Intrinsics":
        """From a 3x3 camera matrix or the 9 row-major numbers of ``CameraInfo.k``."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise JziError(f"camera intrinsics: a camera matrix has 9 numbers, got {k.size}")
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]))

    @classmethod
    def parse(cls, text: str, where: str) -> "Intrinsics":
        """From ``"FX,FY,CX,CY"`` (pixels); ``where`` names the option in the error."""
        try:
            values = [float(v) for v in str(text).split(",")]
        except ValueError:
            values = []
        if len(values) != 4:
            raise JziError(f"{where} {text!r}: expected 4 comma-separated numbers FX,FY,CX,CY "
                           "(pixels)")
        return cls(*values)

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, factor: float, factor_y: float | None = None) -> "Intrinsics":
        """Return the intrinsics of the image resized by ``factor`` (pixel centres kept)."""
        fy = factor if factor_y is None else factor_y
        return Intrinsics(self.fx * factor, self.fy * fy, (self.cx + 0.5) * factor - 0.5,
                          (self.cy + 0.5) * fy - 0.5, self.focal_sigma)

    def with_focal(self, factor: float) -> "Intrinsics":
        """Return these intrinsics with the focal length times ``factor`` (same image)."""
        return replace(self, fx=self.fx * factor, fy=self.fy * factor)


def fit_frame(image: np.ndarray, intrinsics: Intrinsics, max_px: int
              ) -> tuple[np.ndarray, Intrinsics]:
    """Shrink a frame whose long side exceeds ``max_px`` (feature time grows with its area)."""
    factor = max_px / max(image.shape[:2])
    if factor >= 1.0:
        return image, intrinsics
    size = (max(2, round(image.shape[1] * factor)), max(2, round(image.shape[0] * factor)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, intrinsics.scaled(size[0] / image.shape[1])


@dataclass(frozen=True)
class GroundPose:
    """Camera pose recovered from an image -> ground homography (local metres, degrees)."""

    east_m: float  # nadir point (camera centre projected on the ground)
    north_m: float
    height_m: float  # above the ground plane
    heading_deg: float  # compass direction of the image's up axis, clockwise from north
    tilt_deg: float  # optical axis from straight down
    skew: float  # how far the homography's rotation is from one (0: exact)


def pose_from_homography(image_to_ground: np.ndarray, intrinsics: Intrinsics
                         ) -> GroundPose | None:
    """
    Decompose ``H`` (image pixels -> ground east/north metres) with ``K``.

    The inverse maps ground to image: ``K^-1 H^-1 ~ [r1 r2 t]`` with ``r1``, ``r2`` the first
    two columns of the world-to-camera rotation; the camera centre is ``-R^T t``. None for a
    degenerate homography.
    """
    poses = poses_from_homographies(np.asarray(image_to_ground, np.float64)[None], intrinsics)
    return ground_pose(poses, 0)


def ground_pose(poses: dict[str, np.ndarray], row: int) -> GroundPose | None:
    """Return row ``row`` of :func:`poses_from_homographies`' batch (None where degenerate)."""
    if not poses["valid"][row]:
        return None
    return GroundPose(*(float(poses[name][row]) for name in POSE_FIELDS))


POSE_FIELDS = ("east_m", "north_m", "height_m", "heading_deg", "tilt_deg", "skew")


def poses_from_homographies(image_to_ground: np.ndarray, intrinsics: Intrinsics
                            ) -> dict[str, np.ndarray]:
    """
    Decompose a batch ``[M, 3, 3]`` of homographies at once (see :func:`pose_from_homography`).

    Returns one array [M] per :class:`GroundPose` field plus ``valid`` (False where a
    homography is degenerate; its other values are then meaningless). Batched so that the
    covariance's bootstrap resamples cost one numpy call, not one per resample.
    """
    H = np.asarray(image_to_ground, np.float64).reshape(-1, 3, 3)
    count = len(H)
    valid = np.abs(np.linalg.det(H)) > 1e-300
    safe = np.where(valid[:, None, None], H, np.eye(3))
    with np.errstate(all="ignore"):
        M = np.linalg.inv(intrinsics.matrix()) @ np.linalg.inv(safe)
        valid &= np.all(np.isfinite(M), axis=(1, 2))
        M = np.where(valid[:, None, None], M, np.eye(3))
        n1 = np.linalg.norm(M[:, :, 0], axis=1)
        n2 = np.linalg.norm(M[:, :, 1], axis=1)
        valid &= (n1 > 0) & (n2 > 0)
        n1, n2 = np.where(valid, n1, 1.0), np.where(valid, n2, 1.0)
        skew = (np.abs(np.einsum("mi,mi->m", M[:, :, 0], M[:, :, 1]) / (n1 * n2))
                + np.abs(np.log(n1 / n2)))
        M = M / np.sqrt(n1 * n2)[:, None, None]
        # the ground seen at the principal point must lie in front of the camera (depth > 0)
        centre = H @ np.array([intrinsics.cx, intrinsics.cy, 1.0])
        valid &= np.abs(centre[:, 2]) >= 1e-12
        centre = centre / np.where(valid, centre[:, 2], 1.0)[:, None]
        flip = np.einsum("mi,mi->m", M[:, 2, :], centre) < 0
        M = np.where(flip[:, None, None], -M, M)
        r1, r2 = M[:, :, 0], M[:, :, 1]
        # r1 x r2 written out: np.cross's axis handling costs more than the product here
        r3 = r1[:, [1, 2, 0]] * r2[:, [2, 0, 1]] - r1[:, [2, 0, 1]] * r2[:, [1, 2, 0]]
        u, _, vt = np.linalg.svd(np.stack([r1, r2, r3], axis=2))
        fix = np.ones((count, 3))
        fix[:, 2] = np.linalg.det(u @ vt)
        R = (u * fix[:, None, :]) @ vt
        C = -np.einsum("mji,mj->mi", R, M[:, :, 2])
        up = -R[:, 1, :]  # the image's up axis in the world
        heading = np.degrees(np.arctan2(up[:, 0], up[:, 1])) % 360.0
        tilt = np.degrees(np.arccos(np.clip(-R[:, 2, 2], -1.0, 1.0)))
    out = {"east_m": C[:, 0], "north_m": C[:, 1], "height_m": C[:, 2],
           "heading_deg": heading, "tilt_deg": tilt, "skew": skew}
    for values in out.values():
        valid &= np.isfinite(values)
    out["valid"] = valid
    return out
