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
launch_testing: the installed ``localize.launch.py`` brings the node up and /jzi/fix arrives.

Runs under ``colcon test`` (needs the installed package, rclpy and launch_testing; marker
``launch``); the whole module is skipped where launch_testing is missing. test_ros_node.py
covers the node process in more detail on any machine with rclpy (encodings, QoS, runtime
parameters, NO_FIX, bad frames, missing map).
"""
import math
from pathlib import Path
import tempfile
import time
import unittest

import numpy as np
import pytest

launch_testing = pytest.importorskip("launch_testing", reason="needs ROS 2 launch_testing")

from ament_index_python.packages import get_package_share_directory  # noqa: E402, I100
import launch  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, NavSatFix, NavSatStatus  # noqa: E402

pytestmark = pytest.mark.launch
STAMP = (1234, 500)


@pytest.mark.launch_test
def generate_test_description():
    from support import make_tiny_checkpoint, make_tiny_map

    root = Path(tempfile.mkdtemp(prefix="jzi_launch_test_"))
    pyramid = make_tiny_map(root)
    model = make_tiny_checkpoint(root, pyramid)
    launch_file = Path(get_package_share_directory("jzi_ros")) / "launch" / "localize.launch.py"
    localize = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(launch_file)),
        launch_arguments={"map_dir": str(pyramid.path), "model_file": str(model),
                          "image_topic": "/launch_test/image"}.items())
    return launch.LaunchDescription([localize, launch_testing.actions.ReadyToTest()]), {}


class TestFixArrives(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("jzi_launch_test")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_fix_with_image_stamp_and_finite_fields(self):
        fixes = []
        self.node.create_subscription(NavSatFix, "/jzi/fix", fixes.append,
                                      QoSProfile(depth=10,
                                                 reliability=ReliabilityPolicy.RELIABLE))
        images = self.node.create_publisher(
            Image, "/launch_test/image",
            QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        rgb = np.random.default_rng(0).integers(0, 256, (48, 96, 3), dtype=np.uint8)
        msg = Image(height=48, width=96, encoding="rgb8", step=96 * 3, data=rgb.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = STAMP
        msg.header.frame_id = "camera_link"
        deadline = time.monotonic() + 90.0
        while not fixes and time.monotonic() < deadline:
            images.publish(msg)
            rclpy.spin_once(self.node, timeout_sec=0.3)
        self.assertTrue(fixes, "no /jzi/fix within 90 s")
        fix = fixes[0]
        self.assertEqual((fix.header.stamp.sec, fix.header.stamp.nanosec), STAMP)
        self.assertEqual(fix.header.frame_id, "camera_link")  # config/localize.yaml default
        self.assertIn(fix.status.status, (NavSatStatus.STATUS_FIX, NavSatStatus.STATUS_NO_FIX))
        self.assertEqual(fix.position_covariance_type, NavSatFix.COVARIANCE_TYPE_KNOWN)
        values = [fix.latitude, fix.longitude, fix.altitude, *fix.position_covariance]
        self.assertTrue(all(math.isfinite(v) for v in values))
        self.assertGreaterEqual(fix.position_covariance[0], 25.0 * (1 - 1e-9))


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_node_exits_cleanly_on_sigint(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
