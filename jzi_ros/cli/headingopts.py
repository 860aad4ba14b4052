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
A bag's heading source, shared by ``jzi replay`` and ``jzi localize --calibrate BAG``.

The same source turns the odometry's twist into East/North for the temporal filter and
rotates a north-up model's frames (the node's ``fusion.heading_*`` and ``fusion.camera_yaw_deg``
parameters; ``jzi_ros/evaluation/bag_heading.py``).
"""
from __future__ import annotations

import argparse
from typing import Any


def add_arguments(group: Any, odom_topic: bool = True) -> None:
    """Add ``--heading-source`` and its topics / yaws to ``group`` (a parser or group)."""
    if odom_topic:
        group.add_argument("--odom-topic", default=None,
                           help="nav_msgs/Odometry topic: the filter's motion (body twist) and, "
                                "for --heading-source odometry, the heading (ENU orientation)")
    group.add_argument("--imu-topic", default=None,
                       help="sensor_msgs/Imu topic (ENU orientation) for --heading-source imu")
    group.add_argument("--heading-source", choices=("odometry", "imu", "fixed"),
                       default="odometry",
                       help="earth-referenced yaw that rotates the odometry twist to "
                            "East/North and a north-up model's frames: the odometry's "
                            "orientation (ENU frame), an IMU, or --heading-yaw-deg")
    group.add_argument("--frame-heading-source", choices=("odometry", "imu", "fixed"),
                       default=None,
                       help="north-up models: the frames' own heading source when it is not "
                            "--heading-source, e.g. fixed (--heading-yaw-deg) for a camera "
                            "gimballed at a fixed yaw while the odometry turns the twist "
                            "(the node's fusion.frame_heading_source; default: "
                            "--heading-source)")
    group.add_argument("--heading-yaw-deg", type=float, default=0.0,
                       help="ENU yaw for --heading-source fixed (0 = East, 90 = North), e.g. "
                            "a gimballed camera held at a fixed yaw")
    group.add_argument("--camera-yaw-deg", type=float, default=0.0,
                       help="north-up models: yaw of the image's top edge from the body's "
                            "forward axis, degrees counter-clockwise (the node's "
                            "fusion.camera_yaw_deg)")


def heading_options(args: argparse.Namespace):
    """Return the frames' parsed heading source as ``bag_heading.HeadingOptions`` (validated)."""
    from jzi_ros.evaluation.bag_heading import HeadingOptions

    source = args.frame_heading_source or args.heading_source
    options = HeadingOptions(source, getattr(args, "odom_topic", None),
                             args.imu_topic, args.heading_yaw_deg, args.camera_yaw_deg)
    options.validate()
    return options
