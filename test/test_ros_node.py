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
Smoke test of the real node on a ROS 2 graph.

Marker ``ros``: runs where rclpy and launch_testing are installed, e.g. ``colcon test``;
skipped elsewhere.

The node runs as its own process exactly as ``ros2 run`` starts it, with a tiny map and model
from test/support.py; the test publishes camera frames and checks /jzi/fix (stamp, frame,
status, covariance), the hypotheses cloud, the skipping of a bad frame, the exit code after
SIGINT, and the one-line error for a missing map.
"""
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

FRAME = "test_camera"
ALTITUDE = 123.0
UP_VARIANCE = 2500.0
SIGMA_FLOOR = 3.0
STARTUP_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def tiny_assets(tmp_path_factory):
    from support import make_tiny_checkpoint, make_tiny_map

    root = tmp_path_factory.mktemp("ros_node")
    pyramid = make_tiny_map(root)
    return pyramid.path, make_tiny_checkpoint(root, pyramid)


def _start_node(map_dir, model, namespace, **params):
    args = [sys.executable, "-m", "jzi_ros.ros.node", "--ros-args", "-r",
            f"__ns:=/{namespace}", "-p", f"map_dir:={map_dir}", "-p", f"model_file:={model}",
            "-p", "backend:=torch", "-p", f"fix_frame_id:={FRAME}",
            "-p", f"altitude_m:={ALTITUDE}", "-p", f"altitude_variance:={UP_VARIANCE}",
            "-p", f"sigma_floor_m:={SIGMA_FLOOR}"]
    for name, value in params.items():
        args += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


def _stop(process, timeout_s=10.0):
    """SIGINT like `ros2 launch` does; the node must exit 0 within a few seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"node did not exit within {timeout_s} s of SIGINT:\n{output}")
    return process.returncode, output


class Graph:
    """A test node that publishes camera frames and records the node's outputs."""

    def __init__(self, namespace):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, NavSatFix, PointCloud2

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("jzi_smoke_test", namespace=namespace,
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.Image = Image
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.fixes, self.clouds, self.sent_stamps = [], [], set()
        self.node.create_subscription(NavSatFix, "jzi/fix", self.fixes.append, reliable)
        self.node.create_subscription(PointCloud2, "jzi/hypotheses", self.clouds.append,
                                      reliable)
        sensor = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.image_pub = self.node.create_publisher(Image, "camera/image_raw", sensor)
        self.rgb = np.random.default_rng(0).integers(0, 256, (48, 96, 3), dtype=np.uint8)

    def publish(self, sec, encoding="rgb8"):
        msg = self.Image()
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 250_000_000
        msg.header.frame_id = FRAME
        msg.height, msg.width = self.rgb.shape[:2]
        msg.encoding = encoding
        if encoding == "16UC1":
            msg.step = msg.width * 2
            msg.data = bytes(msg.step * msg.height)
        else:
            msg.step = msg.width * 3
            msg.data = self.rgb.tobytes()
            self.sent_stamps.add((sec, 250_000_000))
        self.image_pub.publish(msg)

    def run_until(self, done, process, timeout_s=STARTUP_TIMEOUT_S):
        deadline, sec = time.monotonic() + timeout_s, 100
        while not done() and time.monotonic() < deadline:
            assert process.poll() is None, "node exited early:\n" + process.stdout.read()
            if sec == 101:
                self.publish(sec, "16UC1")  # a bad frame: counted and skipped
            else:
                self.publish(sec)
            sec += 1
            self.executor.spin_once(timeout_sec=0.2)
        return done()

    def close(self):
        self.node.destroy_node()
        self.executor.shutdown()
        self.context.try_shutdown()


def _check_finite(fix):
    values = [fix.latitude, fix.longitude, fix.altitude, *fix.position_covariance]
    assert all(math.isfinite(v) for v in values)


def test_node_publishes_fixes_and_stops_cleanly(tiny_assets):
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    map_dir, model = tiny_assets
    process = _start_node(map_dir, model, "smoke", confidence_threshold=0.0)
    graph = Graph("smoke")
    try:
        assert graph.run_until(lambda: len(graph.fixes) >= 2 and graph.clouds, process), \
            "no /smoke/jzi/fix within the timeout"
    finally:
        graph.close()
        code, output = _stop(process)
    assert code == 0, output
    assert "Traceback" not in output
    for fix in graph.fixes:
        assert (fix.header.stamp.sec, fix.header.stamp.nanosec) in graph.sent_stamps
        assert fix.header.frame_id == FRAME
        assert fix.status.status == NavSatStatus.STATUS_FIX
        assert fix.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN
        assert fix.altitude == ALTITUDE
        _check_finite(fix)
        cov = np.asarray(fix.position_covariance).reshape(3, 3)
        np.testing.assert_allclose(cov, cov.T)
        assert np.linalg.eigvalsh(cov[:2, :2]).min() >= SIGMA_FLOOR ** 2 * (1 - 1e-9)
        assert cov[2, 2] == UP_VARIANCE
        assert 38.8 < fix.latitude < 39.0 and -77.1 < fix.longitude < -76.9
    cloud = graph.clouds[-1]
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "probability"]
    assert cloud.width >= 1 and cloud.header.frame_id == "jzi_map"
    assert "skipping bad image" in output and "16UC1" in output


def test_low_confidence_publishes_explicit_no_fix(tiny_assets):
    from sensor_msgs.msg import NavSatStatus

    map_dir, model = tiny_assets
    process = _start_node(map_dir, model, "nofix", confidence_threshold=1.0,
                          publish_no_fix=True)
    graph = Graph("nofix")
    try:
        assert graph.run_until(lambda: graph.fixes, process)
    finally:
        graph.close()
        code, output = _stop(process)
    assert code == 0, output
    fix = graph.fixes[0]
    assert fix.status.status == NavSatStatus.STATUS_NO_FIX
    assert fix.header.frame_id == FRAME
    _check_finite(fix)


def test_missing_map_is_one_error_line_and_exit_1(tmp_path):
    process = _start_node(tmp_path / "no_map", tmp_path / "no_model.safetensors", "missing")
    try:
        output, _ = process.communicate(timeout=STARTUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("node kept running without a map")
    assert process.returncode == 1, output
    assert "Traceback" not in output
    assert "no_map" in output
