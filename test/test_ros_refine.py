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
Refinement in the real node on a real ROS 2 graph (marker ``ros``), CameraInfo included.

A textured map with imagery (test_refine's), a random tiny model embedded into it, and one
frame rendered from the map's own imagery with known intrinsics and pose. One node refines
(``refine.enabled``), a second one does not; both run as their own processes
(test_ros_node's ``NodeProcess``). Before each frame the test waits for the refining node's
log line that names the intrinsics it got from CameraInfo, so no frame races its CameraInfo.
A third node also filters (``fusion.enabled``): its refined fixes reach the filtered fix.
The order of the intrinsics' sources (parameter, CameraInfo scaled to the image, hfov) is
checked on a stub node, without a graph.
"""
import math
import time

import numpy as np
import pytest

from test_refine import build, source_to_local, texture, TREE
from test_ros_node import Graph, NodeProcess

pytestmark = pytest.mark.ros

NADIR_EN = (0.0, 0.0)
# near the map's centre, so that every cell the random zoom may pick is searched far enough
# (refine.nominal_height_m 400: the search margin covers the map; the index still fits)
NOMINAL_HEIGHT_M = 400.0


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """(map dir, model, frame, camera K, the zoom's own fix of the frame)."""
    from support import make_tiny_checkpoint

    from jzi_ros.inference.localizer import Localizer, LocalizerConfig
    from jzi_ros.maps.pyramid import MapPyramid
    from jzi_ros.training.camera import CameraModel, CameraPose, render_view

    root = tmp_path_factory.mktemp("ros_refine")
    image = texture(800)
    map_dir = build(root, image, "map")
    model = make_tiny_checkpoint(root, MapPyramid.open(map_dir))
    camera = CameraModel(320, 240, 60.0)
    pose = CameraPose(*NADIR_EN, 200.0, heading_deg=30.0, pitch_deg=75.0)
    frame = render_view(image, source_to_local(), camera, pose)
    zoom = Localizer.from_paths(map_dir, model, LocalizerConfig(
        backend="torch", device="cpu", confidence_threshold=0.0))
    try:
        fix = zoom.localize(frame)
    finally:
        zoom.close()
    return map_dir, model, frame, camera.K(), fix


def camera_info(k: np.ndarray):
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo()
    msg.width, msg.height = 320, 240
    msg.k = [float(v) for v in np.asarray(k).ravel()]
    return msg


def send_camera_info(graph, publisher, node, k):
    """Publish CameraInfo until the node logs the focal length it now uses."""
    msg = camera_info(k)
    text = f"fx {k[0, 0]:.1f}, fy {k[1, 1]:.1f}"
    assert graph.spin_until(lambda: publisher.get_subscription_count() >= 1, node)
    publisher.publish(msg)
    assert graph.spin_until(lambda: any(text in line for line in node.lines), node,
                            republish=lambda: publisher.publish(msg)), \
        f"the node never logged {text!r}:\n{node.output}"


def local_en(fix):
    east, north = TREE.to_local(fix.latitude, fix.longitude)
    return float(east), float(north)


def test_refined_fix_with_camera_info_and_the_zoom_fix_without(assets):
    from sensor_msgs.msg import CameraInfo, NavSatStatus

    map_dir, model, frame, k, zoom = assets
    refining = NodeProcess(map_dir, model, "rrefine", confidence_threshold=0.0,
                           **{"refine.enabled": True,
                              "refine.nominal_height_m": NOMINAL_HEIGHT_M})
    plain = NodeProcess(map_dir, model, "rzoom", confidence_threshold=0.0)
    graphs = [Graph("rrefine"), Graph("rzoom")]
    on, off = graphs
    try:
        on.wait_ready(refining)
        off.wait_ready(plain)
        assert "refinement on: camera intrinsics from camera/camera_info" in refining.output
        # the default CameraInfo topic: the image topic's sibling
        info_pub = on.node.create_publisher(CameraInfo, "camera/camera_info", 10)
        send_camera_info(on, info_pub, refining, k)
        refined, _ = on.localize(on.raw(frame, "rgb8", on.next_stamp()), refining)
        assert refined.status.status == NavSatStatus.STATUS_FIX
        error_m = math.hypot(*np.subtract(local_en(refined), NADIR_EN))
        assert error_m < 3.0, (local_en(refined), refining.output)
        cov = np.reshape(refined.position_covariance, (3, 3))
        assert np.all(np.isfinite(cov)) and 0 < cov[0, 0] < 5.0 ** 2
        # the zoom alone publishes its terminal cell's centre (40 m cells: >= 28 m from here)
        zoomed, _ = off.localize(off.raw(frame, "rgb8", off.next_stamp()), plain)
        assert (zoomed.latitude, zoomed.longitude) == pytest.approx(
            (zoom.latitude, zoom.longitude), abs=1e-9)
        assert math.hypot(*np.subtract(local_en(zoomed), local_en(refined))) > 20.0
        # a wrong CameraInfo (focal length x3): the zoom's fix, not a wild refined one
        wrong = np.array(k, dtype=np.float64)
        wrong[0, 0] *= 3.0
        wrong[1, 1] *= 3.0
        send_camera_info(on, info_pub, refining, wrong)
        kept, _ = on.localize(on.raw(frame, "rgb8", on.next_stamp()), refining)
        assert kept.status.status == NavSatStatus.STATUS_FIX
        assert (kept.latitude, kept.longitude) == pytest.approx(
            (zoom.latitude, zoom.longitude), abs=1e-9)
        np.testing.assert_allclose(kept.position_covariance, zoomed.position_covariance)
    finally:
        for graph in graphs:
            graph.close()
        for node in (refining, plain):
            if node.process.poll() is None:
                node.stop()


@pytest.mark.parametrize("background", [False, True], ids=["sync", "async"])
def test_the_node_tracks_a_moving_camera_between_sift_registrations(assets, background):
    """``refine.track_frames`` (``track_async``): the node hands refinement the stamps."""
    from jzi_ros.ros.params import NODE_NAME
    from jzi_ros.training.camera import CameraModel, CameraPose, render_view

    map_dir, model, _, _, _ = assets
    image = texture(800)  # the map's source (texture is deterministic)
    camera = CameraModel(320, 240, 60.0)
    poses = [CameraPose(8.0 * i, -4.0 * i, 200.0, heading_deg=30.0 + i, pitch_deg=86.0)
             for i in range(4)]
    name = "rtrackasync" if background else "rtrack"
    node = NodeProcess(map_dir, model, name, confidence_threshold=0.0,
                       ros_args=("--log-level", f"{name}.{NODE_NAME}:=debug"),
                       **{"refine.enabled": True, "refine.nominal_height_m": NOMINAL_HEIGHT_M,
                          "refine.hfov_deg": 60.0, "refine.track_frames": 5,
                          "refine.track_async": background})
    graph = Graph(name)
    try:
        graph.wait_ready(node)
        for i, pose in enumerate(poses):  # stamps one second apart: a sequence
            frame = render_view(image, source_to_local(), camera, pose)
            fix, _ = graph.localize(graph.raw(frame, "rgb8", graph.next_stamp()), node)
            assert np.all(np.isfinite(fix.position_covariance))
            if background and i == 0:  # its SIFT runs in the background: the zoom's fix
                # the node never waits for it (real time): the next frame comes a camera
                # period later, as the stamps say, when SIFT (tens of ms) has finished
                time.sleep(1.0)
                continue
            error_m = math.hypot(*np.subtract(local_en(fix), (pose.east_m, pose.north_m)))
            assert error_m < 3.0, (pose, local_en(fix), node.output)
        if background:
            assert any("runs in the background" in line for line in node.lines), node.output
        # logged at debug level per frame; (a best-effort frame published twice, same stamp,
        # would be detected again: so at least the first tracked frame, not exactly three)
        node.wait_for_line("(tracked 1 after SIFT)")
    finally:
        graph.close()
        if node.process.poll() is None:
            node.stop()


class _Logger:
    def __init__(self):
        self.lines = []

    def info(self, text, **kw):
        self.lines.append(text)

    warning = debug = info


class _StubNode:
    """What NodeRefinement asks of the node: settings, a logger, subscriptions."""

    def __init__(self, map_dir, values):
        from types import SimpleNamespace

        self.settings = SimpleNamespace(map_dir=str(map_dir), image_topic="cam/image_raw")
        self.values = values
        self.logger = _Logger()
        self.subscriptions = []

    def get_logger(self):
        return self.logger

    def create_subscription(self, msg_type, topic, callback, qos):
        self.subscriptions.append((msg_type.__name__, topic, callback))

    def get_parameter(self, name):
        from types import SimpleNamespace

        from jzi_ros.ros.params import REFINE_PARAMETERS

        spec = {s.name: s for s in REFINE_PARAMETERS}[name]
        return SimpleNamespace(value=self.values.get(name, spec.default))


def test_intrinsics_order_override_camera_info_scaled_hfov(assets):
    from types import SimpleNamespace

    from jzi_ros.errors import JziError
    from jzi_ros.ros import refinement

    map_dir, _, _, k, zoom = assets
    zoom_localizer = SimpleNamespace(tree=TREE, backend_name="stub", localize=lambda image: zoom)
    assert refinement.attach(_StubNode(map_dir, {}), zoom_localizer) is None  # off by default
    node = _StubNode(map_dir, {"refine.enabled": True})
    attached = refinement.attach(node, zoom_localizer)
    (_, topic, on_info), = node.subscriptions
    assert topic == "cam/camera_info"
    with pytest.raises(JziError, match="no camera intrinsics"):
        attached.intrinsics_for(240, 320)
    # a 640 x 480 calibration, images received at 320 x 240: K halves (pixel centres kept)
    big = np.array(k, dtype=np.float64)
    big[0, 0], big[1, 1] = 2 * k[0, 0], 2 * k[1, 1]
    big[0, 2], big[1, 2] = 2 * k[0, 2] + 0.5, 2 * k[1, 2] + 0.5
    msg = camera_info(big)
    msg.width, msg.height = 640, 480
    on_info(msg)
    got = attached.intrinsics_for(240, 320)
    assert (got.fx, got.fy, got.cx, got.cy) == pytest.approx((k[0, 0], k[1, 1], k[0, 2], k[1, 2]))
    assert sum("refinement: camera intrinsics from cam/camera_info" in line
               for line in node.logger.lines) == 1
    on_info(msg)  # unchanged: not logged again
    assert sum("fx " in line for line in node.logger.lines) == 1
    on_info(camera_info(np.zeros((3, 3))))  # an uncalibrated camera: kept the last good K
    assert attached.intrinsics_for(240, 320) == got
    # the parameter override wins; hfov_deg serves until CameraInfo arrives
    override = refinement.attach(_StubNode(map_dir, {"refine.enabled": True,
                                                     "refine.intrinsics": "100,110,50,60"}),
                                 zoom_localizer)
    assert override.intrinsics_for(240, 320).fy == 110.0
    hfov = refinement.attach(_StubNode(map_dir, {"refine.enabled": True,
                                                 "refine.hfov_deg": 60.0}), zoom_localizer)
    assert hfov.intrinsics_for(240, 320).fx == pytest.approx(k[0, 0])
    # a frame without intrinsics is the zoom's fix with the reason; counted for diagnostics
    blank = refinement.attach(_StubNode(map_dir, {"refine.enabled": True}), zoom_localizer)
    fix = blank.localizer.localize(np.zeros((240, 320, 3), np.uint8))
    assert not fix.refined and fix.refinement.startswith("not refined: no camera intrinsics")
    assert (fix.latitude, fix.longitude) == (zoom.latitude, zoom.longitude)
    blank.record(fix)
    assert blank.diagnostics()["refined frames"] == "0 of 1"


def test_fusion_on_fuses_the_refined_fix_into_jzi_fix(assets):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, NavSatFix, NavSatStatus

    map_dir, model, frame, k, _ = assets
    node = NodeProcess(map_dir, model, "rfused", confidence_threshold=0.0,
                       **{"refine.enabled": True, "refine.nominal_height_m": NOMINAL_HEIGHT_M,
                          "fusion.enabled": True})
    graph = Graph("rfused")
    singles = {}
    graph.node.create_subscription(NavSatFix, "jzi/fix_single",
                                   lambda m: singles.setdefault(m.header.stamp.sec, m),
                                   QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    try:
        graph.wait_ready(node)
        send_camera_info(graph, graph.node.create_publisher(CameraInfo, "camera/camera_info",
                                                            10), node, k)
        for _ in range(3):  # the same view, a second apart: a hovering drone
            stamp = graph.next_stamp()
            fused, _ = graph.localize(graph.raw(frame, "rgb8", stamp), node)
        assert graph.spin_until(lambda: stamp[0] in singles, node), node.output
        single = singles[stamp[0]]
        assert math.hypot(*np.subtract(local_en(single), NADIR_EN)) < 3.0
        # the filtered fix on jzi/fix: metre-level too, with a metre-level covariance
        assert fused.status.status == NavSatStatus.STATUS_FIX, node.output
        assert math.hypot(*np.subtract(local_en(fused), NADIR_EN)) < 3.0, node.output
        cov = np.reshape(fused.position_covariance, (3, 3))
        assert np.all(np.isfinite(cov)) and 0 < cov[0, 0] < 5.0 ** 2
    finally:
        graph.close()
        if node.process.poll() is None:
            node.stop()
