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

Also publishes a pose, the hypotheses cloud and diagnostics. Thin on purpose: conversions
live in ``convert``, plumbing in ``runtime``, parameters in ``params``, localization in
``jzi_ros.inference.localizer``.

Threading: the subscription callback only puts the newest message in a one-slot mailbox; a
worker thread decodes, localizes and publishes, so a slow frame never blocks the executor
(diagnostics, parameter services) and never queues stale frames.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from diagnostic_updater import DiagnosticStatusWrapper, Updater
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
import rclpy.logging
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, NavSatFix, PointCloud2
from sensor_msgs_py import point_cloud2

from jzi_ros.errors import BadImageError, JziError
from jzi_ros.ros import convert
from jzi_ros.ros.params import NODE_NAME, NodeSettings, PARAMETER_NAMES, PARAMETERS, ParamSpec
from jzi_ros.ros.runtime import LatestSlot, NodeStats, RateLimiter, Worker

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
    Build the LocalizerConfig from the node settings at start-up.

    Runtime-changeable values (sigma_floor_m, altitude) are applied again by ``convert`` when
    each message is built, so a later ``ros2 param set`` takes effect without a reload.
    """
    from jzi_ros.inference.localizer import LocalizerConfig

    return LocalizerConfig(
        beam_width=settings.beam_width, position=settings.position,
        confidence_threshold=settings.confidence_threshold,
        sigma_floor_m=settings.sigma_floor_m, altitude_m=settings.altitude_m,
        altitude_sigma_m=math.sqrt(settings.altitude_variance), backend=settings.backend,
        device=settings.device, precision="auto" if settings.enable_fp16 else "fp32",
        export_dir=os.path.expanduser(settings.export_dir) if settings.export_dir else None,
        force_engine_update=settings.force_engine_update,
        max_workspace_size=settings.max_workspace_size, threads=settings.threads)


class LocalizerNode(Node):
    """Declares parameters on construction; ``setup()`` loads the localizer and starts I/O."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            for spec in PARAMETERS:
                self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        except (InvalidParameterTypeException, InvalidParameterValueException) as err:
            # e.g. altitude_m: 0 (an integer) in YAML for a double parameter
            raise JziError(f"{NODE_NAME}: {err}") from None
        self.settings = NodeSettings.from_values(
            {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS})
        self.types = convert.ros_message_types()
        self.stats = NodeStats()
        self.slot: LatestSlot[tuple[int, Any]] = LatestSlot()
        self.limiter = RateLimiter(self.settings.max_rate_hz)
        self.localizer: Any = None
        self.worker: Worker | None = None
        self.updater: Updater | None = None

    def setup(self) -> None:
        """Load map + model (+ engine) before spinning; JziError on a missing map or model."""
        s = self.settings
        for name in ("map_dir", "model_file"):
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
        self.localizer = Localizer.from_paths(
            os.path.expanduser(s.map_dir), os.path.expanduser(s.model_file), localizer_config(s))
        self.get_logger().info(
            f"localizer ready in {time.perf_counter() - started:.1f} s: map {s.map_dir}, "
            f"model {s.model_file}, backend {self.localizer.backend_name}")

        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                               reliability=ReliabilityPolicy.BEST_EFFORT,
                               durability=DurabilityPolicy.VOLATILE)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.RELIABLE
                             if s.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT)
        self.fix_pub = self.create_publisher(NavSatFix, s.fix_topic, out_qos)
        self.pose_pub = (self.create_publisher(PoseWithCovarianceStamped, s.pose_topic, out_qos)
                         if s.publish_pose else None)
        self.cloud_pub = (self.create_publisher(PointCloud2, s.hypotheses_topic, out_qos)
                          if s.publish_hypotheses else None)
        self.cloud_fields = convert.cloud_fields(self.types)

        self.updater = Updater(self)
        self.updater.setHardwareID(f"jzi_localizer/{self.localizer.backend_name}")
        self.updater.add("localizer", self._diagnose)

        self.worker = Worker(self.slot, self._process, self._on_worker_error)
        self.worker.start()
        msg_type = CompressedImage if s.image_transport == "compressed" else Image
        self.create_subscription(msg_type, s.subscribed_topic, self._on_image, image_qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(f"subscribed to {s.subscribed_topic} ({msg_type.__name__}), "
                               f"publishing {s.fix_topic} in frame '{s.fix_frame_id}'")

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Any) -> None:
        self.stats.frame_received()
        stamp_ns = convert.stamp_to_ns(msg.header.stamp)
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
        started = time.perf_counter()
        try:
            if s.image_transport == "compressed":
                rgb = convert.compressed_msg_to_rgb(msg)
            else:
                rgb = convert.image_msg_to_rgb(msg)
            fix = self.localizer.localize(rgb)
        except BadImageError as err:
            count = self.stats.bad_message(str(err))
            self.get_logger().warning(f"skipping bad image ({count} so far): {err}",
                                      throttle_duration_sec=BAD_MESSAGE_LOG_PERIOD_S)
            return
        latency_ms = (time.perf_counter() - started) * 1e3
        self.stats.localized(fix.ok, fix.confidence, latency_ms, fix.reason)
        if fix.ok or s.publish_no_fix:
            self.fix_pub.publish(convert.fix_to_navsatfix(
                fix, stamp_ns, s.fix_frame_id, self.types, sigma_floor_m=s.sigma_floor_m,
                altitude_m=s.altitude_m, altitude_variance_m2=s.altitude_variance,
                covariance_type=s.covariance_type))
        if fix.ok and self.pose_pub is not None:
            self.pose_pub.publish(convert.fix_to_pose_with_covariance(
                fix, stamp_ns, s.map_frame_id, self.types, sigma_floor_m=s.sigma_floor_m,
                altitude_variance_m2=s.altitude_variance))
        if self.cloud_pub is not None:
            header = convert.make_header(stamp_ns, s.map_frame_id, self.types)
            # tuples work with every sensor_msgs_py version (older ones take no numpy array)
            points = [tuple(row) for row in convert.hypotheses_points(fix.hypotheses).tolist()]
            self.cloud_pub.publish(point_cloud2.create_cloud(header, self.cloud_fields, points))

    def _on_worker_error(self, err: BaseException) -> None:
        self.stats.error()
        self.get_logger().error(f"localization failed: {type(err).__name__}: {err}",
                                throttle_duration_sec=BAD_MESSAGE_LOG_PERIOD_S)

    def _diagnose(self, stat: DiagnosticStatusWrapper) -> DiagnosticStatusWrapper:
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
        for key, value in values.items():
            stat.add(key, value)
        return stat

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop the worker (bounded wait), release GPU memory, destroy the node."""
        if self.worker is not None and not self.worker.stop(WORKER_JOIN_TIMEOUT_S):
            self.get_logger().warning("worker still busy after "
                                      f"{WORKER_JOIN_TIMEOUT_S:.0f} s; exiting anyway")
        else:
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
