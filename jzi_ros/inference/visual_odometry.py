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
Visual odometry: the temporal filter's motion from the camera itself, when no odometry is given.

Without odometry the filter can only assume a random walk, and it loses the robot wherever
the single frames stay wrong for longer than the walk can coast (docs/fusion.md). Yet two
consecutive frames of a downward camera overlap almost entirely, and their offset is the
robot's motion. Each frame is shrunk to a small grey image; Shi-Tomasi corners of the previous
one are tracked into it with pyramidal Lucas-Kanade (OpenCV), a similarity transform is fitted
with RANSAC, and the new frame's centre, found in the previous frame, gives the displacement in
the previous frame's pixels. The camera's focal length and its height above ground turn pixels
into metres; the frame's compass heading (the heading source that also rotates a north-up
model's frames: a north-up gimbal is a fixed yaw) turns the image axes into East/North. The
result goes to the filter exactly like an odometry displacement (its noise, its covariance
scale); a pair that does not match (too few inliers, a gap, no heading) leaves that interval
to the random walk.

Assumptions, said where they bite: flat ground at ``height_m`` below the camera (a wrong
height scales every displacement: the filter's ``odom_noise_fraction`` absorbs ~10 %), a
camera close to nadir (the image centre's ground point stands in for the nadir point: a tilted
camera that turns between frames adds the turn times its offset). ROS-free: the node and the
replay feed it decoded frames.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math
from typing import Callable

import cv2
import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.inference.camera_pose import Intrinsics
from jzi_ros.maps.features import to_gray
from jzi_ros.model.preprocess import resize

GUESS_HFOV_DEG = 70.0  # field of view assumed when neither intrinsics nor hfov_deg are given


@dataclass
class VisualOdometryConfig:
    """How frames are matched and scaled (the node: ``refine.nominal_height_m`` and camera)."""

    height_m: float = 250.0  # the camera's height above the ground (flat ground assumed)
    hfov_deg: float | None = None  # horizontal field of view; None: intrinsics, else 70 deg
    match_px: int = 160  # long side of the grey frames that are matched
    corners: int = 100  # Shi-Tomasi corners tracked from the previous frame
    min_inliers: int = 20  # RANSAC inliers a displacement needs
    # the most the ground's scale may change between two frames (a height change by this
    # factor); a larger fitted change is a wrong match, not a climb
    max_scale_change: float = 1.5
    ransac_px: float = 2.0  # RANSAC threshold, pixels at match_px
    max_gap_s: float = 2.0  # frames further apart are not matched
    # (the filter's noise for these displacements: FusionConfig.visual_*, see filter_config)

    def __post_init__(self) -> None:
        checks = {"height_m": self.height_m > 0, "match_px": self.match_px >= 32,
                  "corners": self.corners >= 8, "min_inliers": self.min_inliers >= 3,
                  "ransac_px": self.ransac_px > 0, "max_gap_s": self.max_gap_s > 0,
                  "max_scale_change": self.max_scale_change > 1,
                  "hfov_deg": self.hfov_deg is None or 1 < self.hfov_deg < 170}
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise JziError(f"visual odometry: {name} = {value!r} is out of range; see "
                               "VisualOdometryConfig in jzi_ros/inference/visual_odometry.py")


def filter_config(config):
    """
    Return the FusionConfig ``config`` for a filter moved by visual odometry.

    Its displacements take ``visual_noise_fraction`` / ``visual_noise_mps`` (1-sigma per axis:
    a fraction of the distance plus metres per second) and a scale state
    (``visual_scale_sigma`` per step: the frames find the height the guess missed) in place of
    odometry's ``odom_*``.
    """
    return dataclasses.replace(config, odom_noise_fraction=config.visual_noise_fraction,
                               odom_noise_mps=config.visual_noise_mps,
                               odom_scale_sigma=config.visual_scale_sigma)


def ground_shift_px(previous: np.ndarray, current: np.ndarray, config: VisualOdometryConfig
                    ) -> tuple[np.ndarray | None, int]:
    """
    Return where ``current``'s centre lies in ``previous``, minus that centre, and the inliers.

    That is the camera's move in the previous frame's image axes (x right, y down), for a
    camera near nadir. Both are grey images of the same size. ``(None, inliers)`` when too few
    corners track, the similarity fit has fewer than ``min_inliers`` inliers, or its scale
    changes by more than ``max_scale_change``.
    """
    corners = cv2.goodFeaturesToTrack(previous, config.corners, 0.01, 5)
    if corners is None or len(corners) < config.min_inliers:
        return None, 0 if corners is None else len(corners)
    tracked, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, corners, None,
                                                  winSize=(21, 21), maxLevel=3)
    ok = status.reshape(-1) == 1
    if int(ok.sum()) < config.min_inliers:
        return None, int(ok.sum())
    model, inliers = cv2.estimateAffinePartial2D(
        corners.reshape(-1, 2)[ok], tracked.reshape(-1, 2)[ok], method=cv2.RANSAC,
        ransacReprojThreshold=config.ransac_px)
    count = 0 if inliers is None else int(inliers.sum())
    if model is None or count < config.min_inliers:
        return None, count
    scale = math.sqrt(abs(float(np.linalg.det(model[:, :2]))))
    if not 1 / config.max_scale_change <= scale <= config.max_scale_change:
        return None, count
    centre = np.array([previous.shape[1], previous.shape[0]], np.float64) / 2
    # the fit maps previous -> current pixels; its inverse takes current's centre back
    return np.linalg.solve(model[:, :2], centre - model[:, 2]) - centre, count


def image_to_en(right_m: float, up_m: float, compass_deg: float) -> np.ndarray:
    """Turn a displacement along the image's right / up axes into East/North metres."""
    theta = math.radians(compass_deg)  # the image top's heading, clockwise from North
    return np.array([right_m * math.cos(theta) + up_m * math.sin(theta),
                     -right_m * math.sin(theta) + up_m * math.cos(theta)])


@dataclass
class _Frame:
    """The previous frame as matching needs it."""

    stamp_ns: int
    native: tuple[int, ...]  # grey shape as received (a camera that changes size: no pair)
    grey: np.ndarray  # shrunk to match_px
    compass_deg: float | None
    focal_px: float  # at the shrunk size


class VisualOdometry:
    """
    Frame-to-frame displacements of a downward camera, asked for like an odometry track.

    :meth:`add_frame` matches each frame against the previous one; :meth:`displacement` returns
    the East/North metres between two consecutive frames' stamps (None for any other interval
    or an unmatched pair: the filter's random walk covers it). One caller at a time.
    """

    def __init__(self, config: VisualOdometryConfig | None = None,
                 intrinsics: Intrinsics | Callable[[int, int], Intrinsics] | None = None
                 ) -> None:
        """
        Match frames with ``config``; scale them by ``intrinsics``.

        ``intrinsics``: the frames' camera, or a function of a frame's (height, width) giving
        it (the node's CameraInfo; a JziError from it means "not known yet"); None, or not
        known: ``config.hfov_deg``, else the 70 deg guess.
        """
        self.config = config or VisualOdometryConfig()
        self.intrinsics = intrinsics
        self.guessed = False  # the focal length is the 70 deg guess (say so once)
        self.matched = 0  # pairs matched / tried since the start (the report says both)
        self.tried = 0
        self._previous: _Frame | None = None
        self._steps: dict[tuple[int, int], np.ndarray] = {}

    def reset(self) -> None:
        """Forget the previous frame (the next one starts a new chain)."""
        self._previous = None

    def _focal_px(self, width: int, height: int) -> float:
        camera = self.intrinsics
        if callable(camera):
            try:
                camera = camera(height, width)
            except JziError:
                camera = None
        if camera is not None:
            return math.sqrt(camera.fx * camera.fy)
        hfov = self.config.hfov_deg
        if hfov is None:
            hfov, self.guessed = GUESS_HFOV_DEG, True
        return Intrinsics.from_hfov(width, height, hfov).fx

    def add_frame(self, stamp_ns: int, image: np.ndarray, compass_deg: float | None
                  ) -> np.ndarray | None:
        """
        Match ``image`` (RGB or grey) with the previous frame; return East/North metres or None.

        ``compass_deg``: the frame's image-top heading, clockwise from North (None: unknown, the
        pair is not turned into a displacement). A stamp not after the previous frame's (a bag
        played again) starts a new chain.
        """
        stamp_ns = int(stamp_ns)
        grey = to_gray(image)
        native = grey.shape
        scale = min(1.0, self.config.match_px / max(native))
        if scale < 1:  # (area averaging; large frames are box-halved first, as the encoder's)
            width = max(1, round(native[1] * scale))
            height = max(1, round(native[0] * scale))
            grey = resize(grey, width, height)
            scale = width / native[1]
        previous, self._previous = self._previous, _Frame(
            stamp_ns, native, grey, compass_deg, self._focal_px(native[1], native[0]) * scale)
        if (previous is None or stamp_ns <= previous.stamp_ns
                or (stamp_ns - previous.stamp_ns) > self.config.max_gap_s * 1e9
                or previous.native != native):
            return None
        self.tried += 1
        if previous.compass_deg is None:  # the pair is turned by its first frame's heading
            return None
        shift, _ = ground_shift_px(previous.grey, grey, self.config)
        if shift is None:
            return None
        # in the previous frame's axes: x right, y down (a move towards the image top is -y)
        metres_per_px = self.config.height_m / previous.focal_px
        step = image_to_en(shift[0] * metres_per_px, -shift[1] * metres_per_px,
                           previous.compass_deg)
        self.matched += 1
        self._steps[(previous.stamp_ns, stamp_ns)] = step
        return step

    def forget_before(self, stamp_ns: int) -> None:
        """Drop the displacements that end before ``stamp_ns`` (bounded memory online)."""
        self._steps = {key: step for key, step in self._steps.items() if key[1] >= stamp_ns}

    def displacement(self, start_ns: int, end_ns: int) -> np.ndarray | None:
        """East/North metres between two consecutive matched frames, else None."""
        return self._steps.get((int(start_ns), int(end_ns)))
