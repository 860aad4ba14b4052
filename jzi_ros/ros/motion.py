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
Temporal fusion in the node: optional odometry / IMU subscriptions, the filtered fix.

Kept out of ``node.py`` on purpose: the node calls :func:`attach` once in ``setup()`` and
:meth:`NodeFusion.fuse` once per frame. Parameters live under ``fusion.*`` (declared here):
``fusion.enabled`` (default true: on the demo flight the fused fix beats single frames, see
docs/fusion.md), ``fusion.odom_topic`` / ``fusion.imu_topic`` (empty: no subscription),
``fusion.heading_source`` (odometry, imu, fixed), ``fusion.heading_yaw_deg`` and
``fusion.single_fix_topic`` (where the single-frame fix goes when ``fix_topic`` carries the
filtered one), plus every :class:`~jzi_ros.inference.fusion.FusionConfig` field as
``fusion.<field>``. All read once at start-up.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from jzi_ros.errors import JziError
from jzi_ros.heading import check_enu_frame, HEADING_SOURCES, yaw_from_quaternion
from jzi_ros.inference import messages
from jzi_ros.inference.fusion import FusionConfig
from jzi_ros.inference.motion import HeadingSeries, OnlineFusion

PREFIX = "fusion."
NODE_PARAMETERS = {
    "enabled": (True, "publish the temporally filtered fix on fix_topic (the single-frame "
                      "fix then goes to fusion.single_fix_topic)"),
    "odom_topic": ("", "nav_msgs/Odometry for the filter's motion (empty: random walk)"),
    "imu_topic": ("", "sensor_msgs/Imu (ENU orientation) for heading_source imu"),
    "heading_source": ("odometry", "yaw that rotates the odometry twist to East/North: "
                                   + ", ".join(HEADING_SOURCES)),
    "heading_yaw_deg": (0.0, "ENU yaw for heading_source fixed (0 = East, 90 = North)"),
    "single_fix_topic": ("jzi/fix_single", "single-frame NavSatFix when fusion is on"),
}


def _declare(node: Any, name: str, default: Any, description: str) -> Any:
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    try:
        node.declare_parameter(PREFIX + name, default, ParameterDescriptor(
            description=description, read_only=True))
    except (InvalidParameterTypeException, InvalidParameterValueException) as err:
        # e.g. fusion.max_speed_mps: 20 (an integer) in YAML for a double parameter
        raise JziError(f"parameter {PREFIX}{name}: {err}") from None
    return node.get_parameter(PREFIX + name).value


class NodeFusion:
    """The node's filter, its motion subscriptions and the single-frame publisher."""

    def __init__(self, node: Any, tree: Any, config: FusionConfig, values: dict[str, Any],
                 out_qos: QoSProfile) -> None:
        from sensor_msgs.msg import NavSatFix

        self.node = node
        self.values = values
        heading = HeadingSeries(values["heading_source"],
                                math.radians(values["heading_yaw_deg"]))
        self.online = OnlineFusion(tree, config, heading, use_odometry=bool(values["odom_topic"]))
        self.single_pub = node.create_publisher(NavSatFix, values["single_fix_topic"], out_qos)
        sensor_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                                reliability=ReliabilityPolicy.BEST_EFFORT)
        if values["odom_topic"]:
            from nav_msgs.msg import Odometry

            node.create_subscription(Odometry, values["odom_topic"], self._on_odometry,
                                     sensor_qos)
        if values["heading_source"] == "imu":
            if not values["imu_topic"]:
                raise JziError("fusion.heading_source is imu but fusion.imu_topic is empty")
            from sensor_msgs.msg import Imu

            node.create_subscription(Imu, values["imu_topic"], self._on_imu, sensor_qos)

    def _on_odometry(self, msg: Any) -> None:
        yaw = None
        try:
            if self.values["heading_source"] == "odometry":
                check_enu_frame(msg.header.frame_id, f"odometry {self.values['odom_topic']}")
                q = msg.pose.pose.orientation
                yaw = yaw_from_quaternion(q.x, q.y, q.z, q.w)
        except JziError as err:
            self.node.get_logger().error(str(err), throttle_duration_sec=10.0)
            return
        twist = msg.twist.twist.linear
        self.online.add_odometry(messages.stamp_to_ns(msg.header.stamp), float(twist.x),
                                 float(twist.y), yaw)

    def _on_imu(self, msg: Any) -> None:
        try:
            check_enu_frame(msg.header.frame_id, f"IMU {self.values['imu_topic']}")
            q = msg.orientation
            yaw = yaw_from_quaternion(q.x, q.y, q.z, q.w)
        except JziError as err:
            self.node.get_logger().error(str(err), throttle_duration_sec=10.0)
            return
        self.online.add_heading(messages.stamp_to_ns(msg.header.stamp), yaw)

    def seeds(self, stamp_ns: int) -> Any:
        """Seeds of the prior-seeded zoom for this frame (None unless ``fusion.seed_beam``)."""
        return self.online.seeds(stamp_ns)

    def fuse(self, fix: Any, measurement: Any, stamp_ns: int, settings: Any) -> Any:
        """Publish the single-frame fix on its own topic; return the fused fix for fix_topic."""
        if fix.ok or settings.publish_no_fix:
            self.single_pub.publish(messages.fix_to_navsatfix(
                fix, stamp_ns, settings.fix_frame_id, self.node.types,
                covariance_type=settings.covariance_type))
        # the Localizer owns altitude and Up variance: the fused fix carries the frame's; a
        # refined fix (refine.enabled) goes into the filter as a point measurement
        return self.online.fuse(stamp_ns, measurement, fix.altitude,
                                math.sqrt(float(fix.covariance_enu[2][2])), fix)


def attach(node: Any, localizer: Any, out_qos: QoSProfile) -> NodeFusion | None:
    """Declare the ``fusion.*`` parameters; build the node's fusion when enabled (else None)."""
    values = {name: _declare(node, name, default, text)
              for name, (default, text) in NODE_PARAMETERS.items()}
    fields = {}
    for field in dataclasses.fields(FusionConfig):
        default = getattr(FusionConfig(), field.name)
        fields[field.name] = _declare(node, field.name, default,
                                      f"FusionConfig.{field.name} (docs/fusion.md)")
    if values["heading_source"] not in HEADING_SOURCES:
        raise JziError(f"fusion.heading_source must be one of {HEADING_SOURCES}, got "
                       f"{values['heading_source']!r}")
    if not values["enabled"]:
        return None
    config = FusionConfig(**fields)  # JziError names the bad fusion.* value
    fusion = NodeFusion(node, localizer.tree, config, values, out_qos)
    node.get_logger().info(
        f"fusion on: filtered fix on the fix topic, single-frame fix on "
        f"{values['single_fix_topic']}; motion: "
        f"{values['odom_topic'] or 'random walk'} (heading {values['heading_source']})")
    return fusion
