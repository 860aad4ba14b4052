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
Earth-referenced heading for motion (temporal fusion) and for rotating frames north-up.

Convention accepted everywhere in jzi_ros: ROS REP 103/105 ENU, i.e. yaw is the rotation about
Up, 0 = facing East, positive counter-clockwise (90 deg = facing North). A heading comes from
one of three sources, named by ``HEADING_SOURCES``:

- ``odometry``: the orientation of a nav_msgs/Odometry whose pose frame is earth-referenced
  ENU (a map frame aligned with East/North, e.g. from a GNSS-aligned EKF);
- ``imu``: a sensor_msgs/Imu orientation in ENU (REP 145: yaw 0 = East, magnetic declination
  already applied);
- ``fixed``: a constant yaw parameter (a robot whose body axes are held aligned).

NED frames (frame ids ending in ``_ned``, PX4/MAVROS style) are rejected with one clear line
rather than silently rotated 90 degrees the wrong way. Pure functions, no ROS imports.
"""
from __future__ import annotations

import math

import numpy as np

from jzi_ros.errors import JziError

HEADING_SOURCES = ("odometry", "imu", "fixed")


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Return the ENU yaw (radians, about Up, 0 = East, CCW) of an orientation quaternion."""
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(norm) or norm < 1e-9:
        raise JziError(f"orientation quaternion ({x}, {y}, {z}, {w}) is zero or not finite; "
                       "the heading source publishes no orientation")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def check_enu_frame(frame_id: str, what: str) -> None:
    """Raise JziError for a frame that declares itself NED (jzi_ros takes ENU headings only)."""
    name = str(frame_id).strip().lower()
    if name == "ned" or name.endswith("_ned") or name.startswith("ned_"):
        raise JziError(f"{what}: frame {frame_id!r} is NED; jzi_ros takes ENU headings only "
                       "(REP 103: yaw 0 = East, counter-clockwise); publish or remap the ENU "
                       "frame (e.g. MAVROS's local_position/odom) instead")


def body_to_en(forward: np.ndarray, left: np.ndarray, yaw_rad: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Rotate body-frame vectors (x forward, y left: REP 103) into (East, North) by ENU yaw."""
    cos, sin = np.cos(yaw_rad), np.sin(yaw_rad)
    return cos * forward - sin * left, sin * forward + cos * left


def compass_deg(yaw_rad: float) -> float:
    """ENU yaw (radians) -> compass heading in degrees, clockwise from North, in [0, 360)."""
    return float((90.0 - math.degrees(yaw_rad)) % 360.0)


def yaw_from_compass(heading_deg: float) -> float:
    """Compass heading (degrees clockwise from North) -> ENU yaw in radians in (-pi, pi]."""
    yaw = math.radians(90.0 - float(heading_deg))
    return math.pi - (math.pi - yaw) % (2 * math.pi)


def north_up_rotation_deg(camera_yaw_rad: float) -> float:
    """
    Return the counter-clockwise image rotation (degrees) that turns a nadir frame north-up.

    ``camera_yaw_rad`` is the ENU yaw of the direction the image's top edge points to. An image
    whose top points North (yaw pi/2) needs 0; one whose top points East (yaw 0) needs -90
    (clockwise: North, on the image's left, comes to the top).
    """
    return float((math.degrees(camera_yaw_rad) - 90.0 + 180.0) % 360.0 - 180.0)
