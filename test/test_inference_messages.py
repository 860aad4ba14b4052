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

"""Message conversions, tested with rosbags message classes (same fields and constants as ROS)."""
import array
import math

import cv2
import numpy as np
import pytest
from rosbags import typesys as rosbags_typesys

from jzi_ros.errors import BadImageError, JziError
from jzi_ros.inference import messages as convert
from jzi_ros.inference.fix import Fix, FixStatus, Hypothesis

STORE = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_HUMBLE)
TYPES = convert.rosbags_message_types(STORE)
Image = STORE.types["sensor_msgs/msg/Image"]
CompressedImage = STORE.types["sensor_msgs/msg/CompressedImage"]
NavSatFix = STORE.types["sensor_msgs/msg/NavSatFix"]
NavSatStatus = STORE.types["sensor_msgs/msg/NavSatStatus"]
STAMP_NS = 1_700_000_123_456_789_012


def _header():
    return TYPES.Header(stamp=TYPES.Time(sec=1, nanosec=2), frame_id="camera")


def _rgb(h=5, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _image(pixels: np.ndarray, encoding: str, pad: int = 0, data=None, step=None):
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 99, np.uint8)], axis=1)
    return Image(header=_header(), height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=padded.shape[1] if step is None else step,
                 data=padded.reshape(-1) if data is None else data)


ENCODED = {
    "rgb8": lambda rgb: rgb,
    "bgr8": lambda rgb: rgb[..., ::-1],
    "8UC3": lambda rgb: rgb[..., ::-1],
    "rgba8": lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
    "bgra8": lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
}


@pytest.mark.parametrize("encoding", sorted(ENCODED))
@pytest.mark.parametrize("pad", [0, 5])
def test_colour_encodings_round_trip(encoding, pad):
    rgb = _rgb()
    out = convert.image_msg_to_rgb(_image(np.ascontiguousarray(ENCODED[encoding](rgb)),
                                          encoding, pad))
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("pad", [0, 3])
def test_mono8_becomes_grey_rgb(pad):
    grey = _rgb()[..., 0]
    out = convert.image_msg_to_rgb(_image(grey[..., None], "mono8", pad))
    assert out.shape == grey.shape + (3,)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_yuv422_uses_uyvy_order():
    # grey pixels: chroma bytes 128, luma (video range 16..235) in the odd bytes of UYVY
    luma = np.array([[16, 100, 200, 235]], np.uint8)
    uyvy = np.stack([np.full_like(luma, 128), luma], axis=-1)
    out = convert.image_msg_to_rgb(_image(uyvy, "yuv422"))
    for c in range(3):
        np.testing.assert_array_equal(out[0, :, c], [0, 98, 214, 255])
    yuyv = np.ascontiguousarray(uyvy[..., ::-1])
    np.testing.assert_array_equal(convert.image_msg_to_rgb(_image(yuyv, "yuv422_yuy2")), out)


def test_output_is_a_private_copy():
    rgb = _rgb()
    msg = _image(rgb, "rgb8")
    out = convert.image_msg_to_rgb(msg)
    msg.data[:] = 0
    np.testing.assert_array_equal(out, rgb)


def test_rclpy_style_buffers_are_accepted():
    rgb = _rgb()
    for data in (array.array("B", rgb.tobytes()), rgb.tobytes(), list(rgb.reshape(-1))):
        msg = _image(rgb, "rgb8", data=data)
        np.testing.assert_array_equal(convert.image_msg_to_rgb(msg), rgb)


@pytest.mark.parametrize("encoding", ["16UC1", "mono16", "32FC1", "bayer_rggb8", "jpeg", ""])
def test_unsupported_encodings_are_rejected_clearly(encoding):
    msg = _image(np.zeros((2, 2, 2), np.uint8), encoding)
    with pytest.raises(BadImageError, match="encoding") as err:
        convert.image_msg_to_rgb(msg)
    assert f"'{encoding}'" in str(err.value)
    assert isinstance(err.value, JziError) and "rgb8" in str(err.value)


def test_zero_size_is_rejected():
    msg = Image(header=_header(), height=0, width=4, encoding="rgb8", is_bigendian=0, step=12,
                data=np.zeros(0, np.uint8))
    with pytest.raises(BadImageError, match="empty"):
        convert.image_msg_to_rgb(msg)


def test_step_smaller_than_row_is_rejected():
    with pytest.raises(BadImageError, match="step 20 is smaller"):
        convert.image_msg_to_rgb(_image(_rgb(), "rgb8", step=20))


def test_data_length_mismatch_is_rejected():
    rgb = _rgb()
    with pytest.raises(BadImageError, match="expected step 21"):
        convert.image_msg_to_rgb(_image(rgb, "rgb8", data=rgb.reshape(-1)[:-1].copy()))


def test_odd_width_yuv_is_rejected():
    with pytest.raises(BadImageError, match="even width"):
        convert.image_msg_to_rgb(_image(np.zeros((2, 3, 2), np.uint8), "yuv422"))


def _compressed(data: bytes, fmt: str):
    return CompressedImage(header=_header(), format=fmt, data=np.frombuffer(data, np.uint8))


def test_compressed_png_is_lossless():
    rgb = _rgb(9, 11)
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    assert ok
    np.testing.assert_array_equal(convert.compressed_msg_to_rgb(_compressed(png.tobytes(),
                                                                            "png")), rgb)


def test_compressed_jpeg_keeps_colour_order():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 220  # strongly red: a swapped channel order would make it blue
    ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    out = convert.compressed_msg_to_rgb(_compressed(jpg.tobytes(), "rgb8; jpeg compressed bgr8"))
    assert out.shape == (16, 16, 3)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 20


def test_compressed_grey_and_alpha_images_become_rgb():
    grey = _rgb(6, 8)[..., 0]
    ok, png = cv2.imencode(".png", grey)
    assert ok
    out = convert.compressed_msg_to_rgb(_compressed(png.tobytes(), "png"))
    np.testing.assert_array_equal(out, np.dstack([grey] * 3))
    rgba = np.dstack([_rgb(6, 8), np.full((6, 8), 9, np.uint8)])
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    out = convert.compressed_msg_to_rgb(_compressed(png.tobytes(), "png"))
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_truncated_jpeg_is_rejected():
    ok, jpg = cv2.imencode(".jpg", _rgb(32, 32))
    with pytest.raises(BadImageError, match="could not be decoded"):
        convert.compressed_msg_to_rgb(_compressed(jpg.tobytes()[:40], "jpeg"))


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff garbage that is not a jpeg"])
def test_corrupt_compressed_is_rejected(data):
    with pytest.raises(BadImageError, match="CompressedImage"):
        convert.compressed_msg_to_rgb(_compressed(data, "jpeg"))


def test_compressed_depth_is_rejected():
    ok, png = cv2.imencode(".png", np.zeros((4, 4), np.uint16))
    with pytest.raises(BadImageError, match="depth"):
        convert.compressed_msg_to_rgb(_compressed(png.tobytes(), "16UC1; compressedDepth"))


# --------------------------------------------------------------------------- fixes

def _hyps():
    return (Hypothesis((1, 2), 0.75, -0.3, 10.0, -20.0, 47.0001, 8.0002),
            Hypothesis((1, 3), 0.25, -1.4, 30.0, -20.0, 47.0001, 8.0005))


def _fix(cov=None, status=FixStatus.FIX):
    cov = np.array([[25.0, 5.0, 0.0], [5.0, 16.0, 0.0], [0.0, 0.0, 400.0]]) if cov is None \
        else cov
    return Fix(status, 47.0, 8.0, 410.0, cov, 0.8, 12.5, -20.0, _hyps())


def _roundtrip(msg, msgtype):
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, msgtype), msgtype)


def test_navsatfix_fields_and_covariance_layout():
    msg = convert.fix_to_navsatfix(_fix(), STAMP_NS, "camera_link", TYPES)
    msg = _roundtrip(msg, "sensor_msgs/msg/NavSatFix")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_123, 456_789_012)
    assert msg.header.frame_id == "camera_link"
    assert msg.status.status == NavSatStatus.STATUS_FIX
    assert msg.status.service == convert.NAVSAT_SERVICE_NONE
    assert (msg.latitude, msg.longitude, msg.altitude) == (47.0, 8.0, 410.0)
    assert msg.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN
    cov = msg.position_covariance
    # row-major ENU: 0 var(E), 4 var(N), 8 var(U), 1 and 3 cov(E, N)
    assert (cov[0], cov[4], cov[8], cov[1], cov[3]) == (25.0, 16.0, 400.0, 5.0, 5.0)
    assert cov[2] == cov[5] == cov[6] == cov[7] == 0.0


def test_navsatfix_carries_the_fix_as_the_localizer_made_it():
    # no second floor or altitude here: a fix with a 0.1 m sigma is published with 0.1 m
    tiny = np.array([[0.01, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.5]])
    msg = convert.fix_to_navsatfix(_fix(tiny), STAMP_NS, "cam", TYPES,
                                   covariance_type="approximated")
    np.testing.assert_array_equal(np.asarray(msg.position_covariance).reshape(3, 3), tiny)
    assert msg.altitude == 410.0
    assert msg.position_covariance_type == NavSatFix.COVARIANCE_TYPE_APPROXIMATED
    with pytest.raises(ValueError, match="covariance_type"):
        convert.fix_to_navsatfix(_fix(), STAMP_NS, "cam", TYPES, covariance_type="diagonal")


def test_non_finite_values_are_never_put_in_a_message():
    fix = _fix()
    for name, value in (("altitude", float("nan")), ("latitude", float("inf"))):
        # Fix validates itself; a message built from a tampered one must still refuse
        bad = object.__new__(Fix)
        object.__setattr__(bad, "__dict__", dict(fix.__dict__, **{name: value}))
        with pytest.raises(ValueError, match="finite"):
            convert.fix_to_navsatfix(bad, STAMP_NS, "cam", TYPES)
    bad = object.__new__(Fix)
    cov = fix.covariance_enu.copy()
    cov[2, 2] = float("nan")
    object.__setattr__(bad, "__dict__", dict(fix.__dict__, covariance_enu=cov))
    with pytest.raises(ValueError, match="finite"):
        convert.fix_to_pose_with_covariance(bad, STAMP_NS, "jzi_map", TYPES)


def test_no_fix_is_explicit_and_finite():
    fix = Fix.no_fix("low confidence", 47.0, 8.0, 0.0, 1e10)
    msg = _roundtrip(convert.fix_to_navsatfix(fix, 5, "cam", TYPES),
                     "sensor_msgs/msg/NavSatFix")
    assert msg.status.status == NavSatStatus.STATUS_NO_FIX == -1
    numbers = [msg.latitude, msg.longitude, msg.altitude, *msg.position_covariance]
    assert all(math.isfinite(x) for x in numbers)
    assert msg.position_covariance[0] == 1e10
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 5)


def test_negative_stamp_is_refused():
    with pytest.raises(ValueError, match="stamp_ns"):
        convert.fix_to_navsatfix(_fix(), -1, "cam", TYPES)


def test_jazzy_typestore_works_too():
    jazzy = convert.rosbags_message_types(
        rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_JAZZY))
    msg = convert.fix_to_navsatfix(_fix(), STAMP_NS, "cam", jazzy)
    assert msg.status.status == 0


def test_pose_with_covariance_in_local_enu():
    msg = convert.fix_to_pose_with_covariance(_fix(), STAMP_NS, "jzi_map", TYPES)
    msg = _roundtrip(msg, "geometry_msgs/msg/PoseWithCovarianceStamped")
    assert msg.header.frame_id == "jzi_map"
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    assert (p.x, p.y, p.z) == (12.5, -20.0, 0.0) and (q.x, q.y, q.z, q.w) == (0, 0, 0, 1)
    cov = np.asarray(msg.pose.covariance).reshape(6, 6)
    assert (cov[0, 0], cov[1, 1], cov[0, 1], cov[1, 0], cov[2, 2]) == (25, 16, 5, 5, 400)
    assert cov[5, 5] == convert.UNKNOWN_ROTATION_VARIANCE
    assert np.all(np.isfinite(cov))


def test_hypotheses_cloud_packs_fields():
    fields = convert.cloud_fields(TYPES)
    assert [(f.name, f.offset, f.datatype, f.count) for f in fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("probability", 12, 7, 1)]
    data = convert.hypotheses_cloud_data(_hyps())
    points = np.frombuffer(data, "<f4").reshape(-1, 4)
    np.testing.assert_allclose(points, [[10, -20, 0, 0.75], [30, -20, 0, 0.25]])

    msg = convert.hypotheses_to_pointcloud2(_hyps(), STAMP_NS, "jzi_map", TYPES)
    msg = _roundtrip(msg, "sensor_msgs/msg/PointCloud2")
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 2, 16, 32)
    assert msg.is_bigendian is False and msg.header.frame_id == "jzi_map"
    assert bytes(msg.data) == data


def test_empty_hypotheses_cloud():
    msg = convert.hypotheses_to_pointcloud2((), 0, "jzi_map", TYPES)
    assert msg.width == 0 and msg.row_step == 0 and len(msg.data) == 0


@pytest.mark.parametrize("cov,match", [
    (np.diag([4.0, 9.0, 1.0]) + np.array([[0, 1e-3, 0], [0, 0, 0], [0, 0, 0]]), "symmetric"),
    (np.diag([4.0, 0.0, 1.0]), "diagonal"), (np.diag([4.0, np.nan, 1.0]), "non-finite")])
def test_a_fix_with_a_broken_covariance_is_refused(cov, match):
    with pytest.raises(JziError, match=match):
        Fix(FixStatus.FIX, 45.0, 7.0, 0.0, cov, 0.9)
    ok = np.diag([4.0, 9.0, 1.0]) + np.array([[0, 1e-9, 0], [0, 0, 0], [0, 0, 0]])
    assert Fix(FixStatus.FIX, 45.0, 7.0, 0.0, ok, 0.9).ok  # within np.allclose's tolerance


def test_a_fix_with_a_non_finite_number_names_it():
    with pytest.raises(JziError, match=r"non-finite values \{'north_m': nan\}"):
        Fix(FixStatus.FIX, 45.0, 7.0, 0.0, np.eye(3), 0.9, 1.0, float("nan"))
    with pytest.raises(JziError, match="non-finite values .'latitude': .*inf"):
        Fix(FixStatus.FIX, np.float64("inf"), 7.0, 0.0, np.eye(3), 0.9)
    assert Fix(0, 45.0, 7.0, 0.0, np.eye(3), 0.9).status is FixStatus.FIX  # an int status
