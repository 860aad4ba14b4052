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

"""The demo camera: ground homography geometry and view rendering."""
import math

import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.training.camera import (CameraModel, CameraPose, footprint, ground_to_image,
                                     image_to_ground, project, render_view,
                                     rotation_world_to_camera)
from jzi_ros.training.render import degrade_frame, sample_pose, ViewSampling


def test_rotation_is_orthonormal_and_right_handed():
    for heading in (0, 37, 190, 359):
        for pitch in (30, 60, 90):
            R = rotation_world_to_camera(CameraPose(0, 0, 100, heading, pitch))
            np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
            assert np.linalg.det(R) == pytest.approx(1.0)


def test_point_below_camera_projects_to_image_centre_at_nadir():
    cam = CameraModel(320, 240, 70)
    pose = CameraPose(120.0, -45.0, 100.0, heading_deg=33.0, pitch_deg=90.0)
    px = project(cam, pose, [[120.0, -45.0]])[0]
    np.testing.assert_allclose(px, [(320 - 1) / 2, (240 - 1) / 2], atol=1e-9)


def test_nadir_footprint_matches_altitude_and_field_of_view():
    cam = CameraModel(400, 300, 60)
    pose = CameraPose(10.0, 20.0, 150.0, heading_deg=0.0, pitch_deg=90.0)
    corners = footprint(cam, pose)
    width = 2 * 150.0 * math.tan(math.radians(30))
    height = width * 300 / 400
    # heading 0 at nadir: image top is north, image right is east
    np.testing.assert_allclose(corners[0], [10 - width / 2, 20 + height / 2], atol=1e-6)
    np.testing.assert_allclose(corners[2], [10 + width / 2, 20 - height / 2], atol=1e-6)


def test_heading_rotates_the_view():
    cam = CameraModel(320, 240, 70)
    # Heading east at nadir: a point east of the camera appears above the centre.
    pose = CameraPose(0.0, 0.0, 100.0, heading_deg=90.0, pitch_deg=90.0)
    x, y = project(cam, pose, [[20.0, 0.0]])[0]
    assert x == pytest.approx((320 - 1) / 2, abs=1e-9)
    assert y < (240 - 1) / 2 - 10


def test_oblique_view_centre_ray_hits_ground_at_expected_distance():
    cam = CameraModel(320, 240, 70)
    pose = CameraPose(0.0, 0.0, 100.0, heading_deg=0.0, pitch_deg=60.0)
    centre = image_to_ground(cam, pose, [[(320 - 1) / 2, (240 - 1) / 2]])[0]
    np.testing.assert_allclose(centre, [0.0, 100.0 / math.tan(math.radians(60))], atol=1e-6)
    # farther ground (north) is higher in the image and compressed
    near, far = project(cam, pose, [[0.0, 40.0], [0.0, 100.0]])
    assert far[1] < near[1]


def test_projection_and_back_projection_are_inverse():
    rng = np.random.default_rng(0)
    cam = CameraModel(320, 240, 75)
    for _ in range(10):
        pose = CameraPose(*rng.uniform(-500, 500, 2), rng.uniform(50, 200),
                          rng.uniform(0, 360), rng.uniform(60, 90))
        pixels = rng.uniform([0, 0], [319, 239], size=(20, 2))
        np.testing.assert_allclose(project(cam, pose, image_to_ground(cam, pose, pixels)),
                                   pixels, atol=1e-6)


def test_pose_that_sees_the_horizon_is_rejected():
    cam = CameraModel(320, 240, 90)
    with pytest.raises(JziError, match="horizon"):
        ground_to_image(cam, CameraPose(0, 0, 100, 0, 30))
    with pytest.raises(JziError, match="altitude"):
        ground_to_image(cam, CameraPose(0, 0, -1, 0, 90))
    with pytest.raises(JziError, match="horizon"):
        ViewSampling(hfov_deg=(60, 90), pitch_deg=(20, 90))


def _marker_raster():
    """
    Return a 200 m x 200 m raster at 1 m/px, centred on the origin.

    It has a red square at east 30..40, north 10..20.
    """
    raster = np.zeros((200, 200, 3), np.uint8)
    raster[:] = (40, 120, 40)
    col0, row0 = 100 + 30, 100 - 20
    raster[row0:row0 + 10, col0:col0 + 10] = (255, 0, 0)
    to_local = np.array([[1.0, 0, -100.0], [0, -1.0, 100.0], [0, 0, 1.0]])
    return raster, to_local


@pytest.mark.parametrize("pose", [CameraPose(0, 0, 120, 0, 90), CameraPose(20, -30, 90, 18, 72),
                                  CameraPose(-10, 5, 150, 77, 65),
                                  CameraPose(60, 40, 110, 230, 80)])
def test_rendered_marker_appears_where_projection_says(pose):
    raster, to_local = _marker_raster()
    cam = CameraModel(320, 240, 70)
    image = render_view(raster, to_local, cam, pose)
    expected = project(cam, pose, [[35.0, 15.0]])[0]
    assert 20 < expected[0] < 300 and 20 < expected[1] < 220
    red = (image[..., 0] > 180) & (image[..., 1] < 80)
    assert red.sum() > 4
    ys, xs = np.nonzero(red)
    assert np.hypot(xs.mean() - expected[0], ys.mean() - expected[1]) < 1.5


def test_sampled_poses_stay_in_range_and_frames_keep_shape():
    rng = np.random.default_rng(1)
    sampling = ViewSampling(width=160, height=120)
    raster, to_local = _marker_raster()
    for _ in range(5):
        cam, pose = sample_pose(rng, sampling, 0.0, 0.0)
        assert 65 <= pose.pitch_deg <= 90 and 80 <= pose.altitude_m <= 150
        image = degrade_frame(render_view(raster, to_local, cam, pose), rng)
        assert image.shape == (120, 160, 3) and image.dtype == np.uint8
