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
``jzi_localizer``: camera image in, ``sensor_msgs/NavSatFix`` out.

Also publishes a pose, the hypotheses cloud and diagnostics. Thin on purpose: message
conversions live in ``jzi_ros.inference.messages``, plumbing in ``runtime``, parameters in
``params``, localization in ``jzi_ros.inference.localizer``.

Threading: the subscription callback only puts the newest message in a one-slot mailbox; a
worker thread decodes, localizes and publishes, so a slow frame never blocks the executor
(diagnostics, parameter services) and never queues stale frames.

Works with ROS 2 from a full install and from the PyPI wheels (rclpy + message packages only):
images go through cv_bridge where it is installed, else through rosbags-image; without
diagnostic_updater the node runs without /diagnostics and says so once at start-up.

Runtime parameters: the Localizer owns the horizontal floor, the altitude and the Up variance
(``LocalizerConfig``); a change through the parameter service is handed to it before the next
frame, so raising and lowering ``sigma_floor_m`` both take effect on the next fix.
"""
from __future__ import annotations

import array
import math
import os
import sys
import time
from typing import Any, Callable

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import (Point, Pose, PoseWithCovariance, PoseWithCovarianceStamped,
                               Quaternion)
import numpy as np
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
import rclpy.logging
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import (CompressedImage, Image, NavSatFix, NavSatStatus, PointCloud2,
                             PointField)
from std_msgs.msg import Header

from jzi_ros.errors import BadImageError, JziError
from jzi_ros.inference import messages
from jzi_ros.inference.refine_tracking import sequence_options
from jzi_ros.ros.params import (NODE_NAME, NodeSettings, PARAMETER_NAMES, PARAMETERS, ParamSpec,
                                REFINE_PARAMETERS)
from jzi_ros.ros.runtime import (LatestSlot, LogThrottle, NodeStats, RateLimiter,
                                 READY_MESSAGE, Worker)

BAD_MESSAGE_LOG_PERIOD_S = 5.0
WORKER_JOIN_TIMEOUT_S = 3.0


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.min is not None and isinstance(spec.default, float):
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    elif spec.min is not None and isinstance(spec.default, int):
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.min), to_value=int(spec.max), step=0)]
    return descriptor


def localizer_config(settings: NodeSettings) -> Any:
    """
    Map the node settings onto a LocalizerConfig (the one place that does).

    Called at start-up and again after a runtime parameter change: the Localizer then owns the
    floor, altitude and Up variance of every later fix.
    """
    from jzi_ros.inference.localizer import LocalizerConfig

    return LocalizerConfig(
        beam_width=settings.beam_width, position=settings.position,
        confidence_threshold=(None if settings.confidence_threshold < 0  # the model's gate
                              else settings.confidence_threshold),
        sigma_floor_m=settings.sigma_floor_m, altitude_m=settings.altitude_m,
        altitude_sigma_m=math.sqrt(settings.altitude_variance), backend=settings.backend,
        device=settings.device, precision="auto" if settings.enable_fp16 else "fp32",
        export_dir=os.path.expanduser(settings.export_dir) if settings.export_dir else None,
        force_engine_update=settings.force_engine_update,
        max_workspace_size=settings.max_workspace_size, cpu_graph=settings.cpu_graph,
        threads=settings.threads)


def ros_message_types() -> messages.MessageTypes:
    """Return the rclpy message classes the conversions build."""
    return messages.MessageTypes(
        Time=Time, Header=Header, NavSatFix=NavSatFix, NavSatStatus=NavSatStatus,
        PointField=PointField, PointCloud2=PointCloud2, Point=Point, Quaternion=Quaternion,
        Pose=Pose, PoseWithCovariance=PoseWithCovariance,
        PoseWithCovarianceStamped=PoseWithCovarianceStamped,
        byte_array=lambda data: array.array("B", data))


def image_converter(transport: str) -> tuple[Callable[[Any], np.ndarray], str]:
    """
    Return (message -> uint8 RGB, what converts): cv_bridge where importable, else rosbags-image.

    Both paths first run the same checks (``messages.check_image_msg``), so an unsupported
    encoding or a malformed message is a BadImageError either way.
    """
    try:
        from cv_bridge import CvBridge, CvBridgeError
    except ImportError:
        if transport == "compressed":
            return messages.compressed_msg_to_rgb, "rosbags-image (cv_bridge not importable)"
        return messages.image_msg_to_rgb, "rosbags-image (cv_bridge not importable)"
    import cv2

    bridge = CvBridge()
    failures = (CvBridgeError, cv2.error, TypeError, ValueError, AttributeError)

    def compressed(msg: Any) -> np.ndarray:
        messages.check_compressed_msg(msg)
        try:
            image = bridge.compressed_imgmsg_to_cv2(msg, "passthrough")
        except failures as err:
            raise BadImageError(f"CompressedImage message: cv_bridge could not decode it "
                                f"({err})") from None
        if image is None or image.size == 0:
            raise BadImageError("CompressedImage message: could not be decoded (expected valid "
                                "JPEG or PNG data)")
        if image.dtype == np.uint16:  # a 16-bit PNG: 8 bits, as rosbags-image decodes it
            image = (image >> 8).astype(np.uint8)
        code = (cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGRA2RGB
                if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        return messages.owned_rgb(cv2.cvtColor(image, code))

    def raw(msg: Any) -> np.ndarray:
        source, _ = messages.check_image_msg(msg)
        if source != str(msg.encoding):
            # 8UCn carries no colour order: cv_bridge refuses to colour-convert it
            return messages.image_msg_to_rgb(msg)
        try:
            return messages.owned_rgb(bridge.imgmsg_to_cv2(msg, "rgb8"))
        except failures as err:
            raise BadImageError(f"Image message: cv_bridge could not convert {msg.encoding} "
                                f"({err})") from None

    return (compressed if transport == "compressed" else raw), "cv_bridge"


class LocalizerNode(Node):
    """Declares parameters on construction; ``setup()`` loads the localizer and starts I/O."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMETERS + REFINE_PARAMETERS:
            try:
                self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except (InvalidParameterTypeException, InvalidParameterValueException) as err:
                # e.g. altitude_m: 0 (an integer) in YAML for a double parameter
                hint = (" (a double needs a decimal point: write 0.0, not 0)"
                        if isinstance(spec.default, float) else "")
                raise JziError(f"{NODE_NAME}: parameter '{spec.name}': "
                               f"{str(err).strip()}{hint}") from None
        self.settings = NodeSettings.from_values(
            {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS})
        self.types = ros_message_types()
        self.stats = NodeStats()
        self.slot: LatestSlot[tuple[int, Any]] = LatestSlot()
        self.limiter = RateLimiter(self.settings.max_rate_hz)
        self.localizer: Any = None
        self.worker: Worker | None = None
        self.updater: Any = None
        self.fusion: Any = None
        self.frame_heading: Any = None  # a north-up model's heading source (ros/motion.py)
        self.refinement: Any = None
        self._applied: NodeSettings | None = None  # the settings the localizer runs with
        self._to_rgb: Callable[[Any], np.ndarray] = messages.image_msg_to_rgb
        self._bad_log = LogThrottle(BAD_MESSAGE_LOG_PERIOD_S)

    def setup(self) -> None:
        """Load map + model (+ engine) before spinning; JziError on a missing map or model."""
        s = self.settings
        for name in ("map_dir", "retrieval_model" if s.retrieval_model else "model_file"):
            if not getattr(s, name):
                raise JziError(f"{NODE_NAME}: parameter '{name}' is empty; set it in the params "
                               f"file or with {name}:=PATH on the launch command line")
            if not os.path.exists(os.path.expanduser(getattr(s, name))):
                raise JziError(f"{NODE_NAME}: parameter '{name}' = {getattr(s, name)!r}: no "
                               "such file or directory")
        from jzi_ros.inference.localizer import Localizer

        if s.backend == "tensorrt":
            self.get_logger().info("backend tensorrt: the first engine build can take minutes")
        started = time.perf_counter()
        if s.retrieval_model:  # the retrieval baseline instead of the zoom (docs/retrieval.md)
            from jzi_ros.inference.retrieval import RetrievalLocalizer

            self.localizer = RetrievalLocalizer(
                os.path.expanduser(s.map_dir), os.path.expanduser(s.retrieval_model),
                device=s.device, progress=False, config=localizer_config(s))
        else:
            self.localizer = Localizer.from_paths(
                os.path.expanduser(s.map_dir), os.path.expanduser(s.model_file),
                localizer_config(s))
        self._applied = s
        from jzi_ros.ros import refinement  # refine.* parameters, CameraInfo subscription
        self.refinement = refinement.attach(self, self.localizer)
        if self.refinement is not None:
            self.localizer = self.refinement.localizer
        self._to_rgb, converter = image_converter(s.image_transport)

        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                               reliability=ReliabilityPolicy.BEST_EFFORT,
                               durability=DurabilityPolicy.VOLATILE)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.RELIABLE
                             if s.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT)
        # qos_overrides.<topic>.publisher.* in a params file adjust these (ROS 2 convention)
        overrides = QoSOverridingOptions.with_default_policies()
        self.fix_pub = self.create_publisher(NavSatFix, s.fix_topic, out_qos,
                                             qos_overriding_options=overrides)
        self.pose_pub = (self.create_publisher(PoseWithCovarianceStamped, s.pose_topic, out_qos)
                         if s.publish_pose else None)
        self.cloud_pub = (self.create_publisher(PointCloud2, s.hypotheses_topic, out_qos)
                          if s.publish_hypotheses else None)
        from jzi_ros.ros import motion  # temporal fusion: fusion.* parameters, subscriptions
        self.fusion = motion.attach(self, self.localizer, out_qos)
        if (s.retrieval_model and self.fusion is not None
                and self.fusion.online.filter.config.seed_beam):
            raise JziError(f"{NODE_NAME}: fusion.seed_beam seeds the zoom's beam; retrieval "
                           "has none: turn fusion.seed_beam off")
        if self.fusion is not None and self.fusion.online.filter.config.seed_beam:
            # a compiled seeded search is built now, not on the first confident frame
            self.localizer.warm_seeded(self.fusion.online.filter.config.fix_sigma_m)
        self.frame_heading = motion.frame_heading(self, self.localizer, self.fusion)
        self._start_diagnostics()

        self.worker = Worker(self.slot, self._process, self._on_worker_error)
        self.worker.start()
        msg_type = CompressedImage if s.image_transport == "compressed" else Image
        self.create_subscription(msg_type, s.subscribed_topic, self._on_image, image_qos,
                                 qos_overriding_options=overrides)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"{READY_MESSAGE} in {time.perf_counter() - started:.1f} s: map {s.map_dir}, "
            f"model {s.retrieval_model or s.model_file}, backend "
            f"{self.localizer.backend_name}; subscribed to "
            f"{s.subscribed_topic} ({msg_type.__name__}, converted by {converter}), "
            f"publishing {s.fix_topic} in frame '{s.fix_frame_id}'")

    def _start_diagnostics(self) -> None:
        try:
            from diagnostic_updater import Updater
        except ImportError:
            self.get_logger().warning(
                "/diagnostics is off: diagnostic_updater is not importable (ROS 2 from pip "
                "wheels); install ros-$ROS_DISTRO-diagnostic-updater to turn it on")
            return
        self.updater = Updater(self)
        self.updater.setHardwareID(f"jzi_localizer/{self.localizer.backend_name}")
        self.updater.add("localizer", self._diagnose)

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Any) -> None:
        self.stats.frame_received()
        stamp_ns = messages.stamp_to_ns(msg.header.stamp)
        if stamp_ns == 0:
            # an unstamped camera driver: the receive time is the best stand-in for the
            # exposure time (the EKF needs some stamp; 0 would be rejected as too old)
            stamp_ns = self.get_clock().now().nanoseconds
            self.get_logger().warning("camera image has no header stamp; using receive time",
                                      throttle_duration_sec=BAD_MESSAGE_LOG_PERIOD_S)
        if self.limiter.admit(stamp_ns * 1e-9):
            self.slot.put((stamp_ns, msg))

    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        try:
            settings = self.settings.replace(**{p.name: p.value for p in parameters
                                                if p.name in PARAMETER_NAMES})
        except JziError as err:
            return SetParametersResult(successful=False, reason=str(err))
        self.settings = settings  # one reference swap: the worker reads a consistent set
        self.limiter.max_rate_hz = settings.max_rate_hz
        return SetParametersResult(successful=True)

    def _process(self, item: tuple[int, Any]) -> None:
        stamp_ns, msg = item
        s = self.settings
        if s is not self._applied:  # a runtime change: the localizer owns floor and altitude
            self.localizer.config = localizer_config(s)
            self._applied = s
        started = time.perf_counter()
        try:
            rgb = self._to_rgb(msg)
            # north-up model: BadImageError (counted, skipped) while no heading is known
            heading = None if self.frame_heading is None else self.frame_heading.at(stamp_ns)
            sequence = sequence_options(self.localizer, stamp_ns)  # refinement's tracking
            if self.fusion is None:
                fix = single = self.localizer.localize(rgb, heading_deg=heading, **sequence)
            else:  # fix_topic gets the filtered fix, the cloud this frame's own hypotheses
                single, measurement = self.localizer.localize_measured(  # seeds: seed_beam only
                    rgb, heading_deg=heading, seeds=self.fusion.seeds(stamp_ns), **sequence)
                fix = self.fusion.fuse(single, measurement, stamp_ns, s, rgb)
        except BadImageError as err:
            count = self.stats.bad_message(str(err))
            if self._bad_log.admit(str(err)):  # each new problem at once, repeats throttled
                self.get_logger().warning(f"skipping bad image ({count} so far): {err}")
            return
        latency_ms = (time.perf_counter() - started) * 1e3
        if self.refinement is not None:
            self.refinement.record(single)
        self.stats.localized(fix.ok, fix.confidence, latency_ms, fix.reason)
        if fix.ok or s.publish_no_fix:
            self.fix_pub.publish(messages.fix_to_navsatfix(
                fix, stamp_ns, s.fix_frame_id, self.types, covariance_type=s.covariance_type))
        if fix.ok and self.pose_pub is not None:
            self.pose_pub.publish(messages.fix_to_pose_with_covariance(
                fix, stamp_ns, s.map_frame_id, self.types))
        if self.cloud_pub is not None:
            self.cloud_pub.publish(messages.hypotheses_to_pointcloud2(
                single.hypotheses, stamp_ns, s.map_frame_id, self.types))

    def _on_worker_error(self, err: BaseException) -> None:
        self.stats.error()
        self.get_logger().error(f"localization failed: {type(err).__name__}: {err}",
                                throttle_duration_sec=BAD_MESSAGE_LOG_PERIOD_S)

    def _diagnose(self, stat: Any) -> Any:
        snap = self.stats.snapshot(self.slot.replaced)
        if snap.input_hz == 0.0:
            stat.summary(DiagnosticStatus.WARN, f"no images on {self.settings.subscribed_topic}")
        elif snap.frames and snap.fixes == 0:
            stat.summary(DiagnosticStatus.WARN, f"no fix yet: {snap.last_reason}")
        elif snap.errors:
            stat.summary(DiagnosticStatus.WARN, f"{snap.errors} frames failed")
        else:
            stat.summary(DiagnosticStatus.OK, "localizing")
        values = {
            "backend": self.localizer.backend_name,
            "input rate (Hz)": f"{snap.input_hz:.2f}",
            "localized rate (Hz)": f"{snap.processed_hz:.2f}",
            "fix rate (Hz)": f"{snap.fix_hz:.2f}",
            "inference latency last (ms)": f"{snap.latency_ms_last:.1f}",
            "inference latency mean (ms)": f"{snap.latency_ms_mean:.1f}",
            "last confidence": f"{snap.last_confidence:.3f}",
            "last no-fix reason": snap.last_reason,
            "frames localized": str(snap.frames),
            "fixes": str(snap.fixes),
            "no fixes": str(snap.no_fixes),
            "bad messages": str(snap.bad_messages),
            "last bad message": snap.last_bad_message,
            "stale frames dropped": str(snap.dropped_frames),
            "errors": str(snap.errors),
        }
        if self.refinement is not None:
            values.update(self.refinement.diagnostics())
        if self.fusion is not None:
            values.update(self.fusion.diagnostics())
        for key, value in values.items():
            stat.add(key, value)
        return stat

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop the worker (bounded wait), close the backend, release GPU memory, destroy."""
        if self.worker is not None and not self.worker.stop(WORKER_JOIN_TIMEOUT_S):
            self.get_logger().warning("worker still busy after "
                                      f"{WORKER_JOIN_TIMEOUT_S:.0f} s; exiting anyway")
        elif self.localizer is not None:
            self.localizer.close()  # the backend's sessions / engines / CUDA graphs
            self.localizer = None  # drop model and engine before emptying the CUDA cache
        torch = sys.modules.get("torch")  # only if the localizer used it
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``jzi_localizer``: 0 on a clean stop, 1 on a configuration error."""
    rclpy.init(args=args)
    node: LocalizerNode | None = None
    code = 0
    try:
        node = LocalizerNode()
        node.setup()
        rclpy.spin(node)
    except JziError as err:
        # one line, no traceback: missing map/model or a bad parameter value
        rclpy.logging.get_logger(NODE_NAME).error(str(err))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
