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
A north-up model in the real node: each frame is rotated by the heading source's yaw.

The node runs as its own process (test_ros_node.py's harness). An exact 90-degree rotation
keeps every pixel, so a frame turned by 90 degrees with an IMU yaw that says so must give the
same hypotheses as the upright frame with the upright yaw, and a different one with the wrong
yaw. A north-up model without a heading source is refused at start with one line.
"""
import math

import numpy as np
import pytest
from test_ros_node import _cloud_points, _stamp, Graph, NodeProcess

from support import HEADING_SCENE, make_north_up_model

pytestmark = pytest.mark.ros

SCENE = HEADING_SCENE
NORTH_YAW_DEG, EAST_YAW_DEG = 90.0, 0.0  # ENU yaw of the image's top edge


@pytest.fixture(scope="module")
def north_up_assets(tmp_path_factory):
    pyramid, path = make_north_up_model(tmp_path_factory.mktemp("ros_heading"),
                                        "test_ros_node_heading")
    return pyramid.path, path


def _imu(graph, yaw_deg, stamp, imu_type):
    msg = imu_type()
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = "imu_link"
    half = math.radians(yaw_deg) / 2
    msg.orientation.z, msg.orientation.w = math.sin(half), math.cos(half)
    return msg


def _localize_with_heading(graph, node, imu_pub, pixels, yaw_deg, stamp, imu_type):
    """Publish the IMU yaw and the frame (again while lost) until the frame's fix arrives."""
    imu, frame = _imu(graph, yaw_deg, stamp, imu_type), graph.raw(pixels, "rgb8", stamp)

    def publish():
        imu_pub.publish(imu)
        graph.image_pub.publish(frame)

    publish()
    assert graph.spin_until(lambda: stamp in graph.fixes and stamp in graph.clouds, node,
                            republish=publish), f"no fix for {stamp}:\n{node.output}"
    return graph.fixes[stamp], _cloud_points(graph.clouds[stamp])


def test_imu_yaw_rotates_the_frame_north_up(north_up_assets):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Imu

    map_dir, model = north_up_assets
    node = NodeProcess(map_dir, model, "hgraph", confidence_threshold=0.0,
                       **{"fusion.heading_source": "imu", "fusion.imu_topic": "imu"})
    graph = Graph("hgraph")
    imu_pub = graph.node.create_publisher(
        Imu, "imu", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    try:
        graph.wait_ready(node)
        assert graph.spin_until(lambda: imu_pub.get_subscription_count() >= 1, node)
        assert "north-up model: frames rotated by the imu heading" in node.output
        # no IMU message yet: the frame is counted and skipped, never localized unrotated
        early = graph.raw(SCENE, "rgb8", graph.next_stamp())
        graph.skipped(early, node, "no heading for the frame stamped")
        assert "skipping bad image (1 so far)" in node.output

        graph.stamp += 5  # stamps 5 s apart: each frame sees only its own IMU sample
        upright_fix, upright = _localize_with_heading(
            graph, node, imu_pub, SCENE, NORTH_YAW_DEG, graph.next_stamp(), Imu)
        # the camera turned to face East: North is on the image's left
        turned = np.ascontiguousarray(np.rot90(SCENE, k=1))  # counter-clockwise
        graph.stamp += 5
        turned_fix, rotated = _localize_with_heading(
            graph, node, imu_pub, turned, EAST_YAW_DEG, graph.next_stamp(), Imu)
        np.testing.assert_allclose(rotated, upright, rtol=1e-5, atol=1e-6)
        assert (turned_fix.latitude, turned_fix.longitude) == pytest.approx(
            (upright_fix.latitude, upright_fix.longitude), abs=1e-9)
        # the same turned frame with the upright yaw is not turned back: other hypotheses
        graph.stamp += 5
        _, wrong = _localize_with_heading(
            graph, node, imu_pub, turned, NORTH_YAW_DEG, graph.next_stamp(), Imu)
        assert not np.allclose(wrong[:, 3], upright[:, 3], atol=1e-3)
        assert _stamp(early) not in graph.fixes
    finally:
        graph.close()
        assert node.stop()[0] == 0


def test_a_north_up_model_without_a_heading_source_is_refused_in_one_line(north_up_assets):
    map_dir, model = north_up_assets
    node = NodeProcess(map_dir, model, "hrefused")  # heading_source odometry, no odom_topic
    line = node.refusal("without a heading source")
    assert "north-up" in line and "fusion.odom_topic" in line
