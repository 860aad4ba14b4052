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
cv_bridge and rosbags-image give the node the same RGB array (needs a ROS 2 install).

The node converts with cv_bridge where it is installed and with rosbags-image elsewhere (pip
ROS, bag replay); a frame must localize the same either way. Skipped where cv_bridge is not
importable (it is not on PyPI): run it with ``colcon test`` on a ROS 2 machine.
"""
import cv2
import numpy as np
import pytest

from jzi_ros.errors import BadImageError
from jzi_ros.inference import messages

pytestmark = pytest.mark.ros
cv_bridge = pytest.importorskip("cv_bridge", reason="cv_bridge comes with a ROS 2 install")

RGB = np.random.default_rng(4).integers(0, 256, (6, 10, 3), dtype=np.uint8)
PIXELS = {
    "rgb8": RGB,
    "bgr8": RGB[..., ::-1],
    "rgba8": np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)]),
    "bgra8": np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)]),
    "mono8": RGB[..., :1],
    "8UC3": RGB[..., ::-1],
}


def _image(encoding, pixels, pad=0):
    from sensor_msgs.msg import Image

    rows = np.ascontiguousarray(pixels).reshape(pixels.shape[0], -1)
    rows = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
    return Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                 step=rows.shape[1], data=rows.tobytes())


@pytest.mark.parametrize("encoding", sorted(PIXELS))
@pytest.mark.parametrize("pad", [0, 6])
def test_raw_images_convert_alike(encoding, pad):
    from jzi_ros.ros.node import image_converter

    convert, which = image_converter("raw")
    assert which == "cv_bridge"
    msg = _image(encoding, PIXELS[encoding], pad)
    np.testing.assert_array_equal(convert(msg), messages.image_msg_to_rgb(msg))


def test_compressed_images_convert_alike_and_bad_ones_fail_alike():
    from sensor_msgs.msg import CompressedImage

    from jzi_ros.ros.node import image_converter

    convert, _ = image_converter("compressed")
    for ext in (".png", ".jpg"):
        ok, data = cv2.imencode(ext, RGB[..., ::-1])
        msg = CompressedImage(format=ext[1:], data=data.tobytes())
        np.testing.assert_array_equal(convert(msg), messages.compressed_msg_to_rgb(msg))
    bad = CompressedImage(format="jpeg", data=b"\xff\xd8\xff not a jpeg")
    for function in (convert, messages.compressed_msg_to_rgb):
        with pytest.raises(BadImageError):
            function(bad)
    raw, _ = image_converter("raw")
    with pytest.raises(BadImageError, match="16UC1"):
        raw(_image("16UC1", np.zeros((2, 2, 2), np.uint8)))
