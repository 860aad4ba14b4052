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
Conversions between ROS messages and jzi_ros types, without importing ROS.

Every function takes "message-like" objects: rclpy message instances or the dataclasses of a
``rosbags`` typestore (same field names and constants). Messages are built with keyword
arguments for every field, which both kinds accept (rosbags requires all of them). Which
classes to build comes from a :class:`MessageTypes` namespace: :func:`ros_message_types` on a
robot, :func:`rosbags_message_types` when writing bags offline.

Conventions (see docs/ros.md): NavSatFix ``status`` is always set explicitly (Jazzy's default is
STATUS_UNKNOWN); altitude is always finite; ``position_covariance`` is row-major 3x3 East-North-Up
in m^2 with a floor on the horizontal sigma, because a near-zero covariance plus the EKF's
Mahalanobis gate makes robot_localization reject every later fix.
"""
from __future__ import annotations

import array
from dataclasses import dataclass
import math
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from jzi_ros.errors import BadImageError
from jzi_ros.inference.fix import Fix, FixStatus, Hypothesis

# encoding -> (bytes per pixel, OpenCV conversion to RGB or None for a numpy slice).
# 8UC1/8UC3/8UC4 follow cv_bridge (OpenCV channel order, i.e. BGR).
_ENCODINGS: dict[str, tuple[int, str]] = {
    "rgb8": (3, "rgb"),
    "bgr8": (3, "bgr"),
    "rgba8": (4, "rgba"),
    "bgra8": (4, "bgra"),
    "mono8": (1, "mono"),
    "8uc1": (1, "mono"),
    "8uc3": (3, "bgr"),
    "8uc4": (4, "bgra"),
    "yuv422": (2, "uyvy"),  # ROS "yuv422" is UYVY byte order
    "uyvy": (2, "uyvy"),
    "yuv422_yuy2": (2, "yuyv"),
    "yuyv": (2, "yuyv"),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1",
                                        "8UC3", "8UC4", "yuv422", "uyvy", "yuv422_yuy2", "yuyv")

# NavSatStatus.service: a bitmask of the GNSS constellations used. A visual fix uses none, so 0
# (no SERVICE_* bit) is the honest value; nothing in robot_localization reads it.
NAVSAT_SERVICE_NONE = 0

# Orientation is not estimated: PoseWithCovariance rotation variances are "unknown" (huge), so
# a filter fusing only X/Y (as it should) is unaffected and one fusing yaw learns nothing.
UNKNOWN_ROTATION_VARIANCE = 1.0e6

COVARIANCE_TYPES = ("known", "approximated")

# The hypotheses cloud: x, y, z (local ENU, metres) and the normalised probability.
CLOUD_FIELD_NAMES = ("x", "y", "z", "probability")
CLOUD_POINT_STEP = 4 * len(CLOUD_FIELD_NAMES)


@dataclass(frozen=True)
class MessageTypes:
    """The message classes the conversions build, from rclpy or from a rosbags typestore."""

    Time: Any
    Header: Any
    NavSatFix: Any
    NavSatStatus: Any
    PointField: Any
    PointCloud2: Any
    Point: Any
    Quaternion: Any
    Pose: Any
    PoseWithCovariance: Any
    PoseWithCovarianceStamped: Any
    byte_array: Callable[[bytes], Any]  # how a uint8[] field wants its bytes


def ros_message_types() -> MessageTypes:
    """Collect the rclpy message classes (imported here: this module loads without ROS)."""
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import (Point, Pose, PoseWithCovariance, PoseWithCovarianceStamped,
                                   Quaternion)
    from sensor_msgs.msg import NavSatFix, NavSatStatus, PointCloud2, PointField
    from std_msgs.msg import Header

    return MessageTypes(Time=Time, Header=Header, NavSatFix=NavSatFix,
                        NavSatStatus=NavSatStatus, PointField=PointField,
                        PointCloud2=PointCloud2, Point=Point, Quaternion=Quaternion, Pose=Pose,
                        PoseWithCovariance=PoseWithCovariance,
                        PoseWithCovarianceStamped=PoseWithCovarianceStamped,
                        byte_array=lambda data: array.array("B", data))


def rosbags_message_types(typestore: Any) -> MessageTypes:
    """Collect the classes of a rosbags typestore, e.g. ``get_typestore(Stores.ROS2_HUMBLE)``."""
    t = typestore.types
    return MessageTypes(Time=t["builtin_interfaces/msg/Time"], Header=t["std_msgs/msg/Header"],
                        NavSatFix=t["sensor_msgs/msg/NavSatFix"],
                        NavSatStatus=t["sensor_msgs/msg/NavSatStatus"],
                        PointField=t["sensor_msgs/msg/PointField"],
                        PointCloud2=t["sensor_msgs/msg/PointCloud2"],
                        Point=t["geometry_msgs/msg/Point"],
                        Quaternion=t["geometry_msgs/msg/Quaternion"],
                        Pose=t["geometry_msgs/msg/Pose"],
                        PoseWithCovariance=t["geometry_msgs/msg/PoseWithCovariance"],
                        PoseWithCovarianceStamped=t[
                            "geometry_msgs/msg/PoseWithCovarianceStamped"],
                        byte_array=lambda data: np.frombuffer(bytes(data), dtype=np.uint8))


# --------------------------------------------------------------------------- stamps

def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_header(stamp_ns: int, frame_id: str, types: MessageTypes) -> Any:
    """Build a std_msgs/Header; ``stamp_ns`` must be >= 0 (ROS time cannot be negative)."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"stamp_ns must be >= 0, got {stamp_ns}")
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return types.Header(stamp=types.Time(sec=sec, nanosec=nanosec), frame_id=str(frame_id))


# --------------------------------------------------------------------------- images in

def _uint8_buffer(data: Any, what: str) -> np.ndarray:
    """View a uint8[] field as numpy: numpy (rosbags), array.array / bytes / list (rclpy)."""
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    buffer = np.asarray(data)
    if buffer.dtype != np.uint8:
        if buffer.size and (buffer.dtype.kind not in "iu" or buffer.min() < 0
                            or buffer.max() > 255):
            raise BadImageError(f"{what}: data must be uint8 bytes, got dtype {buffer.dtype}")
        buffer = buffer.astype(np.uint8)
    return buffer.reshape(-1)


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """
    sensor_msgs/Image -> owned uint8 [H, W, 3] RGB array.

    Handles row padding (``step`` > width * bytes per pixel). Raises BadImageError for
    unsupported encodings (16-bit, float, Bayer, ...), zero size and inconsistent step/data.
    """
    encoding = str(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    spec = _ENCODINGS.get(encoding.lower())
    if spec is None:
        raise BadImageError(f"Image message: encoding '{encoding}' is not supported "
                            f"(expected one of {', '.join(SUPPORTED_ENCODINGS)})")
    channels, kind = spec
    if height <= 0 or width <= 0:
        raise BadImageError(f"Image message: size {width}x{height} is empty "
                            "(expected width and height > 0)")
    row_bytes = width * channels
    if step < row_bytes:
        raise BadImageError(f"Image message: step {step} is smaller than width {width} x "
                            f"{channels} bytes per pixel ({encoding}) = {row_bytes}")
    data = _uint8_buffer(msg.data, "Image message")
    if data.size != step * height:
        raise BadImageError(f"Image message: data has {data.size} bytes, expected step {step} "
                            f"x height {height} = {step * height}")
    if kind in ("uyvy", "yuyv") and width % 2:
        raise BadImageError(f"Image message: {encoding} needs an even width, got {width}")
    pixels = data.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if kind == "rgb":
        rgb = pixels
    elif kind == "bgr":
        rgb = pixels[..., ::-1]
    elif kind == "rgba":
        rgb = pixels[..., :3]
    elif kind == "bgra":
        rgb = pixels[..., 2::-1]
    elif kind == "mono":
        rgb = np.repeat(pixels, 3, axis=2)
    else:
        code = cv2.COLOR_YUV2RGB_UYVY if kind == "uyvy" else cv2.COLOR_YUV2RGB_YUYV
        rgb = cv2.cvtColor(np.ascontiguousarray(pixels), code)
    # Always a private copy: rclpy/rosbags buffers may be reused after the callback returns.
    return np.array(rgb, dtype=np.uint8, order="C", copy=True)


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """
    sensor_msgs/CompressedImage (JPEG, PNG, anything OpenCV decodes) -> uint8 [H, W, 3] RGB.

    Raises BadImageError for empty or corrupt data and for compressedDepth images.
    """
    fmt = str(getattr(msg, "format", ""))
    if "compresseddepth" in fmt.lower():
        raise BadImageError(f"CompressedImage message: format '{fmt}' is a depth image "
                            "(expected a colour JPEG or PNG)")
    data = _uint8_buffer(msg.data, "CompressedImage message")
    if data.size == 0:
        raise BadImageError("CompressedImage message: data is empty (expected JPEG or PNG)")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise BadImageError(f"CompressedImage message: {data.size} bytes with format '{fmt}' "
                            "could not be decoded (expected valid JPEG or PNG data)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- fixes out

def floored_covariance_enu(fix: Fix, sigma_floor_m: float,
                           up_variance_m2: float | None = None) -> np.ndarray:
    """
    Return the fix's 3x3 ENU covariance with a floor on the horizontal sigma.

    Every horizontal standard deviation (along any direction, i.e. the eigenvalues of the
    East-North block) becomes at least ``sigma_floor_m``.

    Up is decoupled from East/North (the policy does not estimate height) and gets
    ``up_variance_m2`` when given, else the fix's own Up variance, floored the same way.
    """
    if not (math.isfinite(sigma_floor_m) and sigma_floor_m > 0):
        raise ValueError(f"sigma_floor_m must be finite and > 0, got {sigma_floor_m}")
    floor = float(sigma_floor_m) ** 2
    cov = np.asarray(fix.covariance_enu, dtype=np.float64)
    en = 0.5 * (cov[:2, :2] + cov[:2, :2].T)
    values, vectors = np.linalg.eigh(en)
    if values.min() < floor:  # otherwise keep the exact numbers (no eigen round trip)
        en = (vectors * np.maximum(values, floor)) @ vectors.T
    up = float(cov[2, 2]) if up_variance_m2 is None else float(up_variance_m2)
    if not math.isfinite(up):
        raise ValueError(f"up variance must be finite, got {up}")
    out = np.zeros((3, 3))
    out[:2, :2] = 0.5 * (en + en.T)
    out[2, 2] = max(up, floor)
    return out


def fix_to_navsatfix(fix: Fix, stamp_ns: int, frame_id: str, types: MessageTypes, *,
                     sigma_floor_m: float = 1.0, altitude_m: float | None = None,
                     altitude_variance_m2: float | None = None,
                     covariance_type: str = "known") -> Any:
    """
    Build a sensor_msgs/NavSatFix for ``fix``, stamped with the image stamp ``stamp_ns``.

    ``altitude_m`` / ``altitude_variance_m2`` override the fix's altitude and Up variance
    (navsat_transform drops fixes whose altitude is NaN, so it must be finite). A NO_FIX fix
    keeps its finite placeholder position and huge covariance with STATUS_NO_FIX.
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, "
                         f"got {covariance_type!r}")
    altitude = float(fix.altitude if altitude_m is None else altitude_m)
    if not math.isfinite(altitude):
        raise ValueError(f"altitude must be finite, got {altitude}")
    cov = floored_covariance_enu(fix, sigma_floor_m, altitude_variance_m2)
    status_cls = types.NavSatStatus
    status = status_cls(status=int(status_cls.STATUS_FIX if fix.status == FixStatus.FIX
                                   else status_cls.STATUS_NO_FIX),
                        service=NAVSAT_SERVICE_NONE)
    cov_type = (types.NavSatFix.COVARIANCE_TYPE_KNOWN if covariance_type == "known"
                else types.NavSatFix.COVARIANCE_TYPE_APPROXIMATED)
    return types.NavSatFix(header=make_header(stamp_ns, frame_id, types), status=status,
                           latitude=float(fix.latitude), longitude=float(fix.longitude),
                           altitude=altitude,
                           position_covariance=np.ascontiguousarray(cov.reshape(9)),
                           position_covariance_type=int(cov_type))


def fix_to_pose_with_covariance(fix: Fix, stamp_ns: int, frame_id: str, types: MessageTypes,
                                *, sigma_floor_m: float = 1.0,
                                altitude_variance_m2: float | None = None) -> Any:
    """
    Build a geometry_msgs/PoseWithCovarianceStamped in the map's local ENU frame.

    Origin = map root centre, x east, y north, z 0. It has no status field: publish it for FIX
    fixes only. Orientation is identity with "unknown" (huge) rotation variances.
    """
    cov3 = floored_covariance_enu(fix, sigma_floor_m, altitude_variance_m2)
    cov6 = np.zeros((6, 6))
    cov6[:3, :3] = cov3
    cov6[3, 3] = cov6[4, 4] = cov6[5, 5] = UNKNOWN_ROTATION_VARIANCE
    pose = types.Pose(position=types.Point(x=float(fix.east_m), y=float(fix.north_m), z=0.0),
                      orientation=types.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0))
    return types.PoseWithCovarianceStamped(
        header=make_header(stamp_ns, frame_id, types),
        pose=types.PoseWithCovariance(pose=pose,
                                      covariance=np.ascontiguousarray(cov6.reshape(36))))


# --------------------------------------------------------------------------- hypotheses cloud

def cloud_fields(types: MessageTypes) -> list[Any]:
    """Describe the hypotheses cloud's points: x, y, z, probability, float32, 16 bytes a point."""
    float32 = int(types.PointField.FLOAT32)
    return [types.PointField(name=name, offset=4 * i, datatype=float32, count=1)
            for i, name in enumerate(CLOUD_FIELD_NAMES)]


def hypotheses_points(hypotheses: Sequence[Hypothesis] | Iterable[Hypothesis]) -> np.ndarray:
    """float32 [N, 4]: east, north, 0, probability for each hypothesis (local ENU metres)."""
    rows = [(h.east_m, h.north_m, 0.0, h.probability) for h in hypotheses]
    points = np.asarray(rows, dtype=np.float32).reshape(-1, len(CLOUD_FIELD_NAMES))
    if not np.all(np.isfinite(points)):
        raise ValueError("hypotheses contain non-finite coordinates or probabilities")
    return points


def hypotheses_cloud_data(hypotheses: Iterable[Hypothesis]) -> bytes:
    """Pack the points little-endian, matching :func:`cloud_fields`."""
    return hypotheses_points(hypotheses).astype("<f4").tobytes()


def hypotheses_to_pointcloud2(hypotheses: Iterable[Hypothesis], stamp_ns: int, frame_id: str,
                              types: MessageTypes) -> Any:
    """Build an unorganised sensor_msgs/PointCloud2 (height 1) of the hypotheses."""
    data = hypotheses_cloud_data(hypotheses)
    width = len(data) // CLOUD_POINT_STEP
    return types.PointCloud2(header=make_header(stamp_ns, frame_id, types), height=1,
                             width=width, fields=cloud_fields(types), is_bigendian=False,
                             point_step=CLOUD_POINT_STEP, row_step=CLOUD_POINT_STEP * width,
                             data=types.byte_array(data), is_dense=True)
