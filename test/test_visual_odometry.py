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

"""Visual odometry: a downward camera's frame-to-frame motion in East/North metres."""
import math

import cv2
import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree
from jzi_ros.inference.bench_filter import simulated_steps
from jzi_ros.inference.camera_pose import Intrinsics
from jzi_ros.inference.fusion import CellFilter
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.measurement import Measurement
from jzi_ros.inference.motion import OnlineFusion
from jzi_ros.inference.visual_odometry import (filter_config, ground_shift_px, VisualOdometry,
                                               VisualOdometryConfig)
from jzi_ros.maps.features import to_gray
from support import (camera_frame, DOWNWARD_HEIGHT_M, DOWNWARD_HFOV_DEG, DOWNWARD_SIZE,
                     ground_texture, tiny_tree)

T0 = 1_700_000_000 * 10**9
HFOV_DEG, HEIGHT_M, SIZE = DOWNWARD_HFOV_DEG, DOWNWARD_HEIGHT_M, DOWNWARD_SIZE


@pytest.fixture(scope="module")
def texture():
    return ground_texture()


def _odometry(**overrides) -> VisualOdometry:
    return VisualOdometry(VisualOdometryConfig(height_m=HEIGHT_M, hfov_deg=HFOV_DEG,
                                               **overrides))


@pytest.mark.parametrize("move", [(12.0, -7.0), (-20.0, 15.0), (0.0, 0.0)])
def test_a_north_up_cameras_move_comes_out_in_metres(texture, move):
    odometry = _odometry()
    assert odometry.add_frame(T0, camera_frame(texture, 30.0, 40.0), 0.0) is None  # first
    step = odometry.add_frame(T0 + 10**9, camera_frame(texture, 30.0 + move[0],
                                                       40.0 + move[1]), 0.0)
    assert step is not None and np.allclose(step, move, atol=0.6)
    assert np.array_equal(odometry.displacement(T0, T0 + 10**9), step)
    assert odometry.matched == odometry.tried == 1


@pytest.mark.parametrize("compass", [(90.0, 90.0), (0.0, 6.0), (200.0, 193.0)])
def test_a_turned_camera_is_turned_back_by_its_heading(texture, compass):
    """The image top's heading (and a turn between the frames) rotates the move to E/N."""
    odometry = _odometry()
    odometry.add_frame(T0, camera_frame(texture, 0.0, 0.0, compass[0]), compass[0])
    step = odometry.add_frame(T0 + 10**9, camera_frame(texture, 15.0, 9.0, compass[1]),
                              compass[1])
    assert step is not None and np.allclose(step, (15.0, 9.0), atol=1.0)


def test_the_cameras_scale_comes_from_the_field_of_view_or_its_intrinsics(texture):
    frames = [camera_frame(texture, 0.0, 0.0), camera_frame(texture, 18.0, 4.0)]
    by_matrix = VisualOdometry(VisualOdometryConfig(height_m=HEIGHT_M),
                               Intrinsics.from_hfov(SIZE[1], SIZE[0], HFOV_DEG))
    guessed = VisualOdometry(VisualOdometryConfig(height_m=HEIGHT_M))  # the 70 deg guess
    twice_as_high = VisualOdometry(VisualOdometryConfig(height_m=2 * HEIGHT_M,
                                                        hfov_deg=HFOV_DEG))
    steps = []
    for odometry in (by_matrix, guessed, twice_as_high):
        for i, frame in enumerate(frames):
            step = odometry.add_frame(T0 + i * 10**9, frame, 0.0)
        steps.append(step)
    assert np.allclose(steps[0], (18.0, 4.0), atol=0.6)
    assert np.allclose(steps[1], steps[0]) and guessed.guessed and not by_matrix.guessed
    assert np.allclose(steps[2], 2 * steps[0])  # flat ground at the given height: it scales


def test_pairs_that_cannot_be_matched_leave_the_interval_to_the_random_walk(texture):
    odometry = _odometry(max_gap_s=2.0)
    moving = [camera_frame(texture, 5.0 * i, 0.0) for i in range(5)]
    blank = np.full((*SIZE, 3), 128, np.uint8)
    second = 10**9
    assert odometry.add_frame(T0, moving[0], 0.0) is None
    assert odometry.add_frame(T0 + second, blank, 0.0) is None  # nothing to track
    assert odometry.add_frame(T0 + 2 * second, moving[1], 0.0) is None  # from the blank one
    # a pair is turned by its first frame's heading: a frame without one ends the chain there
    step = odometry.add_frame(T0 + 3 * second, moving[2], None)
    assert step is not None and np.allclose(step, (5.0, 0.0), atol=0.6)
    assert odometry.add_frame(T0 + 4 * second, moving[3], 0.0) is None
    assert odometry.add_frame(T0 + 7 * second, moving[4], 0.0) is None  # a 3 s gap
    assert odometry.add_frame(T0 + 6 * second, moving[3], 0.0) is None  # time went back
    step = odometry.add_frame(T0 + 7 * second, moving[4], 0.0)  # a new chain matches again
    assert step is not None and np.allclose(step, (5.0, 0.0), atol=0.6)
    small = camera_frame(texture, 0.0, 0.0)[:120, :160]
    assert odometry.add_frame(T0 + 8 * second, small, 0.0) is None  # the camera changed size
    assert odometry.displacement(T0, T0 + second) is None
    assert odometry.displacement(T0 + 6 * second, T0 + 8 * second) is None  # not consecutive
    assert (odometry.matched, odometry.tried) == (2, 5)
    assert np.allclose(odometry.displacement(T0 + 6 * second, T0 + 7 * second), (5.0, 0.0),
                       atol=0.6)
    odometry.forget_before(T0 + 8 * second)
    assert odometry.displacement(T0 + 6 * second, T0 + 7 * second) is None


@pytest.mark.parametrize("field, value", [("height_m", 0.0), ("hfov_deg", 180.0),
                                          ("match_px", 8), ("max_gap_s", float("nan"))])
def test_a_bad_setting_names_itself(field, value):
    with pytest.raises(JziError, match=field):
        VisualOdometryConfig(**{field: value})


def test_online_fusion_moves_by_the_frames_where_odometry_is_silent(texture, monkeypatch):
    online = OnlineFusion(tiny_tree(), FusionConfig(), use_odometry=False, visual=_odometry())
    given = []
    real_step = online.filter.step
    monkeypatch.setattr(online.filter, "step", lambda stamp, measurement, displacement, point:
                        given.append(displacement) or real_step(stamp, measurement,
                                                                displacement, point))
    fixes = [online.fuse(T0 + i * 10**9, None, 100.0, 10.0, None,
                         camera_frame(texture, 20.0 * i, -10.0 * i), 0.0) for i in range(3)]
    assert given[0] is None  # the first frame has nothing to move from
    assert all(np.allclose(d, (20.0, -10.0), atol=0.8) for d in given[1:])
    assert all("visual_odometry" in fix.timings_ms for fix in fixes)
    # odometry covering the interval wins over the frames
    online.use_odometry = True
    online.add_heading(T0, math.pi / 2)  # ENU yaw: North
    online.track.heading.source = "imu"
    online.add_odometry(T0 + 2 * 10**9, 3.0, 0.0, None)
    online.fuse(T0 + 3 * 10**9, None, 100.0, 10.0, None, camera_frame(texture, 60.0, -30.0),
                0.0)
    assert np.allclose(given[-1], (0.0, 3.0))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_filter_finds_the_scale_a_wrong_height_gave_the_displacements(seed):
    """Displacements 20 % short (the height guessed low): each particle's scale corrects it."""
    tree = CellTree(45.0, 7.0, 2500.0, grid=4, depth=3)
    rng = np.random.default_rng(seed)
    frames, pos, heading = [], np.array([-600.0, -400.0]), 0.5
    for i in range(150):
        heading += rng.normal(0, 0.04)
        step = 15 * np.array([math.cos(heading), math.sin(heading)])
        pos = np.clip(pos + step, -1150, 1150)
        measurement = Measurement.from_steps(tree, simulated_steps(tree, *pos,
                                                                   rng.uniform() < 0.4, rng))
        frames.append((T0 + i * 10**9, measurement, 0.8 * step, pos.copy()))
    shipped = FusionConfig().visual_scale_sigma
    errors, scales = {}, None
    for scale_sigma in (0.0, shipped):
        config = filter_config(FusionConfig(seed=seed, visual_scale_sigma=scale_sigma))
        cell_filter = CellFilter(tree, config)
        error = []
        for stamp, measurement, displacement, truth in frames:
            estimate = cell_filter.step(stamp, measurement, None if stamp == T0 else
                                        displacement)
            error.append(float(np.hypot(*(estimate.mean_en - truth))))
        errors[scale_sigma] = np.mean(error[75:])
        if scale_sigma:
            scales = cell_filter.mean_odometry_scale()
            assert scales == pytest.approx(cell_filter.odometry_scale @ cell_filter.weights)
        else:  # no such state for wheel odometry
            assert cell_filter.odometry_scale is None and cell_filter.mean_odometry_scale() is None
    assert scales == pytest.approx(1.25, abs=0.1)  # 1 / 0.8
    assert errors[shipped] < 0.7 * errors[0.0]


def test_a_camera_given_per_frame_size_is_asked_and_unknown_means_the_field_of_view(texture):
    """The node's CameraInfo: intrinsics_for(height, width), or JziError while none came."""
    asked = []

    def camera(height, width):
        asked.append((height, width))
        if len(asked) == 1:
            raise JziError("no CameraInfo yet")
        return Intrinsics.from_hfov(width, height, 2 * HFOV_DEG / 3)  # a narrower lens

    odometry = VisualOdometry(VisualOdometryConfig(height_m=HEIGHT_M, hfov_deg=HFOV_DEG),
                              camera)
    frames = [camera_frame(texture, 0.0, 0.0), camera_frame(texture, 18.0, 4.0)]
    odometry.add_frame(T0, frames[0], 0.0)  # no CameraInfo: the configured field of view
    step = odometry.add_frame(T0 + 10**9, frames[1], 0.0)
    assert asked == [SIZE, SIZE] and np.allclose(step, (18.0, 4.0), atol=0.6)
    odometry.add_frame(T0 + 2 * 10**9, frames[0], 0.0)  # the narrower lens: shorter steps
    narrow = Intrinsics.from_hfov(SIZE[1], SIZE[0], 2 * HFOV_DEG / 3).fx
    wide = Intrinsics.from_hfov(SIZE[1], SIZE[0], HFOV_DEG).fx
    assert np.allclose(odometry.displacement(T0 + 10**9, T0 + 2 * 10**9),
                       (-18.0 * wide / narrow, -4.0 * wide / narrow), atol=0.6)


def test_a_fit_that_zooms_the_ground_too_much_is_a_wrong_match_not_a_climb(texture):
    frame = to_gray(camera_frame(texture, 0.0, 0.0))
    rows, cols = frame.shape
    crop_r, crop_c = round(rows / 1.3), round(cols / 1.3)
    top, left = (rows - crop_r) // 2, (cols - crop_c) // 2
    zoomed = cv2.resize(frame[top:top + crop_r, left:left + crop_c], (cols, rows))  # 1.3x
    shift, inliers = ground_shift_px(frame, zoomed, VisualOdometryConfig())  # within 1.5x
    assert shift is not None and np.allclose(shift, 0.0, atol=1.0)  # (the crop rounds)
    strict = VisualOdometryConfig(max_scale_change=1.2)
    assert ground_shift_px(frame, zoomed, strict) == (None, inliers)
    with pytest.raises(JziError, match="max_scale_change"):
        VisualOdometryConfig(max_scale_change=1.0)
