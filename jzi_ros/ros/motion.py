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
filtered one), ``fusion.visual_odometry`` (the frames' own motion where no odometry covers an
interval, :mod:`jzi_ros.inference.visual_odometry`), plus every
:class:`~jzi_ros.inference.fusion_config.FusionConfig` field as ``fusion.<field>``. All read
once at start-up.

A north-up model (heading policy ``north-up``) needs each frame's heading: :func:`frame_heading`
takes it from the same source the fusion uses (``fusion.heading_source``: the IMU's or the
odometry's orientation, or ``fusion.heading_yaw_deg`` for a gimballed camera held at a fixed
yaw), whether or not fusion is enabled, so one yaw turns both the motion and the image. The
camera is taken to look down with its image top along the body's forward (x) axis.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import threading
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from jzi_ros.errors import BadImageError, JziError
from jzi_ros.heading import check_enu_frame, HEADING_SOURCES, yaw_from_quaternion
from jzi_ros.inference import messages
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.motion import FRAME_HEADING_MAX_AGE_S, HeadingSeries, OnlineFusion
from jzi_ros.ros import refinement

PREFIX = "fusion."
NODE_PARAMETERS = {
    "enabled": (True, "publish the temporally filtered fix on fix_topic (the single-frame "
                      "fix then goes to fusion.single_fix_topic)"),
    "odom_topic": ("", "nav_msgs/Odometry for the filter's motion (empty: random walk)"),
    "imu_topic": ("", "sensor_msgs/Imu (ENU orientation) for heading_source imu"),
    "heading_source": ("odometry", "yaw that rotates the odometry twist to East/North and a "
                                   "north-up model's frames: " + ", ".join(HEADING_SOURCES)),
    "heading_yaw_deg": (0.0, "ENU yaw for heading_source fixed (0 = East, 90 = North)"),
    "frame_heading_source": ("", "north-up models: the frames' own heading source when it "
                                 "is not heading_source (imu, odometry or fixed with "
                                 "heading_yaw_deg, e.g. a camera gimballed at a fixed yaw "
                                 "while the odometry's heading turns its twist); empty: "
                                 "heading_source"),
    "camera_yaw_deg": (0.0, "north-up models: yaw of the image's top edge from the body's "
                            "forward axis, counter-clockwise seen from above (90: the image "
                            "top points to the body's left); added to the heading source's yaw"),
    "single_fix_topic": ("jzi/fix_single", "single-frame NavSatFix when fusion is on"),
    "visual_odometry": (False, "move the filter by the frames' own motion (consecutive frames "
                               "matched) wherever odometry does not cover the interval; needs "
                               "each frame's heading (frame_heading_source, else "
                               "heading_source; fixed for a north-up gimbal); scaled by "
                               "refine.nominal_height_m and refine.intrinsics, CameraInfo "
                               "(refine.enabled) or refine.hfov_deg (else a 70 deg guess, "
                               "warned)"),
}
# a north-up model's frame takes the heading sample nearest its stamp, if one is this close
# (an IMU publishes at 50-400 Hz; a heading a second away from the frame is not its heading)
FRAME_HEADING_KEEP_S = 10.0  # own samples kept (fusion off): bounded memory


def _sensor_qos() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                      reliability=ReliabilityPolicy.BEST_EFFORT)


def imu_yaw(msg: Any, topic: str) -> float:
    """Return a sensor_msgs/Imu's ENU yaw (radians); JziError for NED or no orientation."""
    check_enu_frame(msg.header.frame_id, f"IMU {topic}")
    q = msg.orientation
    return yaw_from_quaternion(q.x, q.y, q.z, q.w)


def odometry_yaw(msg: Any, topic: str) -> float:
    """Return a nav_msgs/Odometry pose's ENU yaw (radians); JziError for NED."""
    check_enu_frame(msg.header.frame_id, f"odometry {topic}")
    q = msg.pose.pose.orientation
    return yaw_from_quaternion(q.x, q.y, q.z, q.w)


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
                 out_qos: QoSProfile, georef_sigma_m: float = 0.0, visual: Any = None) -> None:
        from sensor_msgs.msg import NavSatFix

        self.node = node
        self.values = values
        heading = HeadingSeries(values["heading_source"],
                                math.radians(values["heading_yaw_deg"]))
        self.online = OnlineFusion(tree, config, heading, use_odometry=bool(values["odom_topic"]),
                                   georef_sigma_m=georef_sigma_m, visual=visual)
        self.frame_heading: FrameHeading | None = None  # visual odometry's (set by the node)
        self.single_pub = node.create_publisher(NavSatFix, values["single_fix_topic"], out_qos)
        sensor_qos = _sensor_qos()
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
                yaw = odometry_yaw(msg, self.values["odom_topic"])
        except JziError as err:
            self.node.get_logger().error(str(err), throttle_duration_sec=10.0)
            return
        twist = msg.twist.twist.linear
        self.online.add_odometry(messages.stamp_to_ns(msg.header.stamp), float(twist.x),
                                 float(twist.y), yaw)

    def _on_imu(self, msg: Any) -> None:
        try:
            yaw = imu_yaw(msg, self.values["imu_topic"])
        except JziError as err:
            self.node.get_logger().error(str(err), throttle_duration_sec=10.0)
            return
        self.online.add_heading(messages.stamp_to_ns(msg.header.stamp), yaw)

    def diagnostics(self) -> dict[str, str]:
        """Visual odometry's pairs and the height its filter scale implies (when it is on)."""
        visual = self.online.visual
        if visual is None:
            return {}
        out = {"visual odometry": f"{visual.matched} of {visual.tried} frame pairs matched"}
        scale = self.online.filter.mean_odometry_scale()
        if scale is not None:  # displacements were scaled by the guess: the filter corrects it
            out["height above ground, estimated (m)"] = (
                f"{scale * visual.config.height_m:.0f} (refine.nominal_height_m "
                f"{visual.config.height_m:g})")
        return out

    def seeds(self, stamp_ns: int) -> Any:
        """Seeds of the prior-seeded zoom for this frame (None unless ``fusion.seed_beam``)."""
        return self.online.seeds(stamp_ns)

    def fuse(self, fix: Any, measurement: Any, stamp_ns: int, settings: Any,
             rgb: Any = None) -> Any:
        """
        Publish the single-frame fix on its own topic; return the fused fix for fix_topic.

        ``rgb``: the frame, for visual odometry (ignored without it).
        """
        if fix.ok or settings.publish_no_fix:
            self.single_pub.publish(messages.fix_to_navsatfix(
                fix, stamp_ns, settings.fix_frame_id, self.node.types,
                covariance_type=settings.covariance_type))
        compass = None
        if self.online.visual is not None and self.frame_heading is not None:
            compass = self.frame_heading.get(stamp_ns)  # None: this pair is not turned
        # the Localizer owns altitude and Up variance: the fused fix carries the frame's; a
        # refined fix (refine.enabled) goes into the filter as a point measurement
        return self.online.fuse(stamp_ns, measurement, fix.altitude,
                                math.sqrt(float(fix.covariance_enu[2][2])), fix, rgb, compass)


def attach(node: Any, localizer: Any, out_qos: QoSProfile) -> NodeFusion | None:
    """Declare the ``fusion.*`` parameters; build the node's fusion when enabled (else None)."""
    values = {name: _declare(node, name, default, text)
              for name, (default, text) in NODE_PARAMETERS.items()}
    fields = {}
    for field in dataclasses.fields(FusionConfig):
        default = getattr(FusionConfig(), field.name)
        fields[field.name] = _declare(node, field.name, default,
                                      f"FusionConfig.{field.name} (docs/fusion.md)")
    for name, allowed in (("heading_source", HEADING_SOURCES),
                          ("frame_heading_source", ("",) + tuple(HEADING_SOURCES))):
        if values[name] not in allowed:
            raise JziError(f"fusion.{name} must be one of {', '.join(map(repr, allowed))}, "
                           f"got {values[name]!r}")
    if not values["enabled"]:
        return None
    config = FusionConfig(**fields)  # JziError names the bad fusion.* value
    georef = refinement.georef_sigma_m(node, localizer)  # as refinement's, on or off
    visual = _visual_odometry(node, values)
    fusion = NodeFusion(node, localizer.tree, config, values, out_qos, georef, visual)
    if visual is not None:
        fusion.frame_heading = _heading_for(node, values, fusion, "visual odometry")
    motion = values["odom_topic"] or "random walk"
    if visual is not None:
        motion = (f"{motion} (visual odometry where it is silent)" if values["odom_topic"]
                  else "visual odometry")
    node.get_logger().info(
        f"fusion on: filtered fix on the fix topic, single-frame fix on "
        f"{values['single_fix_topic']}; motion: {motion} (heading {values['heading_source']})"
        + (f"; map georeferencing 1-sigma {georef:g} m added to filtered covariances"
           if georef else ""))
    return fusion


def _visual_odometry(node: Any, values: dict[str, Any]) -> Any:
    """Return the VisualOdometry ``fusion.visual_odometry`` asks for, or None when off."""
    if not values["visual_odometry"]:
        return None
    from jzi_ros.inference.visual_odometry import VisualOdometry, VisualOdometryConfig

    # the camera as refinement knows it: one height and one camera for both (with refinement
    # on, its CameraInfo too)
    height_m, hfov_deg, intrinsics = refinement.camera_parameters(node)
    refining = getattr(node, "refinement", None)
    if refining is not None:
        intrinsics = refining.intrinsics_for
    elif hfov_deg is None and intrinsics is None:
        node.get_logger().warning(
            "visual odometry: no camera field of view (refine.intrinsics, refine.hfov_deg, or "
            "CameraInfo with refine.enabled): 70 deg assumed, every displacement is scaled by "
            "it")
    return VisualOdometry(VisualOdometryConfig(height_m=height_m, hfov_deg=hfov_deg), intrinsics)


def _heading_for(node: Any, values: dict[str, Any], fusion: NodeFusion | None, user: str,
                 alternative: str = "") -> "FrameHeading":
    """Return the frames' heading source for ``user``; one JziError line when it has no topic."""
    own = values["frame_heading_source"]
    source = own or values["heading_source"]
    needs = {"imu": "imu_topic", "odometry": "odom_topic"}.get(source)
    if needs and not values[needs]:
        which = "frame_heading_source" if own else "heading_source"
        raise JziError(
            f"{user} but fusion.{which} {source} has no fusion.{needs}: set it, or "
            f"fusion.{which} fixed with fusion.heading_yaw_deg (a gimballed camera)"
            + (f", or {alternative}" if alternative else ""))
    shared = fusion if source == values["heading_source"] else None
    return FrameHeading(node, values, shared, source)


class FrameHeading:
    """
    Each frame's compass heading (north-up models, visual odometry), from the heading source.

    ``source`` is ``fusion.frame_heading_source`` when set, else ``fusion.heading_source``.
    When it is the fusion's (fusion on) it reads the fusion's own yaw samples (one
    subscription, one series); otherwise it subscribes to its topic itself. :meth:`at` gives
    the heading sample nearest a frame's stamp, or raises BadImageError (the node counts and
    skips the frame) when none lies within ``FRAME_HEADING_MAX_AGE_S``.
    """

    def __init__(self, node: Any, values: dict[str, Any], fusion: NodeFusion | None,
                 source: str) -> None:
        self.source = source
        self.camera_yaw_rad = math.radians(values["camera_yaw_deg"])
        if not math.isfinite(self.camera_yaw_rad):
            raise JziError(f"fusion.camera_yaw_deg must be a finite angle in degrees, got "
                           f"{values['camera_yaw_deg']!r}")
        self.topic = {"imu": values["imu_topic"], "odometry": values["odom_topic"]}.get(
            self.source, "")
        if fusion is not None:
            self.series, self.lock = fusion.online.track.heading, fusion.online.lock
            return
        self.series = HeadingSeries(self.source, math.radians(values["heading_yaw_deg"]))
        self.lock = threading.Lock()
        if self.source == "imu":
            from sensor_msgs.msg import Imu

            node.create_subscription(Imu, self.topic, self._sample(node, imu_yaw), _sensor_qos())
        elif self.source == "odometry":
            from nav_msgs.msg import Odometry

            node.create_subscription(Odometry, self.topic, self._sample(node, odometry_yaw),
                                     _sensor_qos())

    def _sample(self, node: Any, yaw_of: Any) -> Any:
        def callback(msg: Any) -> None:
            try:
                yaw = yaw_of(msg, self.topic)
            except JziError as err:
                node.get_logger().error(str(err), throttle_duration_sec=10.0)
                return
            self.add(messages.stamp_to_ns(msg.header.stamp), yaw)
        return callback

    def add(self, stamp_ns: int, yaw_rad: float) -> None:
        """Record one yaw sample (own subscription); keep the last ``FRAME_HEADING_KEEP_S``."""
        with self.lock:
            series = self.series
            series.add(stamp_ns, yaw_rad)
            cut = stamp_ns - int(FRAME_HEADING_KEEP_S * 1e9)
            if series.stamps_ns[0] < cut:  # samples arrive in stamp order: drop the oldest
                old = bisect.bisect_left(series.stamps_ns, cut)
                del series.stamps_ns[:old], series.yaw_rad[:old]

    def get(self, stamp_ns: int) -> float | None:
        """Return the frame's compass heading in degrees (clockwise from North), or None."""
        with self.lock:
            return self.series.compass_at(stamp_ns, self.camera_yaw_rad)

    def at(self, stamp_ns: int) -> float:
        """:meth:`get`, or BadImageError when no sample is near (a north-up model's frame)."""
        heading = self.get(stamp_ns)
        if heading is not None:
            return heading
        with self.lock:
            held = len(self.series.stamps_ns)
        raise BadImageError(
            f"no heading for the frame stamped {stamp_ns * 1e-9:.3f} s: the north-up model "
            f"needs a {self.source} orientation on {self.topic} within "
            f"{FRAME_HEADING_MAX_AGE_S:g} s of it ({held} samples held)")


def frame_heading(node: Any, localizer: Any, fusion: NodeFusion | None) -> FrameHeading | None:
    """
    Return the frames' heading source for a north-up model (None for other models).

    Call after :func:`attach` (which declares the ``fusion.*`` parameters). A north-up model
    with no heading source configured is refused with one JziError line.
    """
    localizer = getattr(localizer, "localizer", localizer)  # the zoom under a RefiningLocalizer
    if localizer.model_config.heading != "north-up":
        return None
    values = {name: node.get_parameter(PREFIX + name).value for name in NODE_PARAMETERS}
    if fusion is not None and fusion.frame_heading is not None:
        heading = fusion.frame_heading  # visual odometry's: one source, one subscription
    else:
        name = getattr(getattr(localizer, "model_path", None), "name", "the model")
        heading = _heading_for(node, values, fusion, f"model {name} is north-up (frames are "
                               "rotated by their heading)", "use a heading-free model")
    source = heading.source
    node.get_logger().info(
        f"north-up model: frames rotated by the {source} heading"
        + (f" ({heading.topic})" if heading.topic else
           f" ({values['heading_yaw_deg']:g} deg ENU yaw)"))
    return heading
