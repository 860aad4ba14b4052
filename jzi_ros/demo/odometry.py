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
The demo flight's odometry: what a drone's visual-inertial or wheel odometry would report.

A nav_msgs/Odometry stream at ``rate_hz``: body-frame twist (x forward along the track, y
left) with a constant scale error, white noise, and a yaw that drifts as a random walk from
a small initial offset, so dead reckoning wanders off by a few per cent of the distance
flown, as real odometry does. The pose is that dead-reckoned track in an ENU-aligned ``odom``
frame (yaw 0 = East), so the fusion's ``odometry`` heading source applies. Its own random
stream: adding odometry never changes the rendered camera frames.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import math
from typing import Any

import numpy as np

ODOM_TOPIC = "/odom"
ODOM_TYPE = "nav_msgs/msg/Odometry"
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"


@dataclass(frozen=True)
class OdometrySpec:
    """Noise of the simulated odometry."""

    rate_hz: float = 5.0
    scale_error: float = 0.03  # twist reads 3 % fast
    speed_noise_mps: float = 0.3  # white noise on each twist axis
    yaw_offset_deg: float = 2.0  # initial heading error
    yaw_walk_deg_per_sqrt_s: float = 0.3  # heading drift (random walk)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OdometrySample:
    stamp_ns: int
    east_m: float  # dead-reckoned pose in the odom frame
    north_m: float
    yaw_rad: float  # ENU yaw the odometry believes
    forward_mps: float  # body-frame twist
    left_mps: float


def simulate(seed: int, positions_en: np.ndarray, stamps_ns: np.ndarray,
             spec: OdometrySpec = OdometrySpec()) -> list[OdometrySample]:
    """Odometry samples over a track sampled at ``stamps_ns`` (moving linearly in between)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0d, 0x0e]))
    positions = np.asarray(positions_en, np.float64).reshape(-1, 2)
    stamps = np.asarray(stamps_ns, np.int64)
    if len(positions) < 2:
        return []
    dt_frames = np.diff(stamps) / 1e9
    velocity = np.diff(positions, axis=0) / dt_frames[:, None]
    step_s = 1.0 / spec.rate_hz
    times = np.arange(stamps[0], stamps[-1], int(round(step_s * 1e9)), dtype=np.int64)
    segment = np.clip(np.searchsorted(stamps, times, side="right") - 1, 0, len(velocity) - 1)
    yaw_error = math.radians(spec.yaw_offset_deg)
    walk = math.radians(spec.yaw_walk_deg_per_sqrt_s) * math.sqrt(step_s)
    east, north = float(positions[0, 0]), float(positions[0, 1])
    samples = []
    for stamp, seg in zip(times, segment):
        ve, vn = velocity[seg]
        speed = math.hypot(ve, vn)
        yaw_true = math.atan2(vn, ve)
        yaw_error += rng.normal(0.0, walk)
        forward = speed * (1 + spec.scale_error) + rng.normal(0.0, spec.speed_noise_mps)
        left = rng.normal(0.0, spec.speed_noise_mps)
        yaw = yaw_true + yaw_error
        samples.append(OdometrySample(int(stamp), east, north, yaw, forward, left))
        cos, sin = math.cos(yaw), math.sin(yaw)
        east += (cos * forward - sin * left) * step_s
        north += (sin * forward + cos * left) * step_s
    return samples


def odometry_message(store: Any, types: Any, sample: OdometrySample) -> Any:
    """Build a nav_msgs/Odometry (rosbags typestore classes) from a sample."""
    from jzi_ros.inference.messages import make_header

    t = store.types
    half = sample.yaw_rad / 2
    pose = t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=sample.east_m, y=sample.north_m, z=0.0),
        orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(half),
                                                      w=math.cos(half)))
    vector = t["geometry_msgs/msg/Vector3"]
    twist = t["geometry_msgs/msg/Twist"](linear=vector(x=sample.forward_mps, y=sample.left_mps,
                                                       z=0.0),
                                         angular=vector(x=0.0, y=0.0, z=0.0))
    pose_cov = np.diag([1.0, 1.0, 1.0, 0.01, 0.01, 0.01]).ravel()
    twist_cov = np.diag([0.09, 0.09, 0.09, 0.01, 0.01, 0.01]).ravel()
    return t[ODOM_TYPE](
        header=make_header(sample.stamp_ns, ODOM_FRAME, types), child_frame_id=BASE_FRAME,
        pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=pose_cov),
        twist=t["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=twist_cov))
