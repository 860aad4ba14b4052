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
Runs jzi_ros/ros/node.py here, without ROS 2, on small stand-ins for the rclpy API it uses.

The stand-ins record what the node declares, subscribes and publishes; messages are rosbags
classes (same fields as ROS). This checks the node's own logic (parameters and descriptors,
QoS, which messages go out for FIX / NO_FIX / bad frames, diagnostics, runtime parameter
changes, main()'s exit codes and shutdown) where rclpy is not installed; cv_bridge is hidden so
images go through rosbags-image. The real-graph check is test_ros_node.py (marker ``ros``).
"""
import importlib
from pathlib import Path
import sys
import time
import types as pytypes
from types import SimpleNamespace

import numpy as np
import pytest
from rosbags import typesys as rosbags_typesys

from jzi_ros.errors import BadImageError, JziError
from jzi_ros.geo import CellTree
from jzi_ros.inference.fix import Fix, FixStatus, Hypothesis
from support import camera_frame, DOWNWARD_HEIGHT_M, DOWNWARD_HFOV_DEG, ground_texture

STORE = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_HUMBLE)
T = STORE.types


class Record(SimpleNamespace):
    """A message/descriptor stand-in: keyword fields, attribute assignment."""


class Logger:
    def __init__(self, lines):
        self.lines = lines

    def _log(self, level, text, **kw):
        self.lines.append((level, text, kw))

    def info(self, text, **kw):
        self._log("info", text, **kw)

    def warning(self, text, **kw):
        self._log("warning", text, **kw)

    def error(self, text, **kw):
        self._log("error", text, **kw)


LOGS: list = []


class FakeNode:
    overrides: dict = {}

    def __init__(self, name, **kwargs):
        self.name, self.params, self.descriptors = name, {}, {}
        self.publishers, self.subscriptions, self.param_callbacks = {}, [], []
        self.destroyed = False

    def declare_parameter(self, name, value, descriptor):
        value = self.overrides.get(name, value)
        self.params[name], self.descriptors[name] = value, descriptor
        return SimpleNamespace(value=value)

    def get_parameter(self, name):
        return SimpleNamespace(value=self.params[name])

    def get_logger(self):
        return Logger(LOGS)

    def create_publisher(self, msg_type, topic, qos, **kwargs):
        publisher = SimpleNamespace(msg_type=msg_type, qos=qos, sent=[])
        publisher.publish = publisher.sent.append
        self.publishers[topic] = publisher
        return publisher

    def create_subscription(self, msg_type, topic, callback, qos, **kwargs):
        self.subscriptions.append(SimpleNamespace(msg_type=msg_type, topic=topic,
                                                  callback=callback, qos=qos))

    def get_clock(self):
        return SimpleNamespace(now=lambda: SimpleNamespace(nanoseconds=7_000_000_123))

    def add_on_set_parameters_callback(self, callback):
        self.param_callbacks.append(callback)

    def destroy_node(self):
        self.destroyed = True


class Updater:
    def __init__(self, node):
        self.tasks, self.hwid = {}, ""

    def setHardwareID(self, hwid):
        self.hwid = hwid

    def add(self, name, task):
        self.tasks[name] = task


class StatusWrapper:
    def __init__(self):
        self.level, self.message, self.values = None, "", {}

    def summary(self, level, message):
        self.level, self.message = level, message

    def add(self, key, value):
        assert isinstance(value, str), key
        self.values[key] = value


class ParamTypeError(Exception):
    pass


def _module(name, **attrs):
    module = pytypes.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _enum(*names):
    return SimpleNamespace(**{n: n for n in names})


RCLPY_STATE = {"ok": True, "spin": None, "shutdown": 0}


def _fake_modules():
    rclpy = _module(
        "rclpy", init=lambda args=None: RCLPY_STATE.update(ok=True),
        ok=lambda: RCLPY_STATE["ok"],
        shutdown=lambda: RCLPY_STATE.update(ok=False, shutdown=RCLPY_STATE["shutdown"] + 1),
        spin=lambda node: RCLPY_STATE["spin"](node))
    rclpy.logging = _module("rclpy.logging", get_logger=lambda name: Logger(LOGS))
    modules = {
        "rclpy": rclpy, "rclpy.logging": rclpy.logging,
        "rclpy.node": _module("rclpy.node", Node=FakeNode),
        "rclpy.qos": _module("rclpy.qos", QoSProfile=Record,
                             HistoryPolicy=_enum("KEEP_LAST"),
                             ReliabilityPolicy=_enum("RELIABLE", "BEST_EFFORT"),
                             DurabilityPolicy=_enum("VOLATILE")),
        "rclpy.qos_overriding_options": _module(
            "rclpy.qos_overriding_options", QoSOverridingOptions=SimpleNamespace(
                with_default_policies=lambda: "default policies")),
        "rclpy.exceptions": _module("rclpy.exceptions",
                                    InvalidParameterTypeException=ParamTypeError,
                                    InvalidParameterValueException=ParamTypeError),
        "rclpy.executors": _module("rclpy.executors",
                                   ExternalShutdownException=type("ESE", (Exception,), {})),
        "rcl_interfaces.msg": _module("rcl_interfaces.msg", ParameterDescriptor=Record,
                                      FloatingPointRange=Record, IntegerRange=Record,
                                      SetParametersResult=Record),
        "diagnostic_msgs.msg": _module("diagnostic_msgs.msg", DiagnosticStatus=SimpleNamespace(
            OK=b"\x00", WARN=b"\x01", ERROR=b"\x02")),
        "diagnostic_updater": _module("diagnostic_updater", Updater=Updater,
                                      DiagnosticStatusWrapper=StatusWrapper),
        "cv_bridge": None,  # not importable: images go through rosbags-image
        "builtin_interfaces.msg": _module("builtin_interfaces.msg",
                                          Time=T["builtin_interfaces/msg/Time"]),
        "std_msgs.msg": _module("std_msgs.msg", Header=T["std_msgs/msg/Header"]),
    }
    modules["sensor_msgs.msg"] = _module("sensor_msgs.msg", **{
        n: T[f"sensor_msgs/msg/{n}"] for n in ("Image", "CompressedImage", "NavSatFix",
                                               "NavSatStatus", "PointCloud2", "PointField",
                                               "CameraInfo")})
    modules["geometry_msgs.msg"] = _module("geometry_msgs.msg", **{
        n: T[f"geometry_msgs/msg/{n}"] for n in ("Point", "Pose", "PoseWithCovariance",
                                                 "PoseWithCovarianceStamped", "Quaternion")})
    modules["nav_msgs.msg"] = _module("nav_msgs.msg", Odometry=T["nav_msgs/msg/Odometry"])
    return modules


class FakeLocalizer:
    """
    Answers FIX or NO_FIX depending on the image's mean brightness; rejects tiny images.

    Like the real one it reads floor, altitude and Up sigma from ``self.config`` on every call.
    """

    backend_name = "torch"
    calls = 0
    tree = CellTree(38.9, -77.03, 1600.0, grid=4, depth=2)
    model_config = SimpleNamespace(heading="none")  # frames as they come: no heading source
    headings: list = []  # the heading_deg of every localize call
    warmed: list = []  # fix_sigma_m of every warm_seeded call (the seeded search built early)
    closed = 0

    def __init__(self, config):
        self.config = config

    @classmethod
    def from_paths(cls, map_dir, model_path, config=None):
        if "broken" in str(map_dir):
            raise JziError(f"{map_dir}: manifest.json missing (expected a map directory)")
        FakeLocalizer.config = config
        return cls(config)

    def localize(self, image, heading_deg=None):
        FakeLocalizer.headings.append(heading_deg)
        FakeLocalizer.calls += 1
        if image.shape[0] < 4:
            raise BadImageError("image too small")
        hyps = (Hypothesis((1,), 1.0, 0.0, 5.0, 6.0, 38.9, -77.03),)
        c = self.config
        if image.mean() > 100:
            floor = c.sigma_floor_m ** 2
            return Fix(FixStatus.FIX, 38.9, -77.03, c.altitude_m,
                       np.diag([max(4.0, floor), max(49.0, floor), c.altitude_sigma_m ** 2]),
                       0.8, 5.0, 6.0, hyps)
        return Fix.no_fix("low confidence", 38.9, -77.03, c.altitude_m, 1e8, hypotheses=hyps)

    def warm_seeded(self, fix_sigma_m):
        FakeLocalizer.warmed.append(fix_sigma_m)

    def close(self):
        FakeLocalizer.closed += 1

    seeds_seen: list = []

    def localize_measured(self, image, heading_deg=None, seeds=None):
        """Fusion's entry: the same fix, and a measurement sure of the cell at (5, 6) m."""
        from jzi_ros.inference.measurement import Measurement

        FakeLocalizer.seeds_seen.append(seeds)
        path = self.tree.path_of_local(5.0, 6.0)
        return self.localize(image, heading_deg), Measurement.from_beam(
            self.tree, np.array([path]), np.array([0.0]))


@pytest.fixture
def node_module(monkeypatch, tmp_path):
    for name, module in _fake_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    from jzi_ros.inference.localizer import LocalizerConfig

    # the real config class (its validation runs), a scripted Localizer
    monkeypatch.setitem(sys.modules, "jzi_ros.inference.localizer",
                        _module("jzi_ros.inference.localizer", Localizer=FakeLocalizer,
                                LocalizerConfig=LocalizerConfig))
    monkeypatch.delitem(sys.modules, "jzi_ros.ros.node", raising=False)
    module = importlib.import_module("jzi_ros.ros.node")
    (tmp_path / "map").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"x")
    FakeNode.overrides = {"map_dir": str(tmp_path / "map"),
                          "model_file": str(tmp_path / "model.safetensors"),
                          "fix_frame_id": "cam", "publish_pose": True, "beam_width": 7,
                          "fusion.enabled": False}  # test_fusion_* turn it on
    LOGS.clear()
    yield module
    monkeypatch.delitem(sys.modules, "jzi_ros.ros.node", raising=False)


def _image(value, stamp_sec, height=8, encoding="rgb8"):
    width = 8
    return T["sensor_msgs/msg/Image"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
            sec=stamp_sec, nanosec=5), frame_id="cam"),
        height=height, width=width, encoding=encoding, is_bigendian=0, step=width * 3,
        data=np.full(height * width * 3, value, np.uint8))


def _wait(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_setup_declares_parameters_qos_and_publishers(node_module):
    closed = FakeLocalizer.closed
    node = node_module.LocalizerNode()
    node.setup()
    try:
        own = {name for name in node.params if not name.startswith(("fusion.", "refine."))}
        assert own == set(node_module.PARAMETER_NAMES)
        assert node.descriptors["refine.min_inliers"].integer_range[0].from_value == 8
        assert node.descriptors["fusion.enabled"].read_only  # declared by ros/motion.py
        beam = node.descriptors["beam_width"]
        assert beam.read_only and beam.integer_range[0].from_value == 1
        assert node.descriptors["confidence_threshold"].floating_point_range[0].to_value == 1.0
        assert not node.descriptors["publish_no_fix"].read_only
        assert "tensorrt" in node.descriptors["backend"].additional_constraints
        assert FakeLocalizer.config.beam_width == 7  # only fields LocalizerConfig has
        (sub,) = node.subscriptions
        assert sub.topic == "camera/image_raw" and sub.msg_type.__name__.endswith("Image")
        assert (sub.qos.depth, sub.qos.reliability) == (1, "BEST_EFFORT")
        assert node.publishers["jzi/fix"].qos.reliability == "RELIABLE"
        assert {"jzi/fix", "jzi/pose", "jzi/hypotheses"} <= set(node.publishers)
    finally:
        node.close()
    assert node.destroyed and FakeLocalizer.closed == closed + 1  # the backend is closed too


def test_frames_become_fixes_no_fixes_and_bad_messages_are_skipped(node_module):
    node = node_module.LocalizerNode()
    node.setup()
    callback = node.subscriptions[0].callback
    fixes = node.publishers["jzi/fix"].sent
    try:
        callback(_image(200, 10))
        assert _wait(lambda: len(fixes) == 1)
        callback(_image(10, 11))
        assert _wait(lambda: len(fixes) == 2)
        callback(_image(200, 12, encoding="16UC1"))  # unsupported encoding
        assert _wait(lambda: node.stats.bad_messages == 1)
        callback(_image(200, 13, height=2))  # the localizer rejects it
        assert _wait(lambda: node.stats.bad_messages == 2)
        callback(_image(200, 14))
        assert _wait(lambda: len(fixes) == 3)
        unstamped = _image(200, 0)
        unstamped.header.stamp.nanosec = 0
        callback(unstamped)
        assert _wait(lambda: len(fixes) == 4)
    finally:
        node.close()
    ok, no_fix, last, receive_time = fixes
    assert (receive_time.header.stamp.sec, receive_time.header.stamp.nanosec) == (7, 123)
    assert (ok.header.stamp.sec, ok.header.stamp.nanosec, ok.header.frame_id) == (10, 5, "cam")
    assert ok.status.status == 0 and no_fix.status.status == -1 and last.header.stamp.sec == 14
    # the localizer's numbers (its 5 m default floor, Up = altitude_variance), not floored again
    assert list(ok.position_covariance[[0, 4, 8]]) == [25.0, 49.0, pytest.approx(1e4)]
    assert np.all(np.isfinite(no_fix.position_covariance))
    poses = node.publishers["jzi/pose"].sent
    assert [p.header.stamp.sec for p in poses] == [10, 14, 7]  # FIX only
    assert poses[0].header.frame_id == "jzi_map" and poses[0].pose.pose.position.x == 5.0
    clouds = node.publishers["jzi/hypotheses"].sent
    assert len(clouds) == 4
    points = np.frombuffer(bytes(clouds[0].data), "<f4").reshape(-1, 4)
    np.testing.assert_array_equal(points, [[5.0, 6.0, 0.0, 1.0]])
    warnings = [text for level, text, kw in LOGS if level == "warning"]
    assert any("16UC1" in w for w in warnings) and any("too small" in w for w in warnings)
    assert any("diagnostic" not in w for w in warnings)


def test_publish_no_fix_false_and_runtime_parameter_change(node_module):
    FakeNode.overrides["publish_no_fix"] = False
    node = node_module.LocalizerNode()
    node.setup()
    callback, fixes = node.subscriptions[0].callback, node.publishers["jzi/fix"].sent
    try:
        callback(_image(10, 1))
        assert _wait(lambda: node.stats.frames == 1)
        assert fixes == []
        (on_set,) = node.param_callbacks
        bad = on_set([SimpleNamespace(name="max_rate_hz", value=-3.0)])
        assert not bad.successful and "max_rate_hz" in bad.reason
        good = on_set([SimpleNamespace(name="publish_no_fix", value=True),
                       SimpleNamespace(name="max_rate_hz", value=0.5),
                       SimpleNamespace(name="diagnostic_updater.period", value=2.0)])
        assert good.successful and node.settings.publish_no_fix
        assert node.limiter.max_rate_hz == 0.5
        callback(_image(10, 4))
        assert _wait(lambda: len(fixes) == 1)
        callback(_image(10, 5))  # within 2 s of the last admitted stamp: dropped by the limit
        callback(_image(10, 7))
        assert _wait(lambda: len(fixes) == 2)
        assert [f.header.stamp.sec for f in fixes] == [4, 7]
        # the localizer owns floor and altitude: lowering below the start-up value works too
        assert on_set([SimpleNamespace(name="sigma_floor_m", value=1.0),
                       SimpleNamespace(name="altitude_m", value=-3.5)]).successful
        callback(_image(200, 9))
        assert _wait(lambda: len(fixes) == 3)
        assert fixes[2].position_covariance[0] == 4.0 and fixes[2].altitude == -3.5
        assert on_set([SimpleNamespace(name="sigma_floor_m", value=10.0)]).successful
        callback(_image(200, 11))
        assert _wait(lambda: len(fixes) == 4)
        assert list(fixes[3].position_covariance[[0, 4]]) == [100.0, 100.0]
    finally:
        node.close()


def test_diagnostics_report_rates_latency_and_counts(node_module):
    node = node_module.LocalizerNode()
    node.setup()
    task = node.updater.tasks["localizer"]
    stat = task(StatusWrapper())
    assert stat.level == b"\x01" and "no images" in stat.message
    node.subscriptions[0].callback(_image(200, 3))
    assert _wait(lambda: node.stats.fixes == 1)
    stat = task(StatusWrapper())
    node.close()
    assert stat.level == b"\x00"
    for key in ("backend", "input rate (Hz)", "fix rate (Hz)", "inference latency mean (ms)",
                "last confidence", "bad messages"):
        assert key in stat.values
    assert stat.values["backend"] == "torch" and stat.values["last confidence"] == "0.800"
    assert node.updater.hwid.endswith("torch")


def test_without_diagnostic_updater_the_node_runs_and_says_so_once(node_module, monkeypatch):
    monkeypatch.setitem(sys.modules, "diagnostic_updater", None)
    node = node_module.LocalizerNode()
    node.setup()
    fixes = node.publishers["jzi/fix"].sent
    try:
        node.subscriptions[0].callback(_image(200, 3))
        assert _wait(lambda: len(fixes) == 1)
    finally:
        node.close()
    assert node.updater is None
    notes = [text for level, text, _ in LOGS if "diagnostic_updater" in text]
    assert len(notes) == 1 and "/diagnostics is off" in notes[0]


def test_main_exit_codes(node_module, tmp_path):
    def interrupt(node):
        raise KeyboardInterrupt

    RCLPY_STATE["spin"] = interrupt
    before = RCLPY_STATE["shutdown"]
    assert node_module.main([]) == 0
    assert RCLPY_STATE["shutdown"] == before + 1

    LOGS.clear()
    FakeNode.overrides["map_dir"] = str(tmp_path / "does_not_exist")
    assert node_module.main([]) == 1
    errors = [text for level, text, _ in LOGS if level == "error"]
    assert len(errors) == 1 and "does_not_exist" in errors[0] and "map_dir" in errors[0]

    LOGS.clear()
    (tmp_path / "broken_map").mkdir()
    FakeNode.overrides["map_dir"] = str(tmp_path / "broken_map")
    assert node_module.main([]) == 1
    assert [t for lvl, t, _ in LOGS if lvl == "error"] == [
        f"{tmp_path / 'broken_map'}: manifest.json missing (expected a map directory)"]

    FakeNode.overrides["beam_width"] = 0  # out of range: one line, exit 1
    LOGS.clear()
    assert node_module.main([]) == 1
    assert "beam_width" in [t for lvl, t, _ in LOGS if lvl == "error"][0]


def test_cpu_graph_reaches_the_localizer_and_a_wrong_one_is_named(node_module):
    FakeNode.overrides["cpu_graph"] = "aoti"
    node = node_module.LocalizerNode()
    node.setup()
    node.close()
    assert FakeLocalizer.config.cpu_graph == "aoti"
    FakeNode.overrides["cpu_graph"] = "fast"
    LOGS.clear()
    assert node_module.main([]) == 1
    error = [t for lvl, t, _ in LOGS if lvl == "error"][0]
    assert "cpu_graph" in error and "'fast'" in error and "aoti" in error


@pytest.mark.slow
def test_fusion_puts_the_filtered_fix_on_fix_topic_and_the_single_one_apart(node_module):
    FakeNode.overrides.update({"fusion.enabled": True, "fusion.odom_topic": "odom"})
    node = node_module.LocalizerNode()
    node.setup()
    try:
        odom = [s for s in node.subscriptions if s.topic == "odom"]
        assert len(odom) == 1 and odom[0].msg_type is T["nav_msgs/msg/Odometry"]
        camera = [s for s in node.subscriptions if s.topic != "odom"][0].callback
        fused, single = node.publishers["jzi/fix"].sent, node.publishers["jzi/fix_single"].sent
        for second in range(10, 22):
            camera(_image(200, second))
            assert _wait(lambda: len(fused) == second - 9)
    finally:
        node.close()
    assert len(single) == len(fused) == 12
    assert all(f.status.status == 0 for f in single)  # the scripted single-frame FIX
    assert fused[0].status.status == -1  # one frame: the filter has not converged yet
    assert fused[-1].status.status == 0  # the same cell every frame: it has now
    last = fused[-1]
    east, north = FakeLocalizer.tree.to_local(last.latitude, last.longitude)
    west, south, east_edge, north_edge = FakeLocalizer.tree.cell_bounds_local(
        FakeLocalizer.tree.path_of_local(5.0, 6.0))
    assert west - 20 <= east <= east_edge + 20 and south - 20 <= north <= north_edge + 20
    assert all(np.all(np.isfinite(f.position_covariance)) for f in fused)
    assert [f.header.stamp.sec for f in fused] == list(range(10, 22))


def _odometry(stamp_sec, yaw_deg):
    half = np.radians(yaw_deg) / 2
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=stamp_sec, nanosec=5), frame_id="map"),
        pose=SimpleNamespace(pose=SimpleNamespace(orientation=SimpleNamespace(
            x=0.0, y=0.0, z=float(np.sin(half)), w=float(np.cos(half))))),
        twist=SimpleNamespace(twist=SimpleNamespace(linear=SimpleNamespace(x=0.0, y=0.0))))


def _north_up_node(node_module, monkeypatch, **overrides):
    """Start the node on a north-up FakeLocalizer: ``(node, odom callbacks, camera callback)``."""
    monkeypatch.setattr(FakeLocalizer, "model_config", SimpleNamespace(heading="north-up"))
    monkeypatch.setattr(FakeLocalizer, "headings", [])
    FakeNode.overrides.update({"fusion.odom_topic": "odom", **overrides})
    node = node_module.LocalizerNode()
    node.setup()
    odom = [s.callback for s in node.subscriptions if s.topic == "odom"]
    camera = [s for s in node.subscriptions if s.topic != "odom"][0].callback
    return node, odom, camera


@pytest.mark.parametrize("fusion", [True, False])
def test_north_up_model_gets_each_frames_heading_from_the_fusion_source(
        node_module, monkeypatch, fusion):
    node, odom, camera = _north_up_node(node_module, monkeypatch,
                                        **{"fusion.enabled": fusion})
    try:
        assert len(odom) == 1  # one subscription: fusion and frame heading share the samples
        camera(_image(200, 10))  # no odometry yet: counted and skipped, not localized
        assert _wait(lambda: node.stats.bad_messages == 1)
        assert "no heading for the frame stamped 10.000" in node.stats.last_bad_message
        odom[0](_odometry(20, 0.0))  # facing East: compass 90
        camera(_image(200, 20))
        assert _wait(lambda: len(FakeLocalizer.headings) == 1)
        odom[0](_odometry(30, 135.0))  # facing North-West: compass 315
        camera(_image(200, 30))
        assert _wait(lambda: len(FakeLocalizer.headings) == 2)
        assert FakeLocalizer.headings == pytest.approx([90.0, 315.0])
        camera(_image(200, 32))  # the last heading is 2 s old: skipped again
        assert _wait(lambda: node.stats.bad_messages == 2)
    finally:
        node.close()
    assert any("north-up model: frames rotated by the odometry heading (odom)" in text
               for _, text, _ in LOGS)


def test_frame_headings_keep_only_the_last_seconds(node_module, monkeypatch):
    """Fusion off: the frames' own yaw samples are bounded (FRAME_HEADING_KEEP_S)."""
    node, odom, camera = _north_up_node(node_module, monkeypatch, **{"fusion.enabled": False})
    try:
        for second in range(10, 101):  # 91 s of odometry at 1 Hz, turning 1 degree a second
            odom[0](_odometry(second, float(second)))
        series = node.frame_heading.series
        keep = sys.modules["jzi_ros.ros.motion"].FRAME_HEADING_KEEP_S
        assert len(series.stamps_ns) == int(keep) + 1  # 90 s .. 100 s
        assert series.stamps_ns[0] == 90 * 10**9 + 5
        camera(_image(200, 100))
        assert _wait(lambda: len(FakeLocalizer.headings) == 1)
        assert FakeLocalizer.headings[0] == pytest.approx(90.0 - 100.0 + 360.0)
    finally:
        node.close()


@pytest.mark.parametrize("source, camera_yaw_deg, expected", [
    ("odometry", 90.0, 0.0),     # body faces East, image top to its left: North up
    ("odometry", -90.0, 180.0),  # image top to the body's right: South
    ("fixed", 45.0, 0.0),        # gimbal at ENU yaw 45 deg, image top 45 deg further left
])
def test_camera_yaw_turns_the_body_heading_into_the_image_tops(
        node_module, monkeypatch, source, camera_yaw_deg, expected):
    node, odom, camera = _north_up_node(node_module, monkeypatch, **{
        "fusion.enabled": False, "fusion.heading_source": source,
        "fusion.heading_yaw_deg": 45.0, "fusion.camera_yaw_deg": camera_yaw_deg})
    try:
        if odom:
            odom[0](_odometry(20, 0.0))  # the body faces East
        camera(_image(200, 20))
        assert _wait(lambda: len(FakeLocalizer.headings) == 1)
        assert FakeLocalizer.headings[0] % 360.0 == pytest.approx(expected, abs=1e-9)
    finally:
        node.close()


def test_a_gimballed_cameras_frames_take_their_own_heading_source(node_module, monkeypatch):
    """fusion.frame_heading_source: the frames' heading apart from the one turning the twist."""
    node, odom, camera = _north_up_node(node_module, monkeypatch, **{
        "fusion.enabled": True, "fusion.heading_source": "odometry",
        "fusion.frame_heading_source": "fixed",
        "fusion.heading_yaw_deg": 90.0})  # the gimbal holds North up
    try:
        assert len(odom) == 1  # the filter's own: the frames need no subscription
        odom[0](_odometry(20, 0.0))  # the body faces East
        camera(_image(200, 20))
        assert _wait(lambda: len(FakeLocalizer.headings) == 1)
        assert FakeLocalizer.headings[0] % 360.0 == pytest.approx(0.0, abs=1e-9)
        heading = node.fusion.online.track.heading  # the twist still turns by the odometry
        assert heading.source == "odometry" and heading.yaw_rad == pytest.approx([0.0])
    finally:
        node.close()
    assert any("north-up model: frames rotated by the fixed heading (90 deg ENU yaw)" in text
               for _, text, _ in LOGS)


@pytest.mark.slow
def test_visual_odometry_moves_the_filter_by_the_frames(node_module, monkeypatch):
    """fusion.visual_odometry: no odometry topic, a north-up gimbal; refine.* give the camera."""
    FakeNode.overrides.update({"fusion.enabled": True, "fusion.visual_odometry": True,
                               "fusion.heading_source": "fixed", "fusion.heading_yaw_deg": 90.0,
                               "refine.hfov_deg": DOWNWARD_HFOV_DEG,
                               "refine.nominal_height_m": DOWNWARD_HEIGHT_M})
    node = node_module.LocalizerNode()
    node.setup()
    online = node.fusion.online
    given = []
    real_step = online.filter.step
    monkeypatch.setattr(online.filter, "step", lambda stamp, measurement, displacement, point:
                        given.append(displacement) or real_step(stamp, measurement,
                                                                displacement, point))
    texture = ground_texture()
    try:
        camera = node.subscriptions[0].callback
        for i in range(4):
            camera(_view_image(camera_frame(texture, 15.0 * i, 5.0 * i), 30 + i))
            assert _wait(lambda: len(given) == i + 1)
        stat = node.updater.tasks["localizer"](StatusWrapper())
    finally:
        node.close()
    assert given[0] is None and all(np.allclose(d, (15.0, 5.0), atol=0.8) for d in given[1:])
    assert (online.visual.matched, online.visual.tried) == (3, 3)
    assert stat.values["visual odometry"] == "3 of 3 frame pairs matched"
    # the filter's mean scale of the displacements times the guessed height
    scale = online.filter.mean_odometry_scale()
    assert 0.5 <= scale <= 2.0
    assert stat.values["height above ground, estimated (m)"] == (
        f"{scale * DOWNWARD_HEIGHT_M:.0f} (refine.nominal_height_m {DOWNWARD_HEIGHT_M:g})")
    assert any("motion: visual odometry (heading fixed)" in text for _, text, _ in LOGS)
    assert not any("70 deg assumed" in text for _, text, _ in LOGS)


def test_visual_odometry_without_the_frames_heading_is_refused_in_one_line(node_module):
    FakeNode.overrides.update({"fusion.enabled": True, "fusion.visual_odometry": True})
    assert node_module.main([]) == 1  # heading_source odometry, and no odometry topic
    assert any("visual odometry but fusion.heading_source odometry has no fusion.odom_topic"
               in text for level, text, _ in LOGS if level == "error")


@pytest.mark.parametrize("overrides, expected", [
    ({"fusion.frame_heading_source": "compass"}, "fusion.frame_heading_source must be one of"),
    ({"fusion.frame_heading_source": "imu"}, "fusion.frame_heading_source imu has no "
                                             "fusion.imu_topic"),
])
def test_a_bad_frame_heading_source_is_refused_in_one_line(node_module, monkeypatch,
                                                           overrides, expected):
    monkeypatch.setattr(FakeLocalizer, "model_config", SimpleNamespace(heading="north-up"))
    monkeypatch.setattr(FakeLocalizer, "model_path", Path("north_up.safetensors"),
                        raising=False)
    FakeNode.overrides.update({"fusion.enabled": True, "fusion.odom_topic": "odom",
                               **overrides})
    assert node_module.main([]) == 1
    assert any(expected in text for level, text, _ in LOGS if level == "error")


@pytest.mark.slow
def test_seed_beam_hands_the_converged_prior_to_the_zoom(node_module):
    FakeNode.overrides.update({"fusion.enabled": True, "fusion.seed_beam": True})
    FakeLocalizer.seeds_seen, FakeLocalizer.warmed = [], []
    node = node_module.LocalizerNode()
    node.setup()
    # the seeded search is built at start-up, for the filter's confidence scale
    assert FakeLocalizer.warmed == [node.fusion.online.filter.config.fix_sigma_m]
    try:
        camera = node.subscriptions[0].callback
        fused = node.publishers["jzi/fix"].sent
        for second in range(10, 22):
            camera(_image(200, second))
            assert _wait(lambda: len(fused) == second - 9)
    finally:
        node.close()
    seen = FakeLocalizer.seeds_seen
    assert len(seen) == 12 and seen[0] is None  # nothing known before the first frame
    tree = FakeLocalizer.tree
    level = seen[-1].level
    truth = tree.path_of_local(5.0, 6.0)[:level]  # the cell every frame points at
    index = 0
    for action in truth:
        index = index * tree.num_actions + action
    assert seen[-1].cells[0] == index  # the heaviest prior cell first


@pytest.mark.parametrize("override,used", [(-1.0, 3.0), (5.0, 5.0)])
def test_fusion_adds_the_maps_georef_sigma_as_refinement_would(node_module, monkeypatch,
                                                               override, used):
    """The filter takes refine.georef_sigma_m, else the map's value, refinement off or on."""
    monkeypatch.setattr(FakeLocalizer, "pyramid", SimpleNamespace(georef_sigma_m=3.0),
                        raising=False)
    FakeNode.overrides.update({"fusion.enabled": True, "refine.georef_sigma_m": override})
    node = node_module.LocalizerNode()
    node.setup()
    try:
        assert node.fusion.online.filter.georef_sigma_m == used
    finally:
        node.close()
    assert any(f"map georeferencing 1-sigma {used:g} m" in text for _, text, _ in LOGS)


def test_fusion_rejects_a_bad_heading_source_in_one_line(node_module, tmp_path):
    FakeNode.overrides.update({"fusion.enabled": True, "fusion.heading_source": "compass"})
    assert node_module.main([]) == 1
    assert any("fusion.heading_source" in text for level, text, _ in LOGS if level == "error")


def _import_node(monkeypatch):
    """Import jzi_ros.ros.node afresh over the rclpy stand-ins (the real core below it)."""
    for name, module in _fake_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "jzi_ros.ros.node", raising=False)
    return importlib.import_module("jzi_ros.ros.node")


def test_node_with_the_real_localizer_on_a_tiny_map(monkeypatch, tmp_path):
    """End to end through the real Localizer (tiny map + checkpoint), rclpy stood in."""
    from support import make_tiny_checkpoint, make_tiny_map

    pyramid = make_tiny_map(tmp_path)
    model = make_tiny_checkpoint(tmp_path, pyramid, sharpen=True)
    node_module = _import_node(monkeypatch)
    FakeNode.overrides = {"map_dir": str(pyramid.path), "model_file": str(model),
                          "backend": "torch", "device": "cpu", "beam_width": 3,
                          "fix_frame_id": "cam"}
    node = node_module.LocalizerNode()
    node.setup()
    fixes = node.publishers["jzi/fix"].sent
    try:
        assert node.localizer.backend_name.startswith("torch")
        image = _image(0, 42, height=48)
        image.data = np.random.default_rng(1).integers(0, 256, image.data.size, np.uint8)
        node.subscriptions[0].callback(image)
        assert _wait(lambda: len(fixes) == 1, timeout_s=30.0)
    finally:
        node.close()
        monkeypatch.delitem(sys.modules, "jzi_ros.ros.node", raising=False)
    fix = fixes[0]
    assert (fix.header.stamp.sec, fix.header.frame_id) == (42, "cam")
    assert fix.status.status in (0, -1)
    values = [fix.latitude, fix.longitude, fix.altitude, *fix.position_covariance]
    assert all(np.isfinite(values))
    assert fix.position_covariance[0] >= 25.0 * (1 - 1e-9)  # the 5 m default sigma floor
    cloud = node.publishers["jzi/hypotheses"].sent[0]
    points = np.frombuffer(bytes(cloud.data), "<f4").reshape(-1, 4)
    assert 1 <= len(points) <= 3
    assert abs(points[:, 3].sum() - 1.0) < 1e-4


def _view_image(view, stamp_sec):
    height, width = view.shape[:2]
    return T["sensor_msgs/msg/Image"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
            sec=stamp_sec, nanosec=0), frame_id="cam"),
        height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
        data=np.ascontiguousarray(view).ravel())


def _retrieval_node(monkeypatch, tmp_path, **overrides):
    """Return the node module and a tiny map; the node gets an identity retrieval model."""
    from support import make_tiny_map, save_identity_retrieval

    pyramid = make_tiny_map(tmp_path)
    # a sharp softmax: the filter's mode must pick the frame's view, not a near-tie
    checkpoint = save_identity_retrieval(pyramid, tmp_path / "retrieval.safetensors",
                                         logit_scale=100.0)
    node_module = _import_node(monkeypatch)
    FakeNode.overrides = {"map_dir": str(pyramid.path), "retrieval_model": str(checkpoint),
                          "device": "cpu", "fix_frame_id": "cam", "altitude_m": 123.0,
                          **overrides}  # no model_file: retrieval does not need one
    return node_module, pyramid


def test_node_localizes_with_a_retrieval_model_instead_of_the_zoom(monkeypatch, tmp_path):
    node_module, pyramid = _retrieval_node(monkeypatch, tmp_path, **{"fusion.enabled": True})
    tree = pyramid.tree
    cell = list(tree.level_paths(tree.depth - 1))[6]
    node = node_module.LocalizerNode()
    node.setup()
    fixes = node.publishers["jzi/fix"].sent
    singles = node.publishers[node.params["fusion.single_fix_topic"]].sent
    try:
        assert node.localizer.backend_name.startswith("retrieval")
        for second in range(3):  # hovering over one view's cell
            node.subscriptions[0].callback(_view_image(pyramid.view(cell), 40 + second))
            assert _wait(lambda: len(singles) == second + 1, timeout_s=30.0)
        assert _wait(lambda: len(fixes) == 3)
    finally:
        node.close()
        monkeypatch.delitem(sys.modules, "jzi_ros.ros.node", raising=False)
    east, north = tree.cell_center_local(cell)
    lat, lon = tree.to_latlon(east, north)
    single = singles[-1]
    assert single.status.status == 0 and single.header.frame_id == "cam"
    assert (single.latitude, single.longitude) == pytest.approx((lat, lon), abs=1e-9)
    assert single.altitude == 123.0  # the node's altitude_m reaches the retrieval fix
    fused = fixes[-1]  # the filter fed retrieval's softmax stays in that cell
    fused_en = tree.to_local(fused.latitude, fused.longitude)
    assert np.hypot(fused_en[0] - east, fused_en[1] - north) < tree.cell_side(tree.depth - 1) / 2
    assert all(np.isfinite([fused.latitude, fused.longitude, *fused.position_covariance]))


def test_a_retrieval_node_refuses_the_seeded_zoom_and_refines_retrieved_views(
        monkeypatch, tmp_path):
    node_module, _ = _retrieval_node(monkeypatch, tmp_path, **{"fusion.enabled": True,
                                                               "fusion.seed_beam": True})
    node = node_module.LocalizerNode()
    try:
        with pytest.raises(JziError, match="fusion.seed_beam") as err:
            node.setup()
        assert "retrieval" in str(err.value) and "\n" not in str(err.value)
    finally:
        node.close()
        monkeypatch.delitem(sys.modules, "jzi_ros.ros.node", raising=False)
    # refine.enabled wraps the retrieval localizer: its top views are the cells refined
    # (test_refine.py registers a frame around them; this tiny map has no imagery)
    node_module, _ = _retrieval_node(monkeypatch, tmp_path / "refine",
                                     **{"refine.enabled": True})
    node = node_module.LocalizerNode()
    try:
        node.setup()
        assert node.localizer.backend_name == "retrieval-torch-jit-cpu+refine"
        assert node.localizer.localizer.backend_name == "retrieval-torch-jit-cpu"
    finally:
        node.close()
        monkeypatch.delitem(sys.modules, "jzi_ros.ros.node", raising=False)
