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

"""Refinement after the zoom, map imagery on board, and the classical baseline."""
from __future__ import annotations

from dataclasses import replace
import json
import logging
import math
from pathlib import Path
import shutil

import cv2
import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.evaluation.classical import ClassicalLocalizer, format_methods, method_summary
from jzi_ros.geo import CellTree
from jzi_ros.inference.camera_pose import fit_frame, Intrinsics, pose_from_homography
from jzi_ros.inference.fix import Fix, FixStatus, Hypothesis
from jzi_ros.inference.refine import RefineConfig, Refiner, RefiningLocalizer
from jzi_ros.maps.imagery import FEATURES, IMAGERY, imagery_summary, MapImagery
from jzi_ros.training.camera import CameraModel, CameraPose, ground_to_image, render_view

TREE = CellTree(40.0, -83.0, 640.0, grid=4, depth=2)
HALF_SRC_M = 400.0  # the source raster covers +-400 m around the root centre at 1 m/px
CAMERA = CameraModel(320, 240, 70.0)
CONFIG = RefineConfig(nominal_height_m=150.0)


def texture(size: int, seed: int = 0) -> np.ndarray:
    """Return a feature-rich RGB raster: coloured noise summed over four scales."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.float32)
    for sigma, amplitude in ((24, 36), (8, 27), (3, 21), (1, 12)):
        layer = cv2.GaussianBlur(rng.standard_normal((size, size, 3)).astype(np.float32),
                                 (0, 0), sigma)
        image += amplitude * layer / layer.std()
    return np.clip(image + 128, 0, 255).astype(np.uint8)


def write_source(path: Path, image: np.ndarray) -> Path:
    import rasterio
    from rasterio.transform import Affine

    from jzi_ros.maps.build import tree_crs

    size = image.shape[0]
    res = 2 * HALF_SRC_M / size
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3,
                       dtype="uint8", crs=tree_crs(TREE),
                       transform=Affine(res, 0, -HALF_SRC_M, 0, -res, HALF_SRC_M)) as dst:
        dst.write(np.moveaxis(image, -1, 0))
    return path


def build(tmp: Path, image: np.ndarray, name: str) -> Path:
    from jzi_ros.maps.build import build_pyramid

    source = write_source(tmp / f"{name}.tif", image)
    build_pyramid(source, tmp / name, TREE, tile_px=32, progress=False)
    return tmp / name


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(map dir, source image): a textured map with imagery and a feature index."""
    tmp = tmp_path_factory.mktemp("refine")
    image = texture(800)
    return build(tmp, image, "map"), image


def source_to_local() -> np.ndarray:
    return np.array([[1.0, 0, -HALF_SRC_M], [0, -1.0, HALF_SRC_M], [0, 0, 1]])


def view(image: np.ndarray, pose: CameraPose) -> np.ndarray:
    return render_view(image, source_to_local(), CAMERA, pose)


def intrinsics(camera: CameraModel = CAMERA) -> Intrinsics:
    return Intrinsics.from_matrix(camera.K())


def zoom_fix(east: float, north: float, extra: tuple[tuple[float, float], ...] = ()) -> Fix:
    """Return a zoom FIX at the centre of the terminal cell containing (east, north)."""
    hypotheses = []
    for k, (e, n) in enumerate(((east, north),) + extra):
        path = TREE.path_of_local(e, n)
        ce, cn = TREE.cell_center_local(path)
        lat, lon = TREE.to_latlon(ce, cn)
        hypotheses.append(Hypothesis(path, 1.0 / (k + 1), -k, ce, cn, float(lat), float(lon)))
    top = hypotheses[0]
    return Fix(FixStatus.FIX, top.latitude, top.longitude, 0.0, np.diag([400.0, 400.0, 1e4]),
               0.8, top.east_m, top.north_m, tuple(hypotheses), "", {"total": 1.0})


def test_pose_from_exact_homography():
    pose = CameraPose(12.0, -30.0, 180.0, heading_deg=37.0, pitch_deg=80.0)
    to_ground = np.linalg.inv(ground_to_image(CAMERA, pose))
    got = pose_from_homography(to_ground / to_ground[2, 2], intrinsics())
    assert got.east_m == pytest.approx(12.0, abs=1e-6)
    assert got.north_m == pytest.approx(-30.0, abs=1e-6)
    assert got.height_m == pytest.approx(180.0, abs=1e-6)
    assert got.heading_deg == pytest.approx(37.0, abs=1e-6)
    assert got.tilt_deg == pytest.approx(10.0, abs=1e-6)
    assert got.skew < 1e-9


def test_wrong_focal_shows_as_skew_on_an_oblique_view():
    pose = CameraPose(0.0, 0.0, 150.0, heading_deg=20.0, pitch_deg=60.0)
    to_ground = np.linalg.inv(ground_to_image(CAMERA, pose))
    guess = Intrinsics.from_hfov(320, 240, 25.0)
    assert pose_from_homography(to_ground, guess).skew > CONFIG.max_skew


def test_intrinsics_and_config_are_validated():
    assert Intrinsics.from_matrix(CAMERA.K()).fx == pytest.approx(CAMERA.focal_px)
    with pytest.raises(JziError, match="fx"):
        Intrinsics(float("nan"), 1.0, 0.0, 0.0)
    with pytest.raises(JziError, match="9 numbers"):
        Intrinsics.from_matrix([1.0, 2.0])
    with pytest.raises(JziError, match="refine.min_inliers"):
        RefineConfig(min_inliers=2)
    with pytest.raises(JziError, match="refine.detector"):
        RefineConfig(detector="akaze")
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(JziError, match="refine.georef_sigma_m"):
            RefineConfig(georef_sigma_m=bad)


def test_map_build_writes_imagery_read_by_window(world):
    map_dir, image = world
    assert (map_dir / IMAGERY).is_file() and (map_dir / FEATURES).is_file()
    assert "imagery.tif" in imagery_summary(map_dir)
    imagery = MapImagery.open_in(map_dir)
    try:
        assert imagery.m_per_px == pytest.approx(1.0)
        window = imagery.read((-50.0, -20.0, 30.0, 40.0), 1.0)
        assert window.rgb.shape == (60, 80, 3) and window.valid.all()
        # the window's top-left pixel centre maps to the source pixel at the same place
        e, n = window.pixel_to_local()[:2, 2]
        col, row = int(e + HALF_SRC_M), int(HALF_SRC_M - n)
        diff = np.abs(window.rgb[0, 0].astype(int) - image[row, col].astype(int))
        assert diff.max() < 40  # JPEG-compressed
        outside = imagery.read((300.0, 300.0, 400.0, 400.0), 2.0)
        assert outside.valid[-1, 0] and not outside.valid[0, -1]  # root edge: 320 m
    finally:
        imagery.close()


@pytest.mark.parametrize("source", ["window", "index", "shrunk"])
def test_refinement_recovers_nadir_height_and_heading(world, source, monkeypatch):
    map_dir, image = world
    pose = CameraPose(23.0, -41.0, 150.0, heading_deg=130.0, pitch_deg=78.0)
    # the index (1 m/px) serves frames of about its ground sampling; finer ones (0.66 m/px)
    # are shrunk to it, or read a window at their own sampling when the index is not used
    nominal = CAMERA.focal_px if source == "index" else 150.0
    refiner = Refiner.for_map(map_dir, replace(CONFIG, nominal_height_m=nominal,
                                               use_index=source != "window"))
    shrink = []
    monkeypatch.setattr("jzi_ros.inference.refine.fit_frame", lambda im, K, px, _f=fit_frame: (
        shrink.append(px), _f(im, K, px))[1])
    reads = []
    monkeypatch.setattr(refiner.imagery, "read", lambda *a, _r=refiner.imagery.read: (
        reads.append(a), _r(*a))[1])
    fix = refiner.refine(view(image, pose), zoom_fix(pose.east_m + 15, pose.north_m - 10),
                         intrinsics())
    assert fix.refined, fix.refinement
    assert math.hypot(fix.east_m - pose.east_m, fix.north_m - pose.north_m) < 2.0
    assert "height 150 m" in fix.refinement and "heading 130 deg" in fix.refinement, fix.refinement
    lat, lon = TREE.to_latlon(fix.east_m, fix.north_m)
    assert (fix.latitude, fix.longitude) == pytest.approx((lat, lon))
    sigma = np.sqrt(np.diag(fix.covariance_enu))
    assert np.all(np.isfinite(fix.covariance_enu))
    assert CONFIG.sigma_floor_m <= sigma[0] < 5.0
    assert fix.timings_ms["refine"] > 0 and fix.timings_ms["total"] > fix.timings_ms["refine"]
    assert bool(reads) == (source == "window")
    assert shrink[1:] == ([math.floor(320 * 150.0 / CAMERA.focal_px)] if source == "shrunk"
                          else [])


def test_second_cell_is_tried_when_the_first_is_wrong(world):
    map_dir, image = world
    pose = CameraPose(-60.0, 70.0, 140.0, heading_deg=300.0, pitch_deg=85.0)
    wrong = (250.0, -250.0)
    fix = zoom_fix(*wrong, extra=((pose.east_m, pose.north_m),))
    out = Refiner.for_map(map_dir, CONFIG).refine(view(image, pose), fix, intrinsics())
    assert out.refined, out.refinement
    assert math.hypot(out.east_m - pose.east_m, out.north_m - pose.north_m) < 2.0


def test_global_fallback_registers_a_frame_whose_every_zoom_cell_is_wrong(world):
    map_dir, image = world
    pose = CameraPose(-60.0, 70.0, 140.0, heading_deg=300.0, pitch_deg=85.0)
    frame, fix = view(image, pose), zoom_fix(250.0, -250.0)  # the zoom went elsewhere
    local = Refiner.for_map(map_dir, CONFIG).refine(frame, fix, intrinsics())
    assert not local.refined and "whole map" not in local.refinement
    fallback = Refiner.for_map(map_dir, replace(CONFIG, global_fallback=True))
    out = fallback.refine(frame, fix, intrinsics())
    assert out.refined and out.refinement.startswith("refined (whole map): "), out.refinement
    assert math.hypot(out.east_m - pose.east_m, out.north_m - pose.north_m) < 2.0
    assert out.status == FixStatus.FIX and np.all(np.isfinite(out.covariance_enu))
    # imagery the map does not hold: the zoom's fix, with both searches' reasons
    other = view(texture(800, seed=5), pose)
    missed = fallback.refine(other, fix, intrinsics())
    assert not missed.refined and "; whole map: " in missed.refinement, missed.refinement
    assert (missed.east_m, missed.north_m) == (fix.east_m, fix.north_m)
    # a frame the zoom's cells already explain never reaches the whole-map search
    near = fallback.refine(frame, zoom_fix(pose.east_m, pose.north_m), intrinsics())
    assert near.refinement.startswith("refined: ")


def test_global_fallback_from_the_cli_and_the_node_parameter():
    import argparse

    from jzi_ros.cli import refineopts
    from jzi_ros.ros.params import refine_config

    parser = argparse.ArgumentParser()
    refineopts.add_arguments(parser)
    assert not refineopts.refine_config(parser.parse_args([])).global_fallback
    assert refineopts.refine_config(parser.parse_args(["--global-fallback"])).global_fallback
    assert not refine_config({}).global_fallback
    assert refine_config({"refine.global_fallback": True}).global_fallback
    with pytest.raises(JziError, match="refine.global_fallback"):
        RefineConfig(global_fallback="yes")


@pytest.mark.parametrize("case", ["blank frame", "wrong cell", "wrong intrinsics", "no fix"])
def test_bad_input_keeps_the_zoom_fix_with_a_reason(world, case):
    map_dir, image = world
    pose = CameraPose(10.0, 5.0, 150.0, heading_deg=45.0, pitch_deg=60.0)
    frame = view(image, pose)
    fix = zoom_fix(pose.east_m, pose.north_m)
    K = intrinsics()
    if case == "blank frame":
        frame = np.full_like(frame, 128)
    elif case == "wrong cell":
        fix = zoom_fix(-280.0, -280.0)
    elif case == "wrong intrinsics":
        K = Intrinsics.from_hfov(320, 240, 25.0)
    elif case == "no fix":
        fix = Fix.no_fix("inference failed", fix.latitude, fix.longitude, 0.0, 1e6)
    out = Refiner.for_map(map_dir, CONFIG).refine(frame, fix, K)
    assert not out.refined
    assert out.refinement.startswith("not refined: ") and len(out.refinement) > 20
    assert (out.east_m, out.north_m, out.status) == (fix.east_m, fix.north_m, fix.status)
    np.testing.assert_array_equal(out.covariance_enu, fix.covariance_enu)
    expected = {"blank frame": "features", "wrong cell": "", "wrong intrinsics": "",
                "no fix": "no cells (inference failed)"}[case]
    assert expected in out.refinement


def test_textureless_map_region_is_not_refined(tmp_path):
    flat = np.full((400, 400, 3), 90, np.uint8)
    map_dir = build(tmp_path, flat, "flat")
    frame = texture(240)[:, :, :][:240, :240]
    frame = cv2.resize(frame, (320, 240))
    out = Refiner.for_map(map_dir, CONFIG).refine(frame, zoom_fix(0.0, 0.0), intrinsics())
    assert not out.refined and "textureless" in out.refinement


def test_map_without_imagery_turns_refinement_off_with_one_line(world, tmp_path, caplog):
    import shutil

    map_dir, image = world
    old = tmp_path / "old"
    shutil.copytree(map_dir, old)
    (old / IMAGERY).unlink()
    with caplog.at_level(logging.WARNING):
        assert Refiner.for_map(old, CONFIG) is None
    lines = [r.getMessage() for r in caplog.records if "refinement is off" in r.getMessage()]
    assert len(lines) == 1 and "jzi map build" in lines[0]
    assert "none" in imagery_summary(old)

    class Zoom:
        tree, backend_name = TREE, "stub"

        def localize(self, image_rgb):
            return zoom_fix(0.0, 0.0)
    out = RefiningLocalizer(Zoom(), None).localize(np.zeros((240, 320, 3), np.uint8))
    assert out.ok and not out.refined and "no imagery" in out.refinement


def test_classical_baseline_localizes_without_the_zoom(world):
    map_dir, image = world
    classical = ClassicalLocalizer(map_dir, CONFIG)
    pose = CameraPose(-35.0, 52.0, 160.0, heading_deg=200.0, pitch_deg=82.0)
    fix = classical.localize(view(image, pose), intrinsics())
    assert fix.ok and fix.refined, fix.reason
    assert math.hypot(fix.east_m - pose.east_m, fix.north_m - pose.north_m) < 3.0
    blank = classical.localize(np.zeros((240, 320, 3), np.uint8), intrinsics())
    assert blank.status == FixStatus.NO_FIX and "classical registration" in blank.reason
    assert np.all(np.isfinite(blank.covariance_enu))


def test_classical_refuses_an_index_of_another_detector(world):
    with pytest.raises(JziError, match="--detector sift"):
        ClassicalLocalizer(world[0], RefineConfig(detector="orb"))


def test_method_summary_counts_over_all_frames():
    errors = [3.0, 8.0, 60.0, 1000.0]
    row = method_summary(errors, [True, True, True, False], [10.0, 20.0, 30.0, 40.0],
                         refined=[True, False, True, False])
    assert row["recall"]["5"] == 0.25 and row["recall"]["10"] == 0.5
    assert row["recall"]["100"] == 0.75
    assert row["median_m"] == 8.0 and row["fix_rate"] == 0.75
    assert row["false_fix_rate"] == 0.25
    assert row["acceptance_rate"] == 0.5 and row["false_acceptance_rate"] == 0.25
    assert row["accepted_median_m"] == pytest.approx(31.5)
    table = format_methods({"zoom + refine": row})
    assert "| zoom + refine | 4 | 25.0 %" in table


def test_missing_intrinsics_are_guessed_with_one_warning(world, caplog):
    frame = np.zeros((240, 320, 3), np.uint8)
    with caplog.at_level(logging.WARNING):
        guessed = Refiner.for_map(world[0], CONFIG)
        first = guessed.intrinsics_for(frame, None)
        guessed.intrinsics_for(frame, None)
        given = Refiner.for_map(world[0], RefineConfig(hfov_deg=70.0))
        # the same camera; a given field of view is taken as calibrated, the guess is not
        assert given.intrinsics_for(frame, None) == replace(first, focal_sigma=0.0)
    warnings = [r for r in caplog.records if "guessing" in r.getMessage()]
    assert len(warnings) == 1
    assert first.fx == pytest.approx(CAMERA.focal_px)
    assert first.focal_sigma == CONFIG.guessed_focal_sigma > 0


def test_a_guessed_focal_length_widens_an_oblique_fix_not_a_nadir_one(world):
    map_dir, image = world
    refiner = Refiner.for_map(map_dir, CONFIG)
    sigmas = {}
    for pitch in (90.0, 70.0):
        pose = CameraPose(20.0, -15.0, 170.0, heading_deg=40.0, pitch_deg=pitch)
        for doubt in (0.0, 0.2):
            camera = replace(intrinsics(), focal_sigma=doubt)
            result = refiner.register(view(image, pose), zoom_fix(20.0, -15.0).hypotheses,
                                      camera)
            assert result.accepted, result.reason
            sigmas[pitch, doubt] = math.sqrt(max(np.linalg.eigvalsh(result.covariance_en)))
    assert sigmas[90.0, 0.2] < 1.5 * sigmas[90.0, 0.0] + 0.5  # at nadir the focal is moot
    assert sigmas[70.0, 0.2] > 3 * sigmas[70.0, 0.0] and sigmas[70.0, 0.2] > 5.0
    # a camera wider than the guess: the fix moves by tens of metres and now says so
    wide = CameraModel(320, 240, 95.0)
    pose = CameraPose(20.0, -15.0, 170.0, heading_deg=40.0, pitch_deg=70.0)
    frame = render_view(image, source_to_local(), wide, pose)
    fix = refiner.refine(frame, zoom_fix(20.0, -15.0))  # no intrinsics: the 70 deg guess
    error = np.array([fix.east_m - pose.east_m, fix.north_m - pose.north_m])
    if fix.refined:
        assert np.linalg.norm(error) > 10.0
        assert error @ np.linalg.solve(fix.covariance_enu[:2, :2], error) < 9.0  # inside 3 sigma
    else:
        assert "not refined" in fix.refinement


@pytest.mark.slow
def test_replay_methods_on_a_map_built_before_refinement(tmp_path, capsys, caplog):
    from jzi_ros.cli import main as jzi_main
    from support import make_tiny_checkpoint, make_tiny_map
    from test_replay_cli import _world_bag

    pyramid = make_tiny_map(tmp_path)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid)
    _, bag = _world_bag(tmp_path, pyramid, "raw", "mcap")
    args = ["replay", str(bag), "--map", str(pyramid.path), "--image-topic", "/camera/image",
            "--gt-topic", "/gps/fix", "--no-progress", "--no-plots"]
    assert jzi_main.main(args + ["--out", str(tmp_path / "c"), "--method", "classical"]) == 2
    assert "no feature index" in capsys.readouterr().err
    assert jzi_main.main(args + ["--out", str(tmp_path / "z"), "--method", "refine"]) == 2
    assert "--model is needed" in capsys.readouterr().err
    with caplog.at_level(logging.WARNING):
        rc = jzi_main.main(args + ["--out", str(tmp_path / "r"), "--method", "refine",
                                   "--model", str(ckpt), "--backend", "torch", "--hfov", "60"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| refine | 6 |" in out and "| 0.0 % (-, 0.0 %) |" in out
    assert sum("refinement is off" in r.getMessage() for r in caplog.records) == 1


def test_evaluate_method_retrieval_refine_reports_both_halves(world, tmp_path, capsys):
    from support import save_identity_retrieval

    from jzi_ros.cli import main as jzi_main
    from jzi_ros.maps.pyramid import MapPyramid
    from jzi_ros.training.manifest import Sample, write_manifest

    map_dir, image = world
    checkpoint = save_identity_retrieval(MapPyramid.open(map_dir), tmp_path / "r.safetensors")
    rows = []
    for k in range(4):
        pose = CameraPose(-40.0 + 30 * k, 35.0 - 25 * k, 150.0, heading_deg=50.0 * k,
                          pitch_deg=85.0)
        name = tmp_path / f"{k}.png"
        cv2.imwrite(str(name), cv2.cvtColor(view(image, pose), cv2.COLOR_RGB2BGR))
        lat, lon = TREE.to_latlon(pose.east_m, pose.north_m)
        rows.append(Sample(name, float(lat), float(lon), split="test", hfov=70.0))
    write_manifest(tmp_path / "views.csv", rows)
    common = ["evaluate", str(tmp_path / "views.csv"), "--map", str(map_dir),
              "--nominal-height", "150", "--confidence-threshold", "0", "--no-progress",
              "--no-plots"]
    assert jzi_main.main(common + ["--method", "retrieval-refine", "--out",
                                   str(tmp_path / "none")]) == 2
    assert "--method retrieval-refine needs --retrieval-model" in capsys.readouterr().err
    reports = {}
    for method in ("retrieval", "retrieval-refine"):
        assert jzi_main.main(common + ["--method", method, "--retrieval-model",
                                       str(checkpoint), "--out", str(tmp_path / method)]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert any(line.startswith("retrieval ") for line in printed)
        assert any(line.startswith("refined ") for line in printed) == (method != "retrieval")
        reports[method] = json.loads((tmp_path / method / "report.json").read_text())
    block = reports["retrieval-refine"]["refinement"]
    assert block["accepted"] == 4 and block["accepted_median_m"] < 2.0
    assert reports["retrieval"].get("refinement") is None
    assert reports["retrieval-refine"]["backend"].startswith("retrieval")


def test_evaluate_takes_each_rows_field_of_view_unless_one_is_given(world, tmp_path, capsys):
    from jzi_ros.cli import main as jzi_main
    from jzi_ros.training.manifest import Sample, write_manifest

    map_dir, image = world
    poses = [CameraPose(-40.0 + 30 * k, 35.0 - 25 * k, 170.0, heading_deg=60.0 * k,
                        pitch_deg=72.0) for k in range(4)]
    for hfov in (70.0, 110.0):  # the camera's true field of view, and a wrong one
        rows = []
        for k, pose in enumerate(poses):
            name = tmp_path / f"{k}.png"
            cv2.imwrite(str(name), cv2.cvtColor(view(image, pose), cv2.COLOR_RGB2BGR))
            lat, lon = TREE.to_latlon(pose.east_m, pose.north_m)
            rows.append(Sample(name, float(lat), float(lon), split="test", hfov=hfov))
        write_manifest(tmp_path / f"fov{hfov:g}.csv", rows)
    runs = {}
    for name, extra in (("true", ["fov70.csv"]), ("wrong", ["fov110.csv"]),
                        ("given", ["fov110.csv", "--hfov", "70"])):
        assert jzi_main.main(["evaluate", str(tmp_path / extra[0]), "--map", str(map_dir),
                              "--method", "classical", "--out", str(tmp_path / name),
                              "--no-progress", "--no-plots"] + extra[1:]) == 0
        assert "classical" in capsys.readouterr().out
        runs[name] = json.loads((tmp_path / name / "report.json").read_text())
    for name in ("true", "given"):
        assert runs[name]["refinement"]["accepted"] == 4
        assert runs[name]["estimate"]["p95_m"] < 5.0  # metres off, on every row
    wrong = runs["wrong"]
    assert wrong["refinement"]["accepted"] < 4 or wrong["estimate"]["median_m"] > 5.0


def test_a_low_contrast_frame_is_searched_again_at_half_the_threshold(world):
    from jzi_ros.inference.registration import frame_features
    from jzi_ros.maps.features import detect_features

    map_dir, image = world
    pose = CameraPose(10.0, 20.0, 170.0, heading_deg=15.0, pitch_deg=88.0)
    frame = view(image, pose)
    hazy = np.clip(128 + (frame.astype(np.float32) - 128) * 0.5, 0, 255).astype(np.uint8)
    default, _ = detect_features(hazy, "sift", CONFIG.max_features)
    points, descriptors = frame_features(hazy, CONFIG)
    assert len(default) < CONFIG.low_contrast_features <= len(points) == len(descriptors)
    off = replace(CONFIG, low_contrast_features=0)
    assert len(frame_features(hazy, off)[0]) == len(default)
    fix = Refiner.for_map(map_dir, CONFIG).refine(hazy, zoom_fix(10.0, 20.0), intrinsics())
    assert fix.refined, fix.refinement
    assert math.hypot(fix.east_m - pose.east_m, fix.north_m - pose.north_m) < 3.0


def test_large_frame_is_shrunk_with_its_intrinsics(world):
    map_dir, image = world
    pose = CameraPose(-20.0, 30.0, 150.0, heading_deg=250.0, pitch_deg=84.0)
    frame = cv2.resize(view(image, pose), (1280, 960), interpolation=cv2.INTER_LINEAR)
    big = Intrinsics.from_matrix(CAMERA.K(4.0))
    out = Refiner.for_map(map_dir, replace(CONFIG, max_frame_px=400)).refine(
        frame, zoom_fix(pose.east_m, pose.north_m), big)
    assert out.refined, out.refinement
    assert math.hypot(out.east_m - pose.east_m, out.north_m - pose.north_m) < 2.0
    assert "height 150 m" in out.refinement


def test_low_confidence_zoom_no_fix_becomes_a_refined_fix(world):
    map_dir, image = world
    pose = CameraPose(40.0, 10.0, 150.0, heading_deg=15.0, pitch_deg=86.0)
    gated = replace(zoom_fix(pose.east_m, pose.north_m), status=FixStatus.NO_FIX,
                    reason="confidence 0.05 below threshold 0.2", confidence=0.05)
    out = Refiner.for_map(map_dir, CONFIG).refine(view(image, pose), gated, intrinsics())
    assert out.refined and out.ok and out.reason == ""
    assert out.confidence > 0.05
    assert math.hypot(out.east_m - pose.east_m, out.north_m - pose.north_m) < 2.0


def test_gemm_ratio_test_matches_the_brute_force_matcher():
    from jzi_ros.inference.registration import _l2_ratio_matches, ratio_matches

    rng = np.random.default_rng(3)
    query = rng.integers(0, 80, (300, 128)).astype(np.float32)
    train = np.concatenate([query[:120] + rng.normal(0, 6, (120, 128)).astype(np.float32),
                            rng.integers(0, 80, (900, 128)).astype(np.float32)])
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query, train, k=2)
    good = [p[0] for p in pairs if p[0].distance < 0.85 * p[1].distance]
    assert 100 <= len(good) < len(query)  # some pass, some fail: the test discriminates
    for got in (ratio_matches(query, train, "sift", 0.85),
                _l2_ratio_matches(query, train, 0.85, chunk=97)):  # best two across chunks
        np.testing.assert_array_equal(got[0], [m.queryIdx for m in good])
        np.testing.assert_array_equal(got[1], [m.trainIdx for m in good])


def test_batched_poses_equal_one_by_one_and_flag_degenerate_ones():
    from jzi_ros.inference.camera_pose import poses_from_homographies

    poses = [CameraPose(5.0 * i, -3.0 * i, 120.0 + 10 * i, heading_deg=40.0 * i,
                        pitch_deg=90.0 - 5 * i) for i in range(5)]
    batch = np.stack([np.linalg.inv(ground_to_image(CAMERA, p)) for p in poses]
                     + [np.zeros((3, 3))])
    got = poses_from_homographies(batch, intrinsics())
    assert got["valid"].tolist() == [True] * 5 + [False]
    for i, pose in enumerate(poses):
        one = pose_from_homography(batch[i], intrinsics())
        for name in ("east_m", "north_m", "height_m", "heading_deg", "tilt_deg"):
            assert got[name][i] == pytest.approx(getattr(one, name), abs=1e-9)
        assert (one.east_m, one.north_m, one.height_m) == pytest.approx(
            (pose.east_m, pose.north_m, pose.altitude_m), abs=1e-6)
    assert pose_from_homography(np.zeros((3, 3)), intrinsics()) is None


def _dlt_by_svd(src: np.ndarray, dst: np.ndarray, frame_src: np.ndarray,
                frame_dst: np.ndarray) -> np.ndarray:
    """
    Textbook DLT: the design matrix's last right singular vector.

    Hartley-normalised by the ``frame_*`` points (a resample is solved in the whole set's
    normalisation).
    """
    def normalise(points):
        mean = points.mean(axis=0)
        scale = np.sqrt(2) / np.linalg.norm(points - mean, axis=1).mean()
        return np.array([[scale, 0, -scale * mean[0]], [0, scale, -scale * mean[1]], [0, 0, 1]])

    t_src, t_dst = normalise(frame_src), normalise(frame_dst)
    a = cv2.perspectiveTransform(src[None], t_src)[0]
    b = cv2.perspectiveTransform(dst[None], t_dst)[0]
    rows = []
    for (x, y), (u, v) in zip(a, b):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    h = np.linalg.svd(np.array(rows))[2][-1].reshape(3, 3)
    H = np.linalg.inv(t_dst) @ h @ t_src
    return H / H[2, 2]


def test_bootstrap_spread_grows_with_the_inlier_noise():
    from jzi_ros.inference.camera_pose import poses_from_homographies
    from jzi_ros.inference.registration import _bootstrap_homographies, _resample_weights

    pose = CameraPose(10.0, 20.0, 150.0, heading_deg=60.0, pitch_deg=80.0)
    to_image = ground_to_image(CAMERA, pose)
    rng = np.random.default_rng(0)
    ground = rng.uniform(-60, 60, (200, 2)) + [10.0, 40.0]
    pixels = cv2.perspectiveTransform(ground[None], to_image)[0]
    spreads = []
    for noise_px in (0.0, 0.5, 2.0):
        noisy = pixels + rng.normal(0, noise_px, pixels.shape) if noise_px else pixels
        start, _ = cv2.findHomography(noisy, ground, 0)  # a starting point near the fit
        homographies = _bootstrap_homographies(noisy, ground, 24, start)
        assert homographies.shape == (24, 3, 3)
        poses = poses_from_homographies(homographies, intrinsics())
        assert poses["valid"].all()
        samples = np.stack([poses["east_m"], poses["north_m"]], axis=1)
        assert np.allclose(samples.mean(axis=0), (10.0, 20.0), atol=0.5 + noise_px)
        spreads.append(float(np.sqrt(np.trace(np.cov(samples.T)))))
        # each resample's homography is its weighted least-squares (DLT) solution: what an
        # eigendecomposition of its normal matrix gives, in the same normalised coordinates
        weights = _resample_weights(len(noisy), 24)
        for k in (0, 23):
            drawn = np.repeat(np.arange(len(noisy)), weights[k].astype(int))
            reference = _dlt_by_svd(noisy[drawn], ground[drawn], noisy, ground)
            got = homographies[k] / homographies[k][2, 2]
            np.testing.assert_allclose(cv2.perspectiveTransform(noisy[None], got)[0],
                                       cv2.perspectiveTransform(noisy[None], reference)[0],
                                       atol=1e-6)
    assert spreads[0] < 1e-6 < spreads[1] < spreads[2]


def test_intrinsics_parse_and_scale_per_axis():
    with pytest.raises(JziError, match="focal_sigma"):
        Intrinsics(300.0, 300.0, 160.0, 120.0, focal_sigma=0.7)
    assert Intrinsics(300.0, 300.0, 160.0, 120.0, 0.1).scaled(0.5).focal_sigma == 0.1
    K = Intrinsics.parse("400, 410, 319.5, 239.5", "--intrinsics")
    assert (K.fx, K.fy, K.cx, K.cy) == (400.0, 410.0, 319.5, 239.5)
    half = K.scaled(0.5, 0.25)
    assert (half.fx, half.fy, half.cx, half.cy) == (200.0, 102.5, 159.5, 59.5)
    with pytest.raises(JziError, match="--intrinsics '1,2': expected 4"):
        Intrinsics.parse("1,2", "--intrinsics")


def test_coarser_index_level_serves_frames_that_see_the_ground_coarser(tmp_path, monkeypatch):
    import jzi_ros.maps.imagery as imagery_module

    monkeypatch.setattr(imagery_module, "INDEX_MIN_PX", 256)  # levels 1 and 2 m/px on 640 m
    image = texture(800, seed=4)
    map_dir = build(tmp_path, image, "levels")
    levels = imagery_module.load_index(map_dir / FEATURES)
    assert [level.m_per_px for level in levels] == [1.0, 2.0]
    assert imagery_module.FeatureIndex.load(map_dir / FEATURES).m_per_px == 1.0
    assert "(coarser: " in imagery_summary(map_dir)
    camera = CameraModel(200, 150, 70.0)
    pose = CameraPose(-15.0, 25.0, 290.0, heading_deg=75.0, pitch_deg=84.0)
    frame = render_view(image, source_to_local(), camera, pose)
    refiner = Refiner.for_map(map_dir, replace(CONFIG, nominal_height_m=290.0))
    gsd = 290.0 / camera.focal_px  # ~2 m per frame pixel: the 2 m/px level, no window read
    assert refiner.index_for(gsd).m_per_px == 2.0 and refiner.index_for(1.1).m_per_px == 1.0
    monkeypatch.setattr(refiner.imagery, "read", lambda *a: pytest.fail("window read"))
    out = refiner.refine(frame, zoom_fix(pose.east_m, pose.north_m),
                         Intrinsics.from_matrix(camera.K()))
    assert out.refined, out.refinement
    assert math.hypot(out.east_m - pose.east_m, out.north_m - pose.north_m) < 3.0


def test_refining_localizer_refines_the_measured_path_and_forwards_the_config(world):
    map_dir, image = world
    pose = CameraPose(-30.0, 15.0, 150.0, heading_deg=200.0, pitch_deg=85.0)

    class Zoom:
        tree, backend_name, config = TREE, "stub", "zoom settings"

        def localize_measured(self, image_rgb, **options):
            self.options = options
            return zoom_fix(pose.east_m, pose.north_m), "the zoom's measurement"

    zoom = Zoom()
    wrapped = RefiningLocalizer(zoom, Refiner.for_map(map_dir, CONFIG), intrinsics())
    fix, measurement = wrapped.localize_measured(view(image, pose), heading_deg=12.0)
    assert fix.refined, fix.refinement
    assert math.hypot(fix.east_m - pose.east_m, fix.north_m - pose.north_m) < 2.0
    assert measurement == "the zoom's measurement" and zoom.options == {"heading_deg": 12.0}
    assert wrapped.config == "zoom settings"
    wrapped.config = "changed at runtime"
    assert zoom.config == "changed at runtime"


def test_retrieval_refine_registers_the_frame_around_the_retrieved_views(world, tmp_path):
    from support import save_identity_retrieval

    from jzi_ros.inference.localizer import LocalizerConfig
    from jzi_ros.inference.retrieval import RetrievalLocalizer
    from jzi_ros.maps.pyramid import MapPyramid

    map_dir, image = world
    checkpoint = save_identity_retrieval(MapPyramid.open(map_dir), tmp_path / "r.safetensors")
    retrieval = RetrievalLocalizer(map_dir, checkpoint, progress=False,
                                   config=LocalizerConfig(confidence_threshold=0.0))
    refining = RefiningLocalizer(retrieval, Refiner.for_map(map_dir, CONFIG), intrinsics())
    assert refining.backend_name == "retrieval-torch-jit-cpu+refine"
    pose = CameraPose(-30.0, 15.0, 150.0, heading_deg=200.0, pitch_deg=85.0)
    frame = view(image, pose)
    plain = retrieval.localize(frame)
    fix, measurement = refining.localize_measured(frame)
    assert fix.refined, fix.refinement
    assert math.hypot(fix.east_m - pose.east_m, fix.north_m - pose.north_m) < 2.0
    assert math.hypot(plain.east_m - pose.east_m, plain.north_m - pose.north_m) > 10.0
    # the retrieval's own cells and measurement are kept for the filter
    assert fix.hypotheses == plain.hypotheses
    assert measurement.mass.sum() + measurement.background == pytest.approx(1.0)
    # a retrieved view far from the frame: refinement searches only around it and keeps
    # retrieval's fix with the reason (never a fix elsewhere)
    path = TREE.path_of_local(250.0, -250.0)[:1]  # a 160 m view, ~380 m from the frame
    east, north = TREE.cell_center_local(path)
    lat, lon = (float(v) for v in TREE.to_latlon(east, north))
    far = Hypothesis(path, 1.0, 0.0, east, north, lat, lon)
    retrieved = replace(plain, hypotheses=(far,), east_m=east, north_m=north)
    kept = Refiner.for_map(map_dir, replace(CONFIG, search_margin_m=20.0)).refine(
        frame, retrieved, intrinsics())
    assert not kept.refined and kept.refinement.startswith("not refined")
    assert (kept.east_m, kept.north_m) == (east, north)


def test_the_maps_georef_sigma_widens_every_registered_fix_by_exactly_its_square(
        world, tmp_path):
    from jzi_ros.inference.measurement import PointMeasurement
    from jzi_ros.maps.pyramid import set_georef_sigma_m

    map_dir, image = world
    known = tmp_path / "map"
    shutil.copytree(map_dir, known)
    set_georef_sigma_m(known, 4.0)
    pose = CameraPose(12.0, -25.0, 150.0, heading_deg=60.0, pitch_deg=84.0)
    frame, zoom = view(image, pose), zoom_fix(pose.east_m + 10, pose.north_m + 5)
    plain = Refiner.for_map(map_dir, CONFIG).refine(frame, zoom, intrinsics())  # unknown: 0
    widened = Refiner.for_map(known, CONFIG).refine(frame, zoom, intrinsics())
    overridden = Refiner.for_map(known, replace(CONFIG, georef_sigma_m=1.5)).refine(
        frame, zoom, intrinsics())
    assert plain.refined and widened.refined and overridden.refined, plain.refinement
    assert (widened.east_m, widened.north_m) == (plain.east_m, plain.north_m)
    grown = widened.covariance_enu - plain.covariance_enu
    np.testing.assert_allclose(grown, np.diag([16.0, 16.0, 0.0]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(overridden.covariance_enu - plain.covariance_enu,
                               np.diag([2.25, 2.25, 0.0]), rtol=0, atol=1e-9)
    assert "map georef sigma 4.0 m" in widened.refinement
    assert "georef" not in plain.refinement
    # the fix says what it holds; the temporal filter's refined-point update takes the
    # registration's own covariance (it adds the term once to what it publishes)
    assert (widened.georef_sigma_m, overridden.georef_sigma_m, plain.georef_sigma_m) == (
        4.0, 1.5, 0.0)
    point = PointMeasurement.from_fix(widened)
    np.testing.assert_allclose(point.cov_en_m2, plain.covariance_enu[:2, :2], rtol=0,
                               atol=1e-9)
    # acceptance judged the registration alone: a sigma far above max_sigma_m still refines
    huge = Refiner.for_map(known, replace(CONFIG, georef_sigma_m=100.0)).refine(
        frame, zoom, intrinsics())
    assert huge.refined and huge.sigma_en_m[0] > CONFIG.max_sigma_m
    classical = [ClassicalLocalizer(m, CONFIG).localize(frame, intrinsics())
                 for m in (map_dir, known)]
    assert all(f.refined for f in classical)
    np.testing.assert_allclose(classical[1].covariance_enu - classical[0].covariance_enu,
                               np.diag([16.0, 16.0, 0.0]), rtol=0, atol=1e-9)
    assert [f.georef_sigma_m for f in classical] == [0.0, 4.0]


def test_georef_sigma_override_from_the_cli_and_the_node_parameter():
    import argparse

    from jzi_ros.cli import refineopts
    from jzi_ros.ros.params import refine_config

    parser = argparse.ArgumentParser()
    refineopts.add_arguments(parser)
    assert refineopts.refine_config(parser.parse_args([])).georef_sigma_m is None  # the map's
    assert refineopts.refine_config(parser.parse_args(
        ["--georef-sigma-m", "7"])).georef_sigma_m == 7.0
    with pytest.raises(JziError, match="refine.georef_sigma_m"):
        refineopts.refine_config(parser.parse_args(["--georef-sigma-m", "-2"]))
    # the node's parameter: -1 (the default) is the map's value, other negatives are refused
    assert refine_config({}).georef_sigma_m is None
    assert refine_config({"refine.georef_sigma_m": -1.0}).georef_sigma_m is None
    assert refine_config({"refine.georef_sigma_m": 3.0}).georef_sigma_m == 3.0
    with pytest.raises(JziError, match="refine.georef_sigma_m"):
        refine_config({"refine.georef_sigma_m": -0.5})
