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

"""`jzi replay --fusion` end to end: tiny model, a bag with odometry, played twice."""
import json
import math

import numpy as np
import pytest

from jzi_ros.cli import main as jzi_main
from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC, write_bag
from jzi_ros.demo.odometry import ODOM_TOPIC, simulate
from support import make_tiny_checkpoint, make_tiny_map, world_of

T0 = 1_700_000_000 * 10**9


@pytest.mark.slow
def test_replay_with_fusion_reports_single_and_fused_side_by_side(tmp_path, capsys):
    pyramid = make_tiny_map(tmp_path)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid, sharpen=True)
    world = world_of(pyramid)
    n = 12
    stamps = T0 + np.arange(n, dtype=np.int64) * 10**9
    track = np.stack([-300 + 20.0 * np.arange(n), 50 * np.sin(np.arange(n) / 3)], axis=1)
    frames = [(int(s), world.ground_image(*p), (p[0], p[1], 100.0))
              for s, p in zip(stamps, track)]
    odometry = simulate(0, track, stamps)
    # the flight twice with the same stamps: a looped bag must not crash the filter
    bag = write_bag(tmp_path / "bag", pyramid.tree, frames + frames,
                    odometry=odometry + odometry)
    out = tmp_path / "report"
    rc = jzi_main.main(["replay", str(bag), "--map", str(pyramid.path), "--model", str(ckpt),
                        "--image-topic", IMAGE_TOPIC, "--gt-topic", GT_TOPIC, "--out", str(out),
                        "--no-progress", "--backend", "torch", "--fusion",
                        "--odom-topic", ODOM_TOPIC])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "fused, random walk" in printed and "fused, odometry" in printed
    report = json.loads((out / "report.json").read_text())
    runs = report["fusion"]["runs"]
    assert set(runs) == {"single_frame", "fused_random_walk", "fused_odometry"}
    for row in runs.values():
        assert row["all"]["count"] == 2 * n
        assert all(math.isfinite(v) for v in row["all"]["recall"].values())
        assert 0.0 <= row["fix_fraction"] <= 1.0
    # the single-frame row scores the same estimates as the report's own fix block
    assert runs["single_frame"]["fix"]["median_m"] == pytest.approx(report["fix"]["median_m"])
    assert runs["fused_odometry"]["filter_ms_median"] > 0
    assert report["fusion"]["config"]["particles"] > 0
    assert "Temporal fusion" in (out / "report.md").read_text()
    assert (out / "fusion_tracks.png").stat().st_size > 1000


def test_fusion_flags_without_odometry_topic_in_the_bag_are_a_clear_error(tmp_path, capsys):
    pyramid = make_tiny_map(tmp_path)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid)
    world = world_of(pyramid)
    frames = [(T0 + i * 10**9, world.ground_image(0.0, 0.0), (0.0, 0.0, 100.0))
              for i in range(3)]
    bag = write_bag(tmp_path / "bag", pyramid.tree, frames)
    rc = jzi_main.main(["replay", str(bag), "--map", str(pyramid.path), "--model", str(ckpt),
                        "--image-topic", IMAGE_TOPIC, "--gt-topic", GT_TOPIC,
                        "--out", str(tmp_path / "r"), "--no-progress", "--backend", "torch",
                        "--fusion", "--odom-topic", "/wheel/odom"])
    assert rc == 2
    assert "/wheel/odom" in capsys.readouterr().err


@pytest.mark.slow
def test_replay_with_refinement_fuses_the_refined_fixes(tmp_path, capsys):
    """``--method refine --fusion``: the filters run on the zoom alone and with refined fixes."""
    from test_refine import build, source_to_local, texture, TREE

    from jzi_ros.maps.pyramid import MapPyramid
    from jzi_ros.training.camera import CameraModel, CameraPose, render_view

    image = texture(800)
    map_dir = build(tmp_path, image, "map")
    ckpt = make_tiny_checkpoint(tmp_path, MapPyramid.open(map_dir))  # a random zoom
    camera = CameraModel(320, 240, 60.0)
    n = 8
    track = np.stack([-40 + 10.0 * np.arange(n), 20 - 5.0 * np.arange(n)], axis=1)
    frames = [(T0 + i * 10**9, render_view(image, source_to_local(), camera, CameraPose(
        east, north, 200.0, heading_deg=30.0 + 5 * i, pitch_deg=80.0)), (east, north, 200.0))
        for i, (east, north) in enumerate(track)]
    bag = write_bag(tmp_path / "bag", TREE, frames)
    out = tmp_path / "report"
    rc = jzi_main.main(["replay", str(bag), "--map", str(map_dir), "--model", str(ckpt),
                        "--image-topic", IMAGE_TOPIC, "--gt-topic", GT_TOPIC, "--out", str(out),
                        "--no-progress", "--no-plots", "--backend", "torch", "--fusion",
                        "--method", "refine", "--hfov", "60", "--nominal-height", "400"])
    assert rc == 0
    assert "fused + refined fixes, random walk" in capsys.readouterr().out
    runs = json.loads((out / "report.json").read_text())["fusion"]["runs"]
    assert set(runs) == {"single_frame", "fused_random_walk", "fused_random_walk_refined"}
    refined = runs["fused_random_walk_refined"]
    assert refined["all"]["count"] == n
    # every frame is refined to within metres; the filter fed with them stays there, the
    # same filter on the random zoom's cells alone does not come near
    assert runs["single_frame"]["all"]["median_m"] < 5.0
    assert refined["all"]["median_m"] < 5.0
    assert refined["fix_fraction"] == 1.0 and refined["fix"]["recall"]["25"] == 1.0
    assert runs["fused_random_walk"]["all"]["median_m"] > 20.0
    assert 0 < refined["calibration"]["mean_nees"] < 6.0
