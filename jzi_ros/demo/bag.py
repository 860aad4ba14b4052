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
The demo bag: JPEG camera frames and ground-truth fixes, written with rosbags (no ROS 2).

Version-8 mcap bags, so that Humble's ``ros2 bag play`` opens them as well as Jazzy's.
Ground truth uses the same NavSatFix conversion the node publishes with
(:func:`jzi_ros.inference.messages.fix_to_navsatfix`), from a :class:`Fix` at the true position.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_directory
from jzi_ros.geo import CellTree
from jzi_ros.inference.fix import Fix, FixStatus

IMAGE_BASE_TOPIC = "/camera/image_raw"  # image_transport base; the node: transport compressed
IMAGE_TOPIC = IMAGE_BASE_TOPIC + "/compressed"
GT_TOPIC = "/ground_truth/fix"
CAMERA_FRAME = "camera"
GT_FRAME = "gps"
GT_SIGMA_M = 0.5  # the simulated ground truth is exact; a small sigma keeps it plausible
IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
NAVSAT_TYPE = "sensor_msgs/msg/NavSatFix"


def truth_fix(tree: CellTree, east_m: float, north_m: float, altitude_m: float) -> Fix:
    """Return a Fix at a known local position (what a perfect GNSS receiver would report)."""
    lat, lon = tree.to_latlon(east_m, north_m)
    cov = np.diag([GT_SIGMA_M ** 2, GT_SIGMA_M ** 2, (2 * GT_SIGMA_M) ** 2])
    return Fix(FixStatus.FIX, float(lat), float(lon), float(altitude_m), cov, 1.0,
               float(east_m), float(north_m))


def encode_jpeg(image_rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise JziError(f"could not JPEG-encode a frame of shape {image_rgb.shape}")
    return data.tobytes()


def write_bag(path: str | os.PathLike, tree: CellTree,
              frames: Iterable[tuple[int, np.ndarray, tuple[float, float, float]]],
              overwrite: bool = False, jpeg_quality: int = 85,
              odometry: Sequence[Any] = ()) -> Path:
    """
    Write ``(stamp_ns, image_rgb, (east, north, altitude))`` frames as an mcap bag.

    Each frame gives one CompressedImage on :data:`IMAGE_TOPIC` and one NavSatFix on
    :data:`GT_TOPIC` with the same header stamp (recorded at that time, too). ``odometry``
    (:class:`jzi_ros.demo.odometry.OdometrySample`) goes on ``/odom`` as nav_msgs/Odometry.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores

    from jzi_ros.inference.messages import fix_to_navsatfix, make_header, rosbags_message_types

    store = get_typestore(Stores.ROS2_HUMBLE)
    types = rosbags_message_types(store)
    compressed = store.types[IMAGE_TYPE]
    path = Path(path)
    count = 0
    with atomic_directory(path, overwrite) as tmp:
        # rosbags' Writer creates the bag directory itself and names the storage file after
        # it: write under the final name inside the staging directory, then move it up.
        inner = tmp / path.name
        with Writer(inner, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
            images = writer.add_connection(IMAGE_TOPIC, IMAGE_TYPE, typestore=store)
            fixes = writer.add_connection(GT_TOPIC, NAVSAT_TYPE, typestore=store)
            if odometry:
                from jzi_ros.demo.odometry import ODOM_TOPIC, ODOM_TYPE, odometry_message

                odom = writer.add_connection(ODOM_TOPIC, ODOM_TYPE, typestore=store)
                for sample in odometry:
                    writer.write(odom, sample.stamp_ns, store.serialize_cdr(
                        odometry_message(store, types, sample), ODOM_TYPE))
            for stamp_ns, image, (east, north, altitude) in frames:
                stamp_ns = int(stamp_ns)
                msg = compressed(header=make_header(stamp_ns, CAMERA_FRAME, types),
                                 format="jpeg",
                                 data=np.frombuffer(encode_jpeg(image, jpeg_quality), np.uint8))
                writer.write(images, stamp_ns, store.serialize_cdr(msg, IMAGE_TYPE))
                fix = fix_to_navsatfix(truth_fix(tree, east, north, altitude), stamp_ns,
                                       GT_FRAME, types)
                writer.write(fixes, stamp_ns, store.serialize_cdr(fix, NAVSAT_TYPE))
                count += 1
        if count == 0:
            raise JziError(f"bag {path}: no frames to write")
        for item in inner.iterdir():
            os.replace(item, tmp / item.name)
        inner.rmdir()
    return path
