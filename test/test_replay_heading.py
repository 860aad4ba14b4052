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
A north-up model in bag replay: each frame is rotated by the bag's heading, as the node does.

The frames of a bag are turned by a camera that faced North, then East (the image's top
edge's ENU yaw comes on /imu): replay gives the turned frame with the East yaw exactly the
upright frame's fix, the same turned frame with the North yaw another one, and a frame with no
IMU sample within a second is skipped with the reason. Without a heading source a north-up
model is refused in one line; calibration on the bag reads the same headings.
"""
import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.evaluation.bag_heading import HeadingOptions
from jzi_ros.evaluation.replay import (labelled_frames, replay_bag, ReplayOptions,
                                       SKIP_BAD_IMAGE)
from jzi_ros.inference.localizer import Localizer, LocalizerConfig
from replay_support import BagSpec, T0, write_bag
from support import HEADING_SCENE, make_north_up_model

SCENE = HEADING_SCENE
TURNED = np.ascontiguousarray(np.rot90(SCENE, k=1))  # the camera faces East: North on the left
NORTH, EAST = 90.0, 0.0  # ENU yaw of the image's top edge


@pytest.fixture(scope="module")
def north_up(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay_heading")
    pyramid, path = make_north_up_model(root, "test_replay_heading")
    localizer = Localizer.from_paths(pyramid.path, path, LocalizerConfig(
        backend="torch", device="cpu", confidence_threshold=0.0))
    stamps = [T0 + i * 5 * 10**9 for i in range(4)]  # 5 s apart: one IMU sample each
    lat, lon = pyramid.tree.to_latlon(0.0, 0.0)
    spec = BagSpec(stamps, stamps, [SCENE, TURNED, TURNED, SCENE],
                   [(t, float(lat), float(lon), 0) for t in stamps],
                   imu=[(stamps[0], NORTH), (stamps[1], EAST), (stamps[2], NORTH)])
    return localizer, write_bag(root / "bag", spec)


def _options(heading=None):
    return ReplayOptions("/camera/image", "/gps/fix", progress=False, heading=heading)


def _probabilities(fix):
    return np.array([h.probability for h in fix.hypotheses])


def test_replay_rotates_a_north_up_models_frames_by_the_bags_imu(north_up):
    localizer, bag = north_up
    result = replay_bag(bag, localizer, _options(HeadingOptions("imu", imu_topic="/imu")))
    upright, turned, wrong, late = result.records
    assert not upright.skip and not turned.skip and not wrong.skip
    expected = localizer.localize(SCENE, heading_deg=0.0)  # compass 0: the top faces North
    assert (upright.fix.latitude, upright.fix.longitude) == (expected.latitude,
                                                             expected.longitude)
    # the East yaw turns the frame back: the upright frame's fix
    assert (turned.fix.latitude, turned.fix.longitude) == pytest.approx(
        (upright.fix.latitude, upright.fix.longitude), abs=1e-9)
    np.testing.assert_allclose(_probabilities(turned.fix), _probabilities(upright.fix),
                               rtol=1e-5, atol=1e-6)
    # the same turned frame with the North yaw is not turned back
    assert not np.allclose(_probabilities(wrong.fix), _probabilities(upright.fix), atol=1e-3)
    # no IMU sample within a second: skipped with the reason, never localized unrotated
    assert late.skip == SKIP_BAD_IMAGE and late.fix is None
    assert "no imu heading within 1 s" in late.detail
    # a fixed yaw (a gimballed camera) turns every frame alike; the camera yaw adds to it
    fixed = replay_bag(bag, localizer, _options(HeadingOptions("fixed", yaw_deg=NORTH)))
    assert [r.skip for r in fixed.records] == [""] * 4
    assert fixed.records[0].fix.latitude == upright.fix.latitude
    offset = replay_bag(bag, localizer, _options(HeadingOptions(
        "fixed", yaw_deg=NORTH - 90.0, camera_yaw_deg=90.0)))
    assert offset.records[0].fix.latitude == upright.fix.latitude


def test_a_north_up_model_without_a_heading_source_is_refused_in_one_line(north_up):
    localizer, bag = north_up
    for heading in (None, HeadingOptions("imu")):  # none, or imu without its topic
        with pytest.raises(JziError, match="north-up .* --heading-source imu --imu-topic"):
            replay_bag(bag, localizer, _options(heading))
    with pytest.raises(JziError, match="--camera-yaw-deg must be a finite angle"):
        replay_bag(bag, localizer, _options(HeadingOptions("fixed", camera_yaw_deg=float("nan"))))


def test_calibration_frames_carry_the_bags_headings(north_up):
    localizer, bag = north_up
    rows = list(labelled_frames(bag, localizer.tree, _options(HeadingOptions(
        "imu", imu_topic="/imu")), north_up=True))
    assert [row[3] for row in rows] == pytest.approx([0.0, 90.0, 0.0], abs=1e-9)  # no 4th
    assert [row[3] for row in labelled_frames(bag, localizer.tree, _options())] == [None] * 4


def test_the_frames_may_take_their_own_heading_source():
    """--frame-heading-source: a gimballed camera's fixed yaw; the odometry turns the twist."""
    from jzi_ros.cli import headingopts, replay as replay_cli
    from jzi_ros.cli.main import build_parser

    base = ["replay", "bag", "--map", "m", "--model", "c", "--image-topic", "/i", "--gt-topic",
            "/g", "--out", "o", "--fusion", "--odom-topic", "/odom"]
    args = build_parser().parse_args(base + ["--frame-heading-source", "fixed",
                                             "--heading-yaw-deg", "90"])
    frames = headingopts.heading_options(args)
    assert (frames.source, frames.yaw_deg) == ("fixed", 90.0)
    assert replay_cli._fusion_options(args).heading_source == "odometry"
    same = headingopts.heading_options(build_parser().parse_args(base))
    assert (same.source, same.odom_topic) == ("odometry", "/odom")


def test_frames_share_the_fusions_samples_only_when_they_read_the_same_ones():
    imu = HeadingOptions("imu", imu_topic="/imu", camera_yaw_deg=90.0)  # camera yaw: per frame
    assert imu.same_samples(HeadingOptions("imu", odom_topic="/odom", imu_topic="/imu"))
    assert not imu.same_samples(HeadingOptions("imu", imu_topic="/imu2"))
    assert not imu.same_samples(HeadingOptions("odometry", "/odom", "/imu"))
    assert not HeadingOptions("fixed", yaw_deg=90.0).same_samples(HeadingOptions("fixed"))
