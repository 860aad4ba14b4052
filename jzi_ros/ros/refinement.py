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
Geometric refinement in the node: the ``refine.*`` parameters, CameraInfo, diagnostics.

Kept out of ``node.py`` on purpose (as temporal fusion is): the node calls :func:`attach` once
in ``setup()``, uses the returned ``localizer`` (the zoom wrapped in
:class:`~jzi_ros.inference.refine.RefiningLocalizer`) and hands every frame's fix to
:meth:`NodeRefinement.record`. The camera intrinsics of a frame are, in this order:
``refine.intrinsics``, the latest ``sensor_msgs/CameraInfo`` (its ``k`` scaled to the size of
the image actually received), ``refine.hfov_deg``; with none of them the frame is not refined
and the reason says so (a robot should not refine with a guessed focal length). A refined fix
keeps ``STATUS_FIX``: NavSatStatus has no "refined" value, and the only spare one
(``STATUS_SBAS_FIX``) means satellite augmentation to every GNSS-aware consumer; the
covariance is what tells the EKF how good the fix is.
"""
from __future__ import annotations

import os
import threading
from typing import Any

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from jzi_ros.errors import JziError
from jzi_ros.inference.camera_pose import Intrinsics
from jzi_ros.ros.params import (camera_info_sibling, check_value, refine_config,
                                REFINE_PARAMETERS)


class NodeRefinement:
    """The node's refiner, its CameraInfo subscription and the refinement diagnostics."""

    def __init__(self, node: Any, localizer: Any, values: dict[str, Any]) -> None:
        from sensor_msgs.msg import CameraInfo

        from jzi_ros.inference.refine import Refiner, RefiningLocalizer

        self.node = node
        config = refine_config(values)
        map_dir = node.settings.map_dir
        self.override = _given_intrinsics(values)
        self.hfov_deg = config.hfov_deg
        self.topic = values["refine.camera_info_topic"] or camera_info_sibling(
            node.settings.image_topic)
        self._lock = threading.Lock()
        self._camera: tuple[Intrinsics, int, int] | None = None  # K, width, height of CameraInfo
        # a live camera: with refine.track_async no frame waits for background SIFT
        self.refiner = Refiner.for_map(os.path.expanduser(map_dir), config, realtime=True)
        self.localizer = RefiningLocalizer(localizer, self.refiner, self.intrinsics_for)
        self.frames = self.refined = self.tracked = 0
        self.last = "no frame yet"
        if self.refiner is None:
            node.get_logger().warning(
                f"refine.enabled is true but map {map_dir} has no imagery.tif (built before "
                "refinement existed): refinement is off; rebuild the map with `jzi map build`")
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.BEST_EFFORT)  # matches any publisher
        node.create_subscription(CameraInfo, self.topic, self._on_camera_info, qos)

    def _on_camera_info(self, msg: Any) -> None:
        try:
            K = Intrinsics.from_matrix(list(msg.k))
        except JziError as err:  # K all zeros: an uncalibrated camera
            self.node.get_logger().warning(f"refinement: CameraInfo on {self.topic} unusable "
                                           f"({err})", throttle_duration_sec=10.0)
            return
        camera = (K, int(msg.width), int(msg.height))
        with self._lock:
            changed, self._camera = camera != self._camera, camera
        if changed:
            self.node.get_logger().info(
                f"refinement: camera intrinsics from {self.topic}: fx {K.fx:.1f}, fy "
                f"{K.fy:.1f}, cx {K.cx:.1f}, cy {K.cy:.1f} ({msg.width} x {msg.height} px)")

    def intrinsics_for(self, height: int, width: int) -> Intrinsics:
        """Return the intrinsics of a ``height x width`` frame; JziError says why not."""
        if self.override is not None:
            return self.override
        with self._lock:
            camera = self._camera
        if camera is not None:
            K, info_w, info_h = camera
            if info_w > 0 and info_h > 0 and (info_w, info_h) != (width, height):
                return K.scaled(width / info_w, height / info_h)  # a resized image stream
            return K
        if self.hfov_deg is not None:
            return Intrinsics.from_hfov(width, height, self.hfov_deg)
        raise JziError(f"no camera intrinsics (no CameraInfo on {self.topic} yet; "
                       "refine.intrinsics and refine.hfov_deg unset)")

    def record(self, fix: Any) -> None:
        """Count a frame's refinement and log its outcome at debug level."""
        self.frames += 1
        self.refined += bool(fix.refined)
        self.tracked += bool(fix.refined) and "(tracked" in fix.refinement
        self.last = fix.refinement or "not refined"
        self.node.get_logger().debug(self.last)

    def diagnostics(self) -> dict[str, str]:
        return {"refinement": self.last,
                "refined frames": f"{self.refined} of {self.frames}",
                # refine.track_frames: refined without SIFT, by tracking the last registration
                "of them tracked": str(self.tracked),
                "camera info topic": self.topic}


def _values(node: Any) -> dict[str, Any]:
    """Return the ``refine.*`` parameters (declared by the node), each checked."""
    return {spec.name: check_value(spec, node.get_parameter(spec.name).value)
            for spec in REFINE_PARAMETERS}


def georef_sigma_m(node: Any, localizer: Any) -> float:
    """
    Return the map's georeferencing 1-sigma as refinement uses it, refinement on or off.

    ``refine.georef_sigma_m`` when set, else the map's (the localizer's pyramid), else 0: the
    temporal filter adds it once to its fixes (jzi_ros/ros/motion.py).
    """
    return refine_config(_values(node)).georef_sigma_for(getattr(localizer, "pyramid", None))


def camera_parameters(node: Any) -> tuple[float, float | None, Intrinsics | None]:
    """
    Return the camera as ``refine.*`` gives it: nominal height (m), hfov (deg) and intrinsics.

    What visual odometry scales image motion by (jzi_ros/ros/motion.py), refinement on or off;
    hfov and intrinsics are None when unset.
    """
    values = _values(node)
    config = refine_config(values)
    return config.nominal_height_m, config.hfov_deg, _given_intrinsics(values)


def _given_intrinsics(values: dict[str, Any]) -> Intrinsics | None:
    """Return ``refine.intrinsics`` parsed (None when empty)."""
    text = values["refine.intrinsics"]
    return Intrinsics.parse(text, "parameter refine.intrinsics") if text else None


def attach(node: Any, localizer: Any) -> NodeRefinement | None:
    """Read the ``refine.*`` parameters (declared by the node); None when refinement is off."""
    values = _values(node)
    refine_config(values)  # a bad combination fails at start-up even when refinement is off
    if not values["refine.enabled"]:
        return None
    refinement = NodeRefinement(node, localizer, values)
    georef = ("" if refinement.refiner is None else
              f"; map georeferencing 1-sigma {refinement.refiner.georef_sigma_m:g} m added to "
              "refined covariances")
    node.get_logger().info(f"refinement on: camera intrinsics from "
                           f"{'refine.intrinsics' if refinement.override else refinement.topic}"
                           f"{georef}")
    return refinement
