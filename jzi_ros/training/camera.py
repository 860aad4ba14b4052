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
A pinhole camera above flat ground: the exact plane-to-image homography and view rendering.

Frames: the world is local East-North-Up metres (ground plane z = 0). The camera frame is
OpenCV's (x right, y down, z forward along the optical axis). A pose is the camera position
(east, north, altitude), its compass ``heading`` (the direction the optical axis points
horizontally, degrees clockwise from north) and its ``pitch`` (depression of the optical axis
below the horizon: 90 = nadir). With zero roll the image's right axis stays horizontal.

A ground point X = (e, n, 0) projects to  p ~ K R (X - C) = K [r1 r2 -R C] (e, n, 1)^T, with
r1, r2 the first two columns of the world-to-camera rotation R: a 3x3 homography.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import cv2
import numpy as np

from jzi_ros.errors import JziError

MIN_HORIZON_MARGIN_DEG = 3.0  # the top image row must look at least this far below the horizon


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics from an image size and a horizontal field of view (square pixels)."""

    width: int = 320
    height: int = 240
    hfov_deg: float = 70.0

    def __post_init__(self) -> None:
        if self.width < 2 or self.height < 2 or not 1.0 < self.hfov_deg < 170.0:
            raise JziError(f"camera: need width, height >= 2 and 1 < hfov_deg < 170, got "
                           f"{self.width}x{self.height} hfov {self.hfov_deg}")

    @property
    def focal_px(self) -> float:
        return (self.width / 2) / math.tan(math.radians(self.hfov_deg) / 2)

    @property
    def vfov_deg(self) -> float:
        return math.degrees(2 * math.atan((self.height / 2) / self.focal_px))

    def K(self, scale: float = 1.0) -> np.ndarray:
        """
        Intrinsics for the image scaled by ``scale``; principal point at the centre.

        OpenCV puts pixel centres at integer coordinates, so the centre of a W-wide image is
        at (W - 1) / 2.
        """
        f = self.focal_px * scale
        return np.array([[f, 0.0, (self.width * scale - 1) / 2],
                         [0.0, f, (self.height * scale - 1) / 2],
                         [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class CameraPose:
    east_m: float
    north_m: float
    altitude_m: float
    heading_deg: float = 0.0
    pitch_deg: float = 90.0

    @property
    def position(self) -> np.ndarray:
        return np.array([self.east_m, self.north_m, self.altitude_m])


def rotation_world_to_camera(pose: CameraPose) -> np.ndarray:
    """R with rows = camera x (right), y (down), z (forward) axes expressed in ENU."""
    psi, theta = math.radians(pose.heading_deg), math.radians(pose.pitch_deg)
    forward = np.array([math.sin(psi) * math.cos(theta), math.cos(psi) * math.cos(theta),
                        -math.sin(theta)])
    right = np.array([math.cos(psi), -math.sin(psi), 0.0])
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def check_pose(camera: CameraModel, pose: CameraPose) -> None:
    """Reject poses whose image would contain sky (the ground homography breaks there)."""
    if not pose.altitude_m > 0:
        raise JziError(f"camera pose: altitude_m must be > 0, got {pose.altitude_m}")
    if not 0 < pose.pitch_deg <= 90:
        raise JziError(f"camera pose: pitch_deg must be in (0, 90], got {pose.pitch_deg}")
    if pose.pitch_deg - camera.vfov_deg / 2 < MIN_HORIZON_MARGIN_DEG:
        raise JziError(f"camera pose: pitch {pose.pitch_deg:.1f} deg with a vertical field of "
                       f"view of {camera.vfov_deg:.1f} deg sees the horizon; need pitch >= "
                       f"{camera.vfov_deg / 2 + MIN_HORIZON_MARGIN_DEG:.1f} deg")


def ground_to_image(camera: CameraModel, pose: CameraPose, scale: float = 1.0) -> np.ndarray:
    """Homography from ground (east, north, 1) metres to image pixels (x, y, 1)."""
    check_pose(camera, pose)
    R = rotation_world_to_camera(pose)
    t = -R @ pose.position
    return camera.K(scale) @ np.column_stack([R[:, 0], R[:, 1], t])


def project(camera: CameraModel, pose: CameraPose, east_north: np.ndarray) -> np.ndarray:
    """Image pixels [N, 2] of ground points [N, 2] (east, north metres)."""
    pts = np.asarray(east_north, dtype=np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(pts, ground_to_image(camera, pose)).reshape(-1, 2)


def image_to_ground(camera: CameraModel, pose: CameraPose, pixels: np.ndarray) -> np.ndarray:
    """Ground points [N, 2] (east, north metres) seen at image pixels [N, 2]."""
    inverse = np.linalg.inv(ground_to_image(camera, pose))
    pts = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(pts, inverse).reshape(-1, 2)


def footprint(camera: CameraModel, pose: CameraPose) -> np.ndarray:
    """Ground corners [4, 2] of the image (top-left, top-right, bottom-right, bottom-left)."""
    w, h = camera.width - 0.5, camera.height - 0.5
    return image_to_ground(camera, pose, np.array([[-0.5, -0.5], [w, -0.5], [w, h], [-0.5, h]]))


def render_view(source: np.ndarray, source_to_local: np.ndarray, camera: CameraModel,
                pose: CameraPose, supersample: int = 2) -> np.ndarray:
    """
    Render the camera's image of a north-up raster lying on the ground.

    ``source_to_local`` is the 3x3 affine from the raster's pixel coordinates in the GDAL
    convention (pixel (i, j) covers [i, i + 1) x [j, j + 1)) to local east/north metres.
    Rendering at ``supersample`` times the size and area-averaging down limits aliasing where
    an oblique view compresses many source pixels into one image pixel. Ground outside the
    raster is black.
    """
    # cv2 samples source pixel (i, j) at its centre, GDAL coordinate (i + 0.5, j + 0.5).
    centre = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    homography = ground_to_image(camera, pose, supersample) @ source_to_local @ centre
    size = (camera.width * supersample, camera.height * supersample)
    image = cv2.warpPerspective(source, homography, size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if supersample > 1:
        image = cv2.resize(image, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
    return image
