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
Helpers for the replay tests.

Small ROS 2 bags written with rosbags, and a test-double localizer whose answers the tests
know in advance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from jzi_ros.errors import BadImageError
from jzi_ros.geo import CellTree
from jzi_ros.inference.fix import Fix, FixStatus, Hypothesis

STORE = get_typestore(Stores.ROS2_HUMBLE)
T = STORE.types
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
NAVSAT = "sensor_msgs/msg/NavSatFix"
IMU = "sensor_msgs/msg/Imu"
T0 = 1_700_000_000 * 10**9  # header stamps start here (ns)


def header(stamp_ns: int, frame_id: str):
    sec, nsec = divmod(int(stamp_ns), 10**9)
    return T["std_msgs/msg/Header"](T["builtin_interfaces/msg/Time"](sec, nsec), frame_id)


def code_image(index: int, size: int = 8) -> np.ndarray:
    """Return an RGB image whose pixels encode ``index`` (losslessly through PNG)."""
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 0], image[..., 1] = index % 256, index // 256
    image[..., 2] = 77
    return image


def decode_index(rgb: np.ndarray) -> int:
    return int(rgb[0, 0, 0]) + 256 * int(rgb[0, 0, 1])


def image_message(rgb: np.ndarray, stamp_ns: int, kind: str, frame_id: str = "camera"):
    if kind == "raw":
        h, w, _ = rgb.shape
        return T[IMAGE](header(stamp_ns, frame_id), h, w, "rgb8", 0, w * 3,
                        np.ascontiguousarray(rgb).reshape(-1))
    ext = ".png" if kind == "png" else ".jpg"
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return T[COMPRESSED](header(stamp_ns, frame_id), ext[1:], data.reshape(-1))


def imu_message(stamp_ns: int, yaw_deg: float, frame_id: str = "imu_link"):
    """Return a sensor_msgs/Imu whose orientation is an ENU yaw (degrees) and nothing else."""
    half = math.radians(yaw_deg) / 2
    vector, zeros = T["geometry_msgs/msg/Vector3"], np.zeros(9)
    return T[IMU](header(stamp_ns, frame_id),
                  T["geometry_msgs/msg/Quaternion"](0.0, 0.0, math.sin(half), math.cos(half)),
                  zeros, vector(0.0, 0.0, 0.0), zeros, vector(0.0, 0.0, 0.0), zeros)


def navsat_message(stamp_ns: int, lat: float, lon: float, status: int = 0):
    status_msg = T["sensor_msgs/msg/NavSatStatus"](status, 1)
    return T[NAVSAT](header(stamp_ns, "gps"), status_msg, lat, lon, 12.0,
                     np.diag([4.0, 4.0, 9.0]).reshape(-1), 2)


@dataclass
class BagSpec:
    """What to write: frames (stamp, log time, rgb or None for a corrupt message) and GT."""

    image_stamps: list[int]
    image_log_times: list[int]
    images: list[np.ndarray | None]
    gt: list[tuple[int, float, float, int]]  # stamp, lat, lon, status
    kind: str = "raw"  # raw | png | jpeg
    extra_topic: bool = True  # an unrelated /odom-like topic to be copied verbatim
    corrupt_gt: list[int] = field(default_factory=list)  # log times of corrupt GT messages
    imu: list[tuple[int, float]] = field(default_factory=list)  # (stamp, ENU yaw deg) on /imu


def write_bag(path: Path, spec: BagSpec, storage: str = "sqlite3") -> Path:
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    image_type = IMAGE if spec.kind == "raw" else COMPRESSED
    messages = []
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        cam = writer.add_connection("/camera/image", image_type, typestore=STORE)
        gps = writer.add_connection("/gps/fix", NAVSAT, typestore=STORE)
        for stamp, log_time, rgb in zip(spec.image_stamps, spec.image_log_times, spec.images):
            if rgb is None:
                # a truncated message: the header is readable, the image data is cut off
                good = STORE.serialize_cdr(image_message(code_image(0), stamp, spec.kind),
                                           image_type)
                raw = bytes(good[:30])
            else:
                raw = STORE.serialize_cdr(image_message(rgb, stamp, spec.kind), image_type)
            messages.append((log_time, cam, raw))
        for stamp, lat, lon, status in spec.gt:
            messages.append((stamp + 3_000_000, gps,
                             STORE.serialize_cdr(navsat_message(stamp, lat, lon, status),
                                                 NAVSAT)))
        for log_time in spec.corrupt_gt:
            messages.append((log_time, gps, b"\x00\x01\x00\x00\x01"))
        if spec.imu:
            imu = writer.add_connection("/imu", IMU, typestore=STORE)
            for stamp, yaw_deg in spec.imu:
                messages.append((stamp + 1_000_000, imu,
                                 STORE.serialize_cdr(imu_message(stamp, yaw_deg), IMU)))
        if spec.extra_topic:
            chatter = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=STORE)
            for i in range(5):
                msg = T["std_msgs/msg/String"](f"hello {i}")
                messages.append((T0 + i * 10**9, chatter,
                                 STORE.serialize_cdr(msg, "std_msgs/msg/String")))
        for log_time, conn, raw in sorted(messages, key=lambda m: m[0]):
            writer.write(conn, log_time, raw)
    return path


def track(t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the robot's true path (local metres): a curve, so interpolation is not trivial."""
    t_s = np.asarray(t_s, float)
    return -300 + 25 * t_s, 80 * np.sin(t_s / 3.0)


def standard_spec(tree: CellTree, n_frames: int = 24, image_hz: float = 5.0,
                  gt_hz: float = 2.0, kind: str = "raw", corrupt: Sequence[int] = (7,),
                  swap: tuple[int, int] | None = (3, 4)) -> BagSpec:
    """
    Images at ``image_hz``, GT at ``gt_hz`` with an offset (so interpolation matters).

    Also a NO_FIX GT message, a corrupt frame and two frames recorded out of stamp order.
    """
    stamps = [T0 + int(i * 1e9 / image_hz) + 1_000_000 for i in range(n_frames)]
    logs = [s + 20_000_000 for s in stamps]
    if swap:
        a, b = swap
        logs[a], logs[b] = logs[b], logs[a]
    images = [None if i in corrupt else code_image(i) for i in range(n_frames)]
    duration = n_frames / image_hz
    gt_t = np.arange(-0.3, duration + 0.5, 1 / gt_hz)
    east, north = track(gt_t)
    lat, lon = tree.to_latlon(east, north)
    gt = [(T0 + int(round(t * 1e9)), float(a), float(o), 0) for t, a, o in zip(gt_t, lat, lon)]
    # a NO_FIX GT fix far off the track: must be ignored
    gt.append((gt[3][0] + 100_000_000, gt[3][1] + 0.01, gt[3][2], -1))
    return BagSpec(stamps, logs, images, gt, kind)


def gt_interp(spec: BagSpec, tree: CellTree, stamp_ns: int) -> tuple[float, float]:
    """Independent GT at a stamp: np.interp over the valid GT fixes (in the local frame)."""
    valid = sorted((s, a, o) for s, a, o, st in spec.gt if st >= 0)
    stamps = np.array([v[0] for v in valid], float)
    east, north = tree.to_local(np.array([v[1] for v in valid]), np.array([v[2] for v in valid]))
    return (float(np.interp(stamp_ns, stamps, east)), float(np.interp(stamp_ns, stamps, north)))


class IndexLocalizer:
    """
    Test double for Localizer: reads the frame index from the image and answers.

    It answers with a position the test chose in advance (truth + a known offset), a known
    covariance and a known status. Frames whose index is in ``bad`` raise BadImageError like the
    real one does.
    """

    backend_name = "test-double"

    def __init__(self, tree: CellTree, spec: BagSpec, offsets: dict[int, tuple[float, float]],
                 sigma_m: float = 30.0, no_fix: Sequence[int] = (), bad: Sequence[int] = (),
                 interrupt_at: int | None = None, pyramid=None) -> None:
        self.tree, self.spec, self.offsets = tree, spec, offsets
        self.sigma_m, self.no_fix, self.bad = sigma_m, set(no_fix), set(bad)
        self.interrupt_at, self.pyramid = interrupt_at, pyramid
        self.calls: list[int] = []

    def truth(self, index: int) -> tuple[float, float]:
        return gt_interp(self.spec, self.tree, self.spec.image_stamps[index])

    def estimate(self, index: int) -> tuple[float, float]:
        east, north = self.truth(index)
        de, dn = self.offsets.get(index, (0.0, 0.0))
        return east + de, north + dn

    def localize(self, image_rgb: np.ndarray) -> Fix:
        index = decode_index(image_rgb)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls.append(index)
        if index in self.bad:
            raise BadImageError(f"frame {index} is unusable")
        east, north = self.estimate(index)
        lat, lon = (float(v) for v in self.tree.to_latlon(east, north))
        # the top hypothesis is the terminal cell containing the estimate, unless the offset
        # pushes it outside the root (then: no hypotheses)
        path = self.tree.try_path_of(lat, lon)
        hyps = ()
        if path is not None:
            ce, cn = self.tree.cell_center_local(path)
            clat, clon = (float(v) for v in self.tree.to_latlon(ce, cn))
            hyps = (Hypothesis(path, 1.0, 0.0, ce, cn, clat, clon),)
        cov = np.diag([self.sigma_m ** 2, (2 * self.sigma_m) ** 2, 100.0])
        status = FixStatus.NO_FIX if index in self.no_fix else FixStatus.FIX
        return Fix(status, lat, lon, 0.0, cov, 0.9, east, north, hyps,
                   "low confidence" if status == FixStatus.NO_FIX else "",
                   {"encoder": 1.0 + index, "decoder": 0.5})


def offsets_for(n: int) -> dict[int, tuple[float, float]]:
    """Deterministic, varied errors (metres East/North): 0 m to ~400 m."""
    return {i: (math.cos(i) * (i * 15.0) ** 1.05, math.sin(1.7 * i) * 10.0 * (i % 5))
            for i in range(n)}
