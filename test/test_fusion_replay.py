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
from support import make_tiny_checkpoint, make_tiny_map, SyntheticWorld, world_of

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


@pytest.mark.slow
def test_replay_with_visual_odometry_adds_a_filter_moved_by_the_frames(tmp_path, capsys):
    pyramid = make_tiny_map(tmp_path)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid, sharpen=True)
    world = SyntheticWorld(pyramid.tree, 0, resolution=1024)  # the map's field, finer
    n, extent_m, size = 10, 600.0, (120, 160)
    # a 70 deg camera whose 160 px span 600 m of ground is this high above it
    height_m = extent_m / 2 / math.tan(math.radians(35.0))
    stamps = T0 + np.arange(n, dtype=np.int64) * 10**9
    track = np.stack([-300 + 20.0 * np.arange(n), np.full(n, 40.0)], axis=1)
    frames = [(int(s), world.ground_image(*p, extent_m=extent_m, size=size),
               (p[0], p[1], 100.0)) for s, p in zip(stamps, track)]
    bag = write_bag(tmp_path / "bag", pyramid.tree, frames)
    args = ["replay", str(bag), "--map", str(pyramid.path), "--model", str(ckpt),
            "--image-topic", IMAGE_TOPIC, "--gt-topic", GT_TOPIC, "--no-progress",
            "--backend", "torch", "--visual-odometry", "--hfov", "70",
            "--nominal-height", f"{height_m:.3f}", "--no-plots"]
    # the frames' heading turns their motion into East/North: without one, one line
    assert jzi_main.main(args + ["--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "visual odometry" in err and "--heading-source" in err
    out = tmp_path / "report"
    assert jzi_main.main(args + ["--out", str(out), "--heading-source", "fixed",
                                 "--heading-yaw-deg", "90"]) == 0  # a north-up gimbal
    assert "fused, visual odometry" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert set(report["fusion"]["runs"]) == {"single_frame", "fused_random_walk",
                                             "fused_visual"}
    visual = report["fusion"]["visual_odometry"]
    assert (visual["matched"], visual["tried"], visual["guessed_focal"]) == (n - 1, n - 1, False)
    assert visual["config"]["height_m"] == pytest.approx(height_m, abs=1e-3)
    assert visual["config"]["hfov_deg"] == 70.0 and visual["filter"]["scale_sigma"] > 0
    assert report["fusion"]["runs"]["fused_visual"]["all"]["count"] == n
    assert "Visual odometry matched 9 of 9" in (out / "report.md").read_text()
    assert f"scaled by a {height_m:.3f} m height" in (out / "report.md").read_text()


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


@pytest.mark.parametrize("map_sigma,override,used", [(3.0, None, 3.0), (3.0, 5.0, 5.0),
                                                     (None, None, 0.0)])
def test_replay_fusion_adds_the_maps_georef_sigma_as_refinement_does(tmp_path, map_sigma,
                                                                     override, used):
    """The filters learn the value refinement uses: the override, else the map's, else 0."""
    from dataclasses import replace
    from types import SimpleNamespace

    from replay_support import IndexLocalizer, standard_spec
    from replay_support import write_bag as write_spec_bag
    from support import tiny_tree

    from jzi_ros.evaluation.fusion_replay import (fusion_markdown, fusion_summary,
                                                  FusionOptions)
    from jzi_ros.evaluation.replay import replay_bag, ReplayOptions
    from jzi_ros.inference.fusion_config import FusionConfig

    class Refined(IndexLocalizer):
        """Every frame registered to 1 m, its covariance widened by the map's term."""

        def localize_measured(self, rgb):
            fix = self.localize(rgb)
            cov = fix.covariance_enu.copy()
            cov[:2, :2] = np.eye(2) * (1.0 + used ** 2)
            return replace(fix, covariance_enu=cov, refined=True, refinement="refined: test",
                           georef_sigma_m=used), None

    tree = tiny_tree()
    spec = standard_spec(tree, 20, corrupt=(), swap=None)
    bag = write_spec_bag(tmp_path / "bag", spec)
    localizer = Refined(tree, spec, {}, pyramid=SimpleNamespace(georef_sigma_m=map_sigma))
    fusion = FusionOptions(FusionConfig(seed=1), georef_sigma_m=override)
    result = replay_bag(bag, localizer, ReplayOptions("/camera/image", "/gps/fix",
                                                      progress=False, fusion=fusion))
    assert result.fusion_georef_sigma_m == used
    fixes = [f for f in result.fused["fused_random_walk_refined"] if f.ok]
    assert len(fixes) >= 15
    for fix in fixes:  # the belief's (>= the 2 m refined floor) + the map's term, once
        assert fix.georef_sigma_m == used
        assert np.linalg.eigvalsh(fix.covariance_enu[:2, :2])[0] >= 4.0 + used ** 2 - 1e-9
    # ... and not more than once: the sharpest is a ~2.1 m belief with the term added
    assert min(max(f.sigma_en_m) for f in fixes) < math.hypot(2.5, used)
    text = "\n".join(fusion_markdown(fusion_summary(result)))
    assert (f"georeferencing 1-sigma {used:g} m" in text) == bool(used)


def test_replay_georef_sigma_option_reaches_the_filters_and_is_checked_up_front():
    from jzi_ros.cli.main import parse
    from jzi_ros.cli.replay import _fusion_options
    from jzi_ros.errors import JziError

    argv = ["replay", "BAG", "--map", "M", "--model", "C", "--image-topic", "I",
            "--gt-topic", "G", "--out", "O", "--fusion"]
    assert _fusion_options(parse(argv)).georef_sigma_m is None  # the map's, as refinement's
    assert _fusion_options(parse(argv + ["--georef-sigma-m", "7.5"])).georef_sigma_m == 7.5
    with pytest.raises(JziError, match="refine.georef_sigma_m"):  # before any frame
        _fusion_options(parse(argv + ["--georef-sigma-m", "-1"]))
