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

Used by the node, by bag replay / evaluation and by the demo bag writer, so it lives in the
ROS-free core: offline tools never import ``jzi_ros.ros``.

Every function takes "message-like" objects: rclpy message instances or the dataclasses of a
``rosbags`` typestore (same field names and constants). Messages are built with keyword
arguments for every field, which both kinds accept (rosbags requires all of them). Which
classes to build comes from a :class:`MessageTypes` namespace: the node fills one with rclpy's
classes, :func:`rosbags_message_types` with a rosbags typestore's when writing bags offline.

Images in: pixels are converted by ``rosbags-image`` (OpenCV underneath), which accepts rclpy's
messages as they are; this module adds what it leaves out: the checks that turn a malformed
message into one :class:`BadImageError` (size, ``step``, data length, encoding), the row
padding of ``step`` and a private copy of the pixels. The node uses cv_bridge where it is
installed, after the same :func:`check_image_msg`.

Fixes out: the message carries the :class:`Fix` as the Localizer made it. The Localizer owns
the horizontal floor (``sigma_floor_m``), the altitude and the Up variance (one owner, so a
runtime change of either takes effect on the next fix). NavSatFix ``status`` is always set
explicitly (Jazzy's default is STATUS_UNKNOWN); altitude is always finite;
``position_covariance`` is row-major 3x3 East-North-Up in m^2.
"""
from __future__ import annotations

import array
from dataclasses import dataclass
import math
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np
from rosbags.image import compressed_image_to_cvimage, image_to_cvimage, ImageError

from jzi_ros.errors import BadImageError
from jzi_ros.inference.fix import Fix, FixStatus, Hypothesis

# Accepted encodings -> (the encoding rosbags-image / cv_bridge convert from, bytes per pixel).
# 8UC1/8UC3/8UC4 carry no colour order; like cv_bridge we read them in OpenCV order (BGR).
_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("rgb8", 3),
    "bgr8": ("bgr8", 3),
    "rgba8": ("rgba8", 4),
    "bgra8": ("bgra8", 4),
    "mono8": ("mono8", 1),
    "8uc1": ("mono8", 1),
    "8uc3": ("bgr8", 3),
    "8uc4": ("bgra8", 4),
    "yuv422": ("yuv422", 2),  # ROS "yuv422" is UYVY byte order
    "uyvy": ("uyvy", 2),
    "yuv422_yuy2": ("yuv422_yuy2", 2),
    "yuyv": ("yuyv", 2),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1",
                                        "8UC3", "8UC4", "yuv422", "uyvy", "yuv422_yuy2", "yuyv")
_YUV = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")

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


def check_image_msg(msg: Any) -> tuple[str, np.ndarray]:
    """
    Check a sensor_msgs/Image; return (source encoding, unpadded pixel bytes [H, W * bpp]).

    The source encoding is what the pixels are converted from (8UCn read as mono8 / bgr8 /
    bgra8). BadImageError for unsupported encodings (16-bit, float, Bayer, ...), zero size and
    an inconsistent step or data length.
    """
    encoding = str(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    spec = _ENCODINGS.get(encoding.lower())
    if spec is None:
        raise BadImageError(f"Image message: encoding '{encoding}' is not supported "
                            f"(expected one of {', '.join(SUPPORTED_ENCODINGS)})")
    source, bytes_per_pixel = spec
    if height <= 0 or width <= 0:
        raise BadImageError(f"Image message: size {width}x{height} is empty "
                            "(expected width and height > 0)")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise BadImageError(f"Image message: step {step} is smaller than width {width} x "
                            f"{bytes_per_pixel} bytes per pixel ({encoding}) = {row_bytes}")
    data = _uint8_buffer(msg.data, "Image message")
    if data.size != step * height:
        raise BadImageError(f"Image message: data has {data.size} bytes, expected step {step} "
                            f"x height {height} = {step * height}")
    if source in _YUV and width % 2:
        raise BadImageError(f"Image message: {encoding} needs an even width, got {width}")
    return source, data.reshape(height, step)[:, :row_bytes]


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """
    sensor_msgs/Image -> owned uint8 [H, W, 3] RGB array (rosbags-image converts the pixels).

    Handles row padding (``step`` > width * bytes per pixel); BadImageError as
    :func:`check_image_msg`.
    """
    source, rows = check_image_msg(msg)
    # rosbags-image reads ``data`` as an unpadded buffer: hand it the rows without padding
    unpadded = SimpleNamespace(encoding=source, height=int(msg.height), width=int(msg.width),
                               is_bigendian=False, data=np.ascontiguousarray(rows).reshape(-1))
    try:
        rgb = image_to_cvimage(unpadded, "rgb8")
    except (ImageError, cv2.error) as err:
        raise BadImageError(f"Image message: {msg.encoding} could not be converted to rgb8 "
                            f"({str(err).strip().splitlines()[-1]})") from None
    return owned_rgb(rgb)


def owned_rgb(image: Any) -> np.ndarray:
    """
    Return a private, C-ordered uint8 [H, W, 3] copy of a converted image.

    rclpy / rosbags buffers may be reused after the callback returns, so never keep a view.
    """
    rgb = np.array(image, dtype=np.uint8, order="C", copy=True)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BadImageError(f"image: expected 3 colour channels after conversion, got shape "
                            f"{rgb.shape}")
    return rgb


def check_compressed_msg(msg: Any) -> np.ndarray:
    """Check a sensor_msgs/CompressedImage; return its bytes (BadImageError: depth, empty)."""
    fmt = str(getattr(msg, "format", ""))
    if "compresseddepth" in fmt.lower():
        raise BadImageError(f"CompressedImage message: format '{fmt}' is a depth image "
                            "(expected a colour JPEG or PNG)")
    data = _uint8_buffer(msg.data, "CompressedImage message")
    if data.size == 0:
        raise BadImageError("CompressedImage message: data is empty (expected JPEG or PNG)")
    return data


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """
    sensor_msgs/CompressedImage (JPEG, PNG, anything OpenCV decodes) -> uint8 [H, W, 3] RGB.

    Decoded by rosbags-image. BadImageError for empty or corrupt data and for compressedDepth
    images.
    """
    data = check_compressed_msg(msg)
    fmt = str(getattr(msg, "format", ""))
    failed = BadImageError(f"CompressedImage message: {data.size} bytes with format '{fmt}' "
                           "could not be decoded (expected valid JPEG or PNG data)")
    try:
        # no colour space: a grey JPEG/PNG decodes to one channel, which needs its own path
        image = compressed_image_to_cvimage(SimpleNamespace(data=data, format=fmt))
    except (AssertionError, cv2.error):  # rosbags-image asserts that imdecode worked
        raise failed from None
    if image is None or image.size == 0:
        raise failed
    source = "mono8" if image.ndim == 2 else "bgra8" if image.shape[2] == 4 else "bgr8"
    return owned_rgb(image_to_cvimage(
        SimpleNamespace(encoding=source, height=image.shape[0], width=image.shape[1],
                        is_bigendian=False, data=np.ascontiguousarray(image).reshape(-1)),
        "rgb8"))


# --------------------------------------------------------------------------- fixes out

def fix_covariance_enu(fix: Fix) -> np.ndarray:
    """
    Return the fix's 3x3 ENU covariance (m^2) as a message carries it, checked.

    Symmetric, finite, with positive variances: a NaN or a non-positive variance here is a bug
    upstream, never something to publish (ValueError).
    """
    cov = np.asarray(fix.covariance_enu, dtype=np.float64).reshape(3, 3)
    cov = 0.5 * (cov + cov.T)
    if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) <= 0):
        raise ValueError(f"fix covariance must be finite with positive variances, got {cov}")
    return cov


def fix_to_navsatfix(fix: Fix, stamp_ns: int, frame_id: str, types: MessageTypes, *,
                     covariance_type: str = "known") -> Any:
    """
    Build a sensor_msgs/NavSatFix for ``fix``, stamped with the image stamp ``stamp_ns``.

    Position, altitude and covariance are the fix's (the Localizer applied the floor, altitude
    and Up variance). A NO_FIX fix keeps its finite placeholder position and huge covariance
    with STATUS_NO_FIX. ValueError for anything non-finite (never published).
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, "
                         f"got {covariance_type!r}")
    values = (float(fix.latitude), float(fix.longitude), float(fix.altitude))
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"latitude, longitude and altitude must be finite, got {values}")
    cov = fix_covariance_enu(fix)
    status_cls = types.NavSatStatus
    status = status_cls(status=int(status_cls.STATUS_FIX if fix.status == FixStatus.FIX
                                   else status_cls.STATUS_NO_FIX),
                        service=NAVSAT_SERVICE_NONE)
    cov_type = (types.NavSatFix.COVARIANCE_TYPE_KNOWN if covariance_type == "known"
                else types.NavSatFix.COVARIANCE_TYPE_APPROXIMATED)
    return types.NavSatFix(header=make_header(stamp_ns, frame_id, types), status=status,
                           latitude=values[0], longitude=values[1], altitude=values[2],
                           position_covariance=np.ascontiguousarray(cov.reshape(9)),
                           position_covariance_type=int(cov_type))


def fix_to_pose_with_covariance(fix: Fix, stamp_ns: int, frame_id: str,
                                types: MessageTypes) -> Any:
    """
    Build a geometry_msgs/PoseWithCovarianceStamped in the map's local ENU frame.

    Origin = map root centre, x east, y north, z 0. It has no status field: publish it for FIX
    fixes only. Orientation is identity with "unknown" (huge) rotation variances.
    """
    cov6 = np.zeros((6, 6))
    cov6[:3, :3] = fix_covariance_enu(fix)
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
