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
Drone-like query views: random poses and the camera's own imperfections.

A view is rendered from a styled world (see :mod:`jzi_ros.demo.style`) through the exact
ground homography, then degraded like a real frame: exposure drift, defocus or motion blur,
vignetting, sensor noise, and occluders (a landing leg or propeller in a corner, dirt).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import math

import cv2
import numpy as np

from jzi_ros.demo.camera import CameraModel, CameraPose, render_view
from jzi_ros.demo.world import World
from jzi_ros.errors import JziError


@dataclass(frozen=True)
class ViewSampling:
    """
    Ranges the query camera is drawn from (uniform).

    ``heading_deg`` (-10, 10) is a yaw-stabilised camera held north-up (a mapping drone's
    gimbal); (0, 360) any heading.
    """

    width: int = 320
    height: int = 240
    heading_deg: tuple[float, float] = (0.0, 360.0)
    hfov_deg: tuple[float, float] = (60.0, 80.0)
    altitude_m: tuple[float, float] = (80.0, 150.0)
    pitch_deg: tuple[float, float] = (65.0, 90.0)
    degrade: float = 1.0  # scales blur, noise and occluder probability (0 = clean images)

    def __post_init__(self) -> None:
        for name in ("heading_deg", "hfov_deg", "altitude_m", "pitch_deg"):
            low, high = getattr(self, name)
            if not low <= high:
                raise JziError(f"view sampling: {name} range ({low}, {high}) has low > high")
        worst = CameraModel(self.width, self.height, self.hfov_deg[1])
        if self.pitch_deg[0] - worst.vfov_deg / 2 < 3.0:
            raise JziError(f"view sampling: pitch_deg low {self.pitch_deg[0]} sees the horizon "
                           f"with hfov {self.hfov_deg[1]} deg; raise it above "
                           f"{worst.vfov_deg / 2 + 3.0:.1f}")

    def to_dict(self) -> dict:
        return asdict(self)


def sample_pose(rng: np.random.Generator, sampling: ViewSampling, east_m: float,
                north_m: float, heading_deg: float | None = None
                ) -> tuple[CameraModel, CameraPose]:
    """Sample a camera and pose above (east, north); heading random unless given."""
    camera = CameraModel(sampling.width, sampling.height, float(rng.uniform(*sampling.hfov_deg)))
    heading = (float(rng.uniform(*sampling.heading_deg)) % 360 if heading_deg is None
               else heading_deg)
    pose = CameraPose(float(east_m), float(north_m), float(rng.uniform(*sampling.altitude_m)),
                      heading, float(rng.uniform(*sampling.pitch_deg)))
    return camera, pose


def capture(world: World, styled: np.ndarray, camera: CameraModel, pose: CameraPose,
            rng: np.random.Generator, degrade: float = 1.0) -> np.ndarray:
    """Render and degrade one frame (RGB uint8 [height, width, 3])."""
    image = render_view(styled, world.pixel_to_local(), camera, pose)
    return degrade_frame(image, rng, degrade) if degrade > 0 else image


def degrade_frame(image: np.ndarray, rng: np.random.Generator, amount: float = 1.0
                  ) -> np.ndarray:
    h, w = image.shape[:2]
    img = image.astype(np.float32)
    if rng.random() < 0.3 * amount:
        length = int(rng.integers(3, 8))
        kernel = np.zeros((length, length), np.float32)
        angle = rng.uniform(0, math.pi)
        c = (length - 1) / 2
        for t in np.linspace(-c, c, 2 * length):
            kernel[int(round(c + t * math.sin(angle))), int(round(c + t * math.cos(angle)))] = 1
        img = cv2.filter2D(img, -1, kernel / kernel.sum())
    else:
        sigma = rng.uniform(0.0, 1.2 * amount)
        if sigma > 0.2:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
    # Vignetting and exposure drift.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img *= (1 - rng.uniform(0, 0.25) * amount * r2 / 2)[..., None]
    img *= rng.uniform(1 - 0.15 * amount, 1 + 0.15 * amount)
    img += rng.normal(0, rng.uniform(1, 5) * amount, img.shape).astype(np.float32)
    if rng.random() < 0.25 * amount:
        _landing_gear(img, rng)
    if rng.random() < 0.15 * amount:
        for _ in range(int(rng.integers(1, 5))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            spot = np.zeros((h, w), np.float32)
            cv2.circle(spot, centre, int(rng.integers(3, max(4, w // 20))), 1.0, -1)
            spot = cv2.GaussianBlur(spot, (0, 0), 3)[..., None]
            img = img * (1 - 0.5 * spot) + 0.5 * spot * 90
    return np.clip(img, 0, 255).astype(np.uint8)


def _landing_gear(img: np.ndarray, rng: np.random.Generator) -> None:
    """Add a dark, out-of-focus strut entering from a top corner (what drone cameras often see)."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.float32)
    x = 0 if rng.random() < 0.5 else w - 1
    end = (int(x + (1 if x == 0 else -1) * rng.uniform(0.1, 0.3) * w),
           int(rng.uniform(0.15, 0.4) * h))
    cv2.line(mask, (x, 0), end, 1.0, int(max(3, rng.uniform(0.03, 0.08) * w)))
    mask = cv2.GaussianBlur(mask, (0, 0), 2.5)[..., None]
    img *= 1 - 0.85 * mask
    img += 0.85 * mask * 30
