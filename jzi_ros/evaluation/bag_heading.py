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
A bag's earth-referenced heading: what turns a north-up model's frames and the odometry.

The node takes each frame's heading from the fusion's heading source (``fusion.heading_source``:
an IMU's or the odometry's ENU orientation, or a fixed yaw for a gimballed camera; see
``jzi_ros/ros/motion.py``). Replay and calibration on a recorded bag read the same source from
the bag (``--heading-source``, ``--imu-topic``, ``--odom-topic``, ``--heading-yaw-deg``,
``--camera-yaw-deg``) into one :class:`~jzi_ros.inference.motion.HeadingSeries`, so a frame is
rotated exactly as the node would rotate it.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any

from jzi_ros.errors import JziError
from jzi_ros.evaluation.bags import iter_messages, require_topic, stamp_ns
from jzi_ros.heading import check_enu_frame, HEADING_SOURCES, yaw_from_quaternion
from jzi_ros.inference.motion import HeadingSeries

ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
IMU_TYPE = "sensor_msgs/msg/Imu"


@dataclass
class HeadingOptions:
    """Where a bag's heading comes from (the node's ``fusion.heading_*`` parameters)."""

    source: str = "odometry"  # odometry, imu or fixed (jzi_ros.heading)
    odom_topic: str | None = None  # nav_msgs/Odometry with an ENU orientation
    imu_topic: str | None = None  # sensor_msgs/Imu with an ENU orientation
    yaw_deg: float = 0.0  # ENU yaw for source fixed (0 = East, 90 = North)
    camera_yaw_deg: float = 0.0  # north-up frames: the image top's yaw from the body's forward

    def validate(self) -> None:
        if self.source not in HEADING_SOURCES:
            raise JziError(f"--heading-source must be one of {', '.join(HEADING_SOURCES)}, "
                           f"got {self.source!r}")
        for flag, value in (("--heading-yaw-deg", self.yaw_deg),
                            ("--camera-yaw-deg", self.camera_yaw_deg)):
            if not math.isfinite(value):
                raise JziError(f"{flag} must be a finite angle in degrees, got {value!r}")

    def topic(self) -> str | None:
        """Return the topic the source reads (None for a fixed yaw)."""
        return {"imu": self.imu_topic, "odometry": self.odom_topic}.get(self.source)

    def same_samples(self, other: "HeadingOptions") -> bool:
        """Tell whether ``other`` reads the same yaw samples (source, topic, fixed yaw)."""
        return ((self.source, self.topic(), self.yaw_deg)
                == (other.source, other.topic(), other.yaw_deg))

    def missing(self) -> str | None:
        """Say what is missing for this source (None when complete)."""
        flag = {"imu": "--imu-topic", "odometry": "--odom-topic"}.get(self.source)
        if flag and not self.topic():
            return f"--heading-source {self.source} needs {flag}"
        return None


def read_heading(reader: Any, bag: Path, options: HeadingOptions) -> HeadingSeries:
    """Read the bag's yaw samples for ``options.source`` (stamp order as recorded)."""
    options.validate()
    heading = HeadingSeries(options.source, math.radians(options.yaw_deg))
    if options.source == "fixed":
        return heading
    if options.missing():
        raise JziError(f"bag {bag}: {options.missing()} (the heading's topic)")
    topic = options.topic()
    if options.source == "odometry":
        require_topic(reader, bag, topic, (ODOMETRY_TYPE,), "odometry", "--odom-topic")
    else:
        require_topic(reader, bag, topic, (IMU_TYPE,), "IMU", "--imu-topic")
    for msg in iter_messages(reader, bag, topic):
        heading.add(stamp_ns(msg), message_yaw(msg, options.source, topic))
    return heading


def message_yaw(msg: Any, source: str, topic: str) -> float:
    """Return the ENU yaw of an odometry or IMU message (a non-ENU frame: one JziError line)."""
    check_enu_frame(msg.header.frame_id, f"{source} {topic}")
    q = msg.pose.pose.orientation if source == "odometry" else msg.orientation
    return yaw_from_quaternion(q.x, q.y, q.z, q.w)
