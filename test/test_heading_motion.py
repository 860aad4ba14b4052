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

"""Heading conventions (ENU) and odometry integration for the filter's motion."""
import math

import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree
from jzi_ros.heading import (body_to_en, check_enu_frame, compass_deg, north_up_rotation_deg,
                             yaw_from_compass, yaw_from_quaternion)
from jzi_ros.inference.bench_filter import simulated_steps
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.measurement import Measurement
from jzi_ros.inference.motion import HeadingSeries, OdometryTrack, OnlineFusion

S = 10**9


def _quat(yaw):
    return 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)


@pytest.mark.parametrize("yaw", [0.0, 0.3, math.pi / 2, -2.5, math.pi - 1e-6])
def test_yaw_round_trips_through_a_quaternion(yaw):
    assert yaw_from_quaternion(*_quat(yaw)) == pytest.approx(yaw, abs=1e-9)
    x, y, z, w = _quat(yaw)
    assert yaw_from_quaternion(2 * x, 2 * y, 2 * z, 2 * w) == pytest.approx(yaw, abs=1e-9)


def test_zero_quaternion_is_a_clear_error():
    with pytest.raises(JziError, match="no orientation"):
        yaw_from_quaternion(0.0, 0.0, 0.0, 0.0)


def test_enu_and_compass_conventions():
    assert compass_deg(math.pi / 2) == pytest.approx(0.0)  # facing North
    assert compass_deg(0.0) == pytest.approx(90.0)  # facing East
    assert yaw_from_compass(270.0) == pytest.approx(math.pi)  # West
    east, north = body_to_en(np.array([2.0]), np.array([0.0]), np.array([math.pi / 2]))
    assert (east[0], north[0]) == pytest.approx((0.0, 2.0))
    east, north = body_to_en(np.array([0.0]), np.array([1.0]), np.array([0.0]))
    assert (east[0], north[0]) == pytest.approx((0.0, 1.0))  # y left of an east-facing body
    assert north_up_rotation_deg(math.pi / 2) == pytest.approx(0.0)
    assert north_up_rotation_deg(0.0) == pytest.approx(-90.0)
    assert north_up_rotation_deg(math.pi) == pytest.approx(90.0)


@pytest.mark.parametrize("frame", ["odom_ned", "NED", "map_ned"])
def test_ned_frames_are_rejected_with_one_line(frame):
    with pytest.raises(JziError, match="ENU headings only"):
        check_enu_frame(frame, "odometry /odom")
    check_enu_frame("odom", "odometry /odom")


def test_odometry_integrates_twist_rotated_by_the_heading():
    track = OdometryTrack(HeadingSeries("odometry"))
    for i in range(11):  # 2 m/s forward, facing North, then East after 5 s
        track.add(i * S, 2.0, 0.0, math.pi / 2 if i < 5 else 0.0)
    assert track.displacement(0, 5 * S) == pytest.approx([0.0, 10.0])
    assert track.displacement(5 * S, 10 * S) == pytest.approx([10.0, 0.0])
    assert track.displacement(int(4.5 * S), int(5.5 * S)) == pytest.approx([1.0, 1.0])
    assert track.displacement(-S, S) is None  # no sample in force at the start
    assert track.displacement(10 * S, 14 * S) is None  # held longer than max_hold_s


def test_fixed_and_imu_headings():
    fixed = OdometryTrack(HeadingSeries("fixed", math.pi))
    for i in range(4):
        fixed.add(i * S, 1.0, 0.0)
    assert fixed.displacement(0, 3 * S) == pytest.approx([-3.0, 0.0])
    imu = OdometryTrack(HeadingSeries("imu"))
    for i in range(4):
        imu.add(i * S, 1.0, 0.0, yaw_rad=0.0)  # ignored: the IMU gives the heading
    assert imu.displacement(0, 3 * S) is None  # no IMU sample yet
    imu.heading.add(0, -math.pi / 2)
    assert imu.displacement(0, 3 * S) == pytest.approx([0.0, -3.0])
    with pytest.raises(JziError, match="heading source"):
        HeadingSeries("compass")


def test_frame_headings_take_the_nearest_sample_within_a_second():
    series = HeadingSeries("imu")
    assert series.compass_at(0) is None  # no sample yet
    # out of order, a repeated stamp (the first counts) and a gap
    for stamp, yaw_deg in ((2 * S, 0.0), (0, 90.0), (2 * S, 45.0), (5 * S, 180.0)):
        series.add(stamp, math.radians(yaw_deg))
    queries = [0, S, S + 1, 2 * S + S // 2, 3 * S + 1, 4 * S, 6 * S, 6 * S + 1]
    # compass = 90 - ENU yaw: North 0, East 90 (yaw 0), South 180 (yaw -90), West 270
    expected = [0.0, 0.0, 90.0, 90.0, None, 270.0, 270.0, None]
    got = series.compass_many(queries)
    assert [None if g is None else pytest.approx(g) for g in got] == expected
    assert [series.compass_at(q) for q in queries] == got
    # the camera's yaw on the body turns the image top: +90 (to the left) is 90 less compass
    assert series.compass_at(0, math.pi / 2) == pytest.approx(270.0)
    assert HeadingSeries("fixed", 0.0).compass_many([0, 99 * S]) == [90.0, 90.0]


def test_online_fusion_uses_odometry_and_survives_a_replayed_bag():
    tree = CellTree(45.0, 7.0, 2500.0, grid=4, depth=3)
    online = OnlineFusion(tree, FusionConfig(seed=1))
    rng = np.random.default_rng(0)
    errors = []
    for loop in range(2):  # the same bag played twice: time jumps back
        pos = np.array([-600.0, -400.0])
        for i in range(60):
            stamp = 10**18 + i * S
            for j in range(5):
                online.add_odometry(stamp + j * S // 5, 15.0, 0.0, math.radians(30))
            steps = simulated_steps(tree, *pos, bool(rng.uniform() < 0.5), rng)
            fix = online.fuse(stamp, Measurement.from_steps(tree, steps), 0.0, 100.0)
            assert np.all(np.isfinite(fix.covariance_enu)) and "filter" in fix.timings_ms
            if i == 0 and loop == 1:
                assert online.last_estimate.event.startswith("reset: time jumped back")
            errors.append(math.hypot(fix.east_m - pos[0], fix.north_m - pos[1]))
            pos = pos + 15.0 * np.array([math.cos(math.radians(30)), math.sin(math.radians(30))])
    errors = np.array(errors)
    assert np.median(errors[20:60]) < 40 and np.median(errors[80:]) < 40
