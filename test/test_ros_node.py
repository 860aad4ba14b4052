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
The real node on a real ROS 2 graph (marker ``ros``: needs rclpy, e.g. the ``ros-pip`` extra).

The node runs as its own process exactly as ``ros2 run`` starts it (``--ros-args``, a params
file), with a tiny map and model from test/support.py; a test node publishes camera frames and
subscribes to the outputs. Every wait is on an event (matched subscriptions, a fix with a given
stamp, a log line), never a fixed sleep before an assertion: the node needs seconds to load, and
more on a loaded machine.

One node process serves the raw-image tests in file order (``raw_node``), a second one the
compressed-image and NO_FIX tests; start-up failures each run their own short process.
"""
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.ros

FRAME = "test_camera"
ALTITUDE = 123.0
UP_VARIANCE = 2500.0
START_FLOOR_M = 700.0  # start-up sigma_floor_m: the runtime test lowers it below this
STARTUP_TIMEOUT_S = 120.0
EVENT_TIMEOUT_S = 60.0
SIGINT_EXIT_S = 10.0
SHIPPED_PARAMS = Path(__file__).resolve().parents[1] / "config" / "localize.yaml"


# --------------------------------------------------------------------------- processes

class NodeProcess:
    """jzi_localizer as a child process; a reader thread collects its log lines."""

    def __init__(self, map_dir, model, namespace, params_files=(), ros_args=(), **params):
        args = [sys.executable, "-m", "jzi_ros.ros.node", "--ros-args", "-r",
                f"__ns:=/{namespace}", *ros_args]
        for path in params_files:  # later files win, -p wins over all
            args += ["--params-file", str(path)]
        # single-frame fixes on jzi/fix unless a test turns temporal fusion on
        params = {"map_dir": map_dir, "model_file": model, "backend": "torch",
                  "device": "cpu", "fix_frame_id": FRAME, "fusion.enabled": False, **params}
        for name, value in params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{name}:={text}"]
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, env=env)
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()

    @property
    def output(self):
        return "\n".join(self.lines)

    def wait_for_line(self, text, timeout_s=EVENT_TIMEOUT_S):
        """Wait until a log line contains ``text``; fail with the output if the node exits."""
        deadline = time.monotonic() + timeout_s
        with self._new:
            while not any(text in line for line in self.lines):
                if self.process.poll() is not None and not self._reader.is_alive():
                    pytest.fail(f"node exited ({self.process.returncode}) before logging "
                                f"{text!r}:\n{self.output}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no log line with {text!r} within {timeout_s} s:\n"
                                f"{self.output}")
                self._new.wait(0.2)

    def refusal(self, why):
        """Wait for a start-up refusal: exit 1, no traceback; return its one [ERROR] line."""
        try:
            self.process.wait(timeout=STARTUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"node kept running {why}")
        self._reader.join(5.0)
        assert self.process.returncode == 1, self.output
        assert "Traceback" not in self.output
        (line,) = _error_lines(self.output)
        return line

    def rss_mb(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        raise AssertionError("no VmRSS")

    def stop(self, timeout_s=SIGINT_EXIT_S):
        """SIGINT like `ros2 launch`; return (exit code, seconds to exit)."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"node did not exit within {timeout_s} s of SIGINT:\n{self.output}")
        self._reader.join(5.0)
        return self.process.returncode, time.monotonic() - started


class Graph:
    """A test node: publishes camera frames, records /jzi/fix and /jzi/hypotheses by stamp."""

    def __init__(self, namespace, compressed=False):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image, NavSatFix, PointCloud2

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("jzi_graph_test", namespace=namespace,
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.Image, self.CompressedImage = Image, CompressedImage
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        # robot_localization's navsat_transform_node: sensor-data QoS, depth 1
        sensor = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                            reliability=ReliabilityPolicy.BEST_EFFORT)
        self.fixes, self.clouds, self.sensor_qos_fixes = {}, {}, []
        self.fix_sub = self.node.create_subscription(
            NavSatFix, "jzi/fix", lambda m: self.fixes.setdefault(_stamp(m), m), reliable)
        self.node.create_subscription(NavSatFix, "jzi/fix", self.sensor_qos_fixes.append,
                                      sensor)
        self.node.create_subscription(
            PointCloud2, "jzi/hypotheses", lambda m: self.clouds.setdefault(_stamp(m), m),
            reliable)
        topic = "camera/image_raw/compressed" if compressed else "camera/image_raw"
        self.image_pub = self.node.create_publisher(CompressedImage if compressed else Image,
                                                    topic, sensor)  # a BEST_EFFORT camera
        self.stamp = 1000

    def spin_until(self, done, node, timeout_s=EVENT_TIMEOUT_S, republish=None):
        """Spin until ``done()``; republish (lost best-effort frames) about once a second."""
        deadline, last = time.monotonic() + timeout_s, time.monotonic()
        while not done():
            if node.process.poll() is not None:
                pytest.fail(f"node exited ({node.process.returncode}):\n{node.output}")
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
            if republish is not None and time.monotonic() - last > 1.0:
                republish()
                last = time.monotonic()
        return True

    def wait_ready(self, node):
        """Wait until the node is up: its image subscription and fix publisher matched ours."""
        node.wait_for_line("localizer ready", STARTUP_TIMEOUT_S)
        assert self.spin_until(lambda: self.image_pub.get_subscription_count() >= 1
                               and self.fix_sub.get_publisher_count() >= 1, node), \
            "image subscription / fix publisher never matched"

    def next_stamp(self):
        self.stamp += 1
        return (self.stamp, 250_000_000)

    def raw(self, pixels, encoding, stamp, pad=0):
        msg = self.Image()
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        msg.header.frame_id = FRAME
        rows = pixels.reshape(pixels.shape[0], -1)
        if pad:
            rows = np.concatenate([rows, np.full((rows.shape[0], pad), 77, np.uint8)], axis=1)
        msg.height, msg.width = pixels.shape[:2]
        msg.encoding, msg.step = encoding, rows.shape[1]
        msg.data = rows.tobytes()
        return msg

    def compressed(self, data, fmt, stamp):
        msg = self.CompressedImage()
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        msg.header.frame_id = FRAME
        msg.format, msg.data = fmt, bytes(data)
        return msg

    def localize(self, msg, node):
        """Publish ``msg`` (again while lost) until its fix arrives; return (fix, cloud)."""
        stamp = _stamp(msg)
        self.image_pub.publish(msg)
        assert self.spin_until(lambda: stamp in self.fixes and stamp in self.clouds, node,
                               republish=lambda: self.image_pub.publish(msg)), \
            f"no fix for the frame stamped {stamp}:\n{node.output}"
        return self.fixes[stamp], self.clouds[stamp]

    def skipped(self, msg, node, why):
        """Publish a bad frame until the node logs that it skipped it (it is never a fix)."""
        self.image_pub.publish(msg)
        node.wait_for_line(why)
        assert _stamp(msg) not in self.fixes

    def close(self):
        self.node.destroy_node()
        self.executor.shutdown()
        self.context.try_shutdown()


def _stamp(msg):
    return (msg.header.stamp.sec, msg.header.stamp.nanosec)


def _check_fix(fix, stamp=None):
    """Check what every /jzi/fix must satisfy (navsat_transform's contract)."""
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    if stamp is not None:
        assert _stamp(fix) == stamp
    assert fix.header.frame_id == FRAME
    assert fix.status.status in (NavSatStatus.STATUS_FIX, NavSatStatus.STATUS_NO_FIX)
    assert fix.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN
    values = [fix.latitude, fix.longitude, fix.altitude, *fix.position_covariance]
    assert all(math.isfinite(v) for v in values), values
    cov = np.asarray(fix.position_covariance).reshape(3, 3)
    np.testing.assert_allclose(cov, cov.T)
    assert fix.altitude == ALTITUDE
    return cov


def _cloud_points(cloud):
    return np.frombuffer(bytes(cloud.data), "<f4").reshape(-1, 4)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny_assets(tmp_path_factory):
    from support import make_tiny_checkpoint, make_tiny_map

    root = tmp_path_factory.mktemp("ros_node")
    pyramid = make_tiny_map(root)
    return root, pyramid.path, make_tiny_checkpoint(root, pyramid)


@pytest.fixture(scope="module")
def raw_node(tiny_assets):
    """One node (raw images) for the tests below, started from params files as ROS reads them."""
    root, map_dir, model = tiny_assets
    params = root / "params.yaml"
    # keys launch_parameters used to reject: the wildcard, a namespaced node, qos_overrides
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    sigma_floor_m: {START_FLOOR_M}\n"
        "/rgraph/jzi_localizer:\n  ros__parameters:\n"
        f"    altitude_variance: {UP_VARIANCE}\n"
        "    qos_overrides./rgraph/jzi/fix.publisher.depth: 5\n")
    # the shipped config (its /**/jzi_localizer key works in any namespace), then the test's
    node = NodeProcess(map_dir, model, "rgraph", params_files=(SHIPPED_PARAMS, params),
                       altitude_m=ALTITUDE, confidence_threshold=0.0)
    graph = Graph("rgraph")
    try:
        graph.wait_ready(node)
        yield node, graph
    finally:
        graph.close()
        if node.process.poll() is None:
            node.stop()


SCENE = np.random.default_rng(0).integers(0, 256, (48, 96, 3), dtype=np.uint8)


def test_raw_encodings_give_the_same_fix_as_rgb8(raw_node):
    node, graph = raw_node
    fix, cloud = graph.localize(graph.raw(SCENE, "rgb8", stamp := graph.next_stamp()), node)
    _check_fix(fix, stamp)
    reference = _cloud_points(cloud)
    assert abs(reference[:, 3].sum() - 1.0) < 1e-4
    alpha = np.full(SCENE.shape[:2] + (1,), 200, np.uint8)
    variants = {
        "bgr8": graph.raw(np.ascontiguousarray(SCENE[..., ::-1]), "bgr8", graph.next_stamp()),
        "bgra8": graph.raw(np.concatenate([SCENE[..., ::-1], alpha], axis=2), "bgra8",
                           graph.next_stamp()),
        "rgb8 with row padding": graph.raw(SCENE, "rgb8", graph.next_stamp(), pad=13),
    }
    for name, msg in variants.items():
        fix, cloud = graph.localize(msg, node)
        _check_fix(fix, _stamp(msg))
        # the same pixels must give the same hypotheses: a swapped channel or a skewed row
        # would change the encoder's input and so the probabilities
        np.testing.assert_allclose(_cloud_points(cloud), reference, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    grey = SCENE.mean(axis=2).astype(np.uint8)
    fix, cloud = graph.localize(graph.raw(grey[..., None], "mono8", graph.next_stamp()), node)
    _check_fix(fix)
    assert cloud.header.frame_id == "jzi_map"
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "probability"]


def test_fix_contract_and_robot_localization_qos(raw_node):
    from sensor_msgs.msg import NavSatStatus

    node, graph = raw_node
    fix, _ = graph.localize(graph.raw(SCENE, "rgb8", stamp := graph.next_stamp()), node)
    cov = _check_fix(fix, stamp)
    assert fix.status.status == NavSatStatus.STATUS_FIX
    assert np.linalg.eigvalsh(cov[:2, :2]).min() >= START_FLOOR_M ** 2 * (1 - 1e-9)
    assert cov[2, 2] == pytest.approx(UP_VARIANCE, rel=1e-12)
    assert cov[0, 2] == cov[1, 2] == 0.0
    assert 38.8 < fix.latitude < 39.0 and -77.1 < fix.longitude < -76.9
    # a best-effort, depth-1 subscriber (navsat_transform's QoS) gets the reliable fixes too
    assert graph.spin_until(lambda: graph.sensor_qos_fixes, node)
    for received in graph.sensor_qos_fixes:
        _check_fix(received)


def test_bad_frames_are_counted_and_skipped_and_the_node_keeps_publishing(raw_node):
    node, graph = raw_node
    depth = graph.raw(np.zeros((48, 96, 2), np.uint8), "16UC1", graph.next_stamp())
    graph.skipped(depth, node, "encoding '16UC1' is not supported")
    short = graph.raw(SCENE, "rgb8", graph.next_stamp())
    short.data = short.data[:-7]  # a truncated frame
    graph.skipped(short, node, "expected step 288 x height 48")
    fix, _ = graph.localize(graph.raw(SCENE, "rgb8", stamp := graph.next_stamp()), node)
    _check_fix(fix, stamp)
    assert "skipping bad image (1 so far)" in node.output
    assert "skipping bad image (2 so far)" in node.output


def _set_parameters(graph, node, **values):
    """Set parameters through the node's real parameter service; return the results."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = graph.node.create_client(SetParameters, "jzi_localizer/set_parameters")
    try:
        assert graph.spin_until(lambda: client.service_is_ready(), node)
        request = SetParameters.Request(parameters=[
            Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                      double_value=float(value)))
            for name, value in values.items()])
        future = client.call_async(request)
        assert graph.spin_until(future.done, node)
        return future.result().results
    finally:
        graph.node.destroy_client(client)


def test_runtime_parameters_take_effect_on_the_next_fix(raw_node):
    node, graph = raw_node

    def floor_of_next_fix():
        fix, _ = graph.localize(graph.raw(SCENE, "rgb8", graph.next_stamp()), node)
        cov = np.asarray(fix.position_covariance).reshape(3, 3)
        return math.sqrt(np.linalg.eigvalsh(cov[:2, :2]).min()), fix

    before, _ = floor_of_next_fix()
    assert before >= START_FLOOR_M * (1 - 1e-9)
    # lowering below the start-up floor: the raw spread of this model is far below 700 m
    results = _set_parameters(graph, node, sigma_floor_m=1.0, altitude_m=-5.5)
    assert all(r.successful for r in results), results
    lowered, fix = floor_of_next_fix()
    assert lowered < START_FLOOR_M * 0.5 and fix.altitude == -5.5
    results = _set_parameters(graph, node, sigma_floor_m=2500.0)
    assert all(r.successful for r in results)
    raised, _ = floor_of_next_fix()
    assert raised == pytest.approx(2500.0, rel=1e-9)
    # an out-of-range value is refused by the service and changes nothing
    (refused,) = _set_parameters(graph, node, sigma_floor_m=-1.0)
    assert not refused.successful
    again, _ = floor_of_next_fix()
    assert again == pytest.approx(2500.0, rel=1e-9)
    results = _set_parameters(graph, node, sigma_floor_m=START_FLOOR_M, altitude_m=ALTITUDE)
    assert all(r.successful for r in results)


def test_a_flood_of_frames_keeps_only_the_newest_and_memory_flat(raw_node):
    node, graph = raw_node
    # 320x240 (230 kB): a 640x480 flood once lost every resend of the awaited frame for 60 s on
    # a loaded CI machine (best-effort samples of many DDS fragments); fewer fragments here
    big = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    frames = 500
    # warm up with big frames first, so allocator growth of the first ones is not "a leak"
    for _ in range(20):
        graph.image_pub.publish(graph.raw(big, "rgb8", graph.next_stamp()))
        graph.executor.spin_once(timeout_sec=0.0)
    graph.localize(graph.raw(big, "rgb8", graph.next_stamp()), node)
    before_mb = node.rss_mb()
    first = graph.stamp + 1
    for _ in range(frames):
        graph.image_pub.publish(graph.raw(big, "rgb8", graph.next_stamp()))
        graph.executor.spin_once(timeout_sec=0.0)
    last = graph.raw(big, "rgb8", graph.next_stamp())
    graph.localize(last, node)  # the newest frame is always processed
    after_mb = node.rss_mb()
    processed = [s for s in graph.fixes if first <= s[0] <= graph.stamp]
    print(f"flood: {frames + 1} frames of 320x240 sent, {len(processed)} localized, RSS "
          f"{before_mb:.0f} -> {after_mb:.0f} MB")
    assert len(processed) < frames / 2, "stale frames were queued instead of dropped"
    # 500 frames of 0.23 MB: keeping them would add ~115 MB
    assert after_mb - before_mb < 40.0


def test_sigint_exits_0_within_seconds(raw_node):
    node, graph = raw_node
    code, seconds = node.stop()
    assert code == 0, node.output
    assert seconds < SIGINT_EXIT_S
    assert "Traceback" not in node.output


# --------------------------------------------------------------------------- compressed

def test_compressed_jpeg_png_corrupt_and_explicit_no_fix(tiny_assets):
    from sensor_msgs.msg import NavSatStatus

    _, map_dir, model = tiny_assets
    node = NodeProcess(map_dir, model, "cgraph", image_transport="compressed",
                       confidence_threshold=1.0, publish_no_fix=True, altitude_m=ALTITUDE,
                       sigma_floor_m=3.0)
    graph = Graph("cgraph", compressed=True)
    try:
        graph.wait_ready(node)
        bgr = np.ascontiguousarray(SCENE[..., ::-1])
        for ext, fmt in ((".png", "png"), (".jpg", "rgb8; jpeg compressed bgr8")):
            ok, data = cv2.imencode(ext, bgr)
            assert ok
            fix, cloud = graph.localize(graph.compressed(data, fmt, graph.next_stamp()), node)
            _check_fix(fix)
            # confidence_threshold 1.0: every frame is an explicit NO_FIX, never silence
            assert fix.status.status == NavSatStatus.STATUS_NO_FIX
            assert cloud.width >= 1
        corrupt = graph.compressed(b"\xff\xd8\xff\xe0 not a jpeg at all", "jpeg",
                                   graph.next_stamp())
        graph.skipped(corrupt, node, "could not be decoded")
        ok, data = cv2.imencode(".png", bgr)
        fix, _ = graph.localize(graph.compressed(data, "png", graph.next_stamp()), node)
        _check_fix(fix)
    finally:
        graph.close()
        code, _ = node.stop()
    assert code == 0, node.output
    assert "Traceback" not in node.output


# --------------------------------------------------------------------------- start-up errors

def _error_lines(output):
    return [line for line in output.splitlines() if "[ERROR]" in line]


def test_fusion_on_filters_jzi_fix_and_keeps_the_single_frame_fix(tiny_assets):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    _, map_dir, model = tiny_assets
    node = NodeProcess(map_dir, model, "fgraph", altitude_m=ALTITUDE, confidence_threshold=0.0,
                       **{"fusion.enabled": True})
    graph = Graph("fgraph")
    singles = {}
    single_sub = graph.node.create_subscription(
        NavSatFix, "jzi/fix_single", lambda m: singles.setdefault(_stamp(m), m),
        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    try:
        graph.wait_ready(node)
        assert graph.spin_until(lambda: single_sub.get_publisher_count() >= 1, node)
        assert "fusion on" in node.output
        for _ in range(3):
            stamp = graph.next_stamp()
            fused, _ = graph.localize(graph.raw(SCENE, "rgb8", stamp), node)
            _check_fix(fused, stamp)  # filtered: NO_FIX until converged, never NaN
            assert graph.spin_until(lambda: stamp in singles, node), node.output
            single = singles[stamp]
            _check_fix(single, stamp)
            assert single.status.status == NavSatStatus.STATUS_FIX  # the gate is off
    finally:
        graph.close()
        assert node.stop()[0] == 0


def test_visual_odometry_moves_the_filter_on_the_real_graph(tiny_assets):
    """fusion.visual_odometry: a north-up gimbal's frames over textured ground, fused fixes."""
    from support import camera_frame, DOWNWARD_HEIGHT_M, DOWNWARD_HFOV_DEG, ground_texture

    _, map_dir, model = tiny_assets
    node = NodeProcess(map_dir, model, "vograph", altitude_m=ALTITUDE, confidence_threshold=0.0,
                       **{"fusion.enabled": True, "fusion.visual_odometry": True,
                          "fusion.heading_source": "fixed", "fusion.heading_yaw_deg": 90.0,
                          "refine.hfov_deg": DOWNWARD_HFOV_DEG,
                          "refine.nominal_height_m": DOWNWARD_HEIGHT_M})
    graph = Graph("vograph")
    texture = ground_texture()
    try:
        graph.wait_ready(node)
        assert "motion: visual odometry (heading fixed)" in node.output
        for i in range(4):  # frames 1 s apart, 16 m apart
            stamp = graph.next_stamp()
            frame = camera_frame(texture, 15.0 * i, 5.0 * i)
            fused, _ = graph.localize(graph.raw(frame, "rgb8", stamp), node)
            _check_fix(fused, stamp)  # filtered: NO_FIX until converged, never NaN
    finally:
        graph.close()
        assert node.stop()[0] == 0
    assert "70 deg assumed" not in node.output and not _error_lines(node.output)


def test_a_retrieval_model_localizes_instead_of_the_zoom(tiny_assets):
    from jzi_ros.maps.pyramid import MapPyramid
    from support import save_identity_retrieval

    root, map_dir, model = tiny_assets
    pyramid = MapPyramid.open(map_dir)
    checkpoint = save_identity_retrieval(pyramid, root / "retrieval.safetensors")
    tree = pyramid.tree
    cell = list(tree.level_paths(tree.depth - 1))[9]
    node = NodeProcess(map_dir, model, "qgraph", retrieval_model=checkpoint,
                       altitude_m=ALTITUDE)
    graph = Graph("qgraph")
    try:
        graph.wait_ready(node)
        assert "backend retrieval" in node.output
        stamp = graph.next_stamp()
        fix, cloud = graph.localize(graph.raw(np.ascontiguousarray(pyramid.view(cell)), "rgb8",
                                              stamp), node)
        _check_fix(fix, stamp)
        lat, lon = tree.to_latlon(*tree.cell_center_local(cell))
        assert (fix.latitude, fix.longitude) == pytest.approx((lat, lon), abs=1e-9)
        assert fix.altitude == ALTITUDE
        assert len(_cloud_points(cloud)) == 5  # the top-5 views as hypotheses
    finally:
        graph.close()
        assert node.stop()[0] == 0


def test_missing_map_is_one_error_line_naming_the_parameter_and_exit_1(tmp_path):
    node = NodeProcess(tmp_path / "no_map", tmp_path / "no_model.safetensors", "missing")
    line = node.refusal("without a map")
    assert "map_dir" in line and "no_map" in line


@pytest.mark.parametrize("yaml_value, expected", [
    ("beam_width: 0", "beam_width"),
    ("altitude_m: 7", "decimal point"),  # an integer for a double: the one ROS rule that bites
    ("backend: openvino", "backend"),
])
def test_a_bad_value_in_the_params_file_is_one_line_and_exit_1(tmp_path, yaml_value, expected):
    params = tmp_path / "bad.yaml"
    params.write_text(f"jzi_localizer:\n  ros__parameters:\n    {yaml_value}\n")
    args = [sys.executable, "-m", "jzi_ros.ros.node", "--ros-args", "--params-file",
            str(params)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    (line,) = _error_lines(output)
    assert expected in line
