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

"""Evaluation without a bag: a manifest through the replay report, beside chance and a prior."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from jzi_ros.cli.main import main
from jzi_ros.evaluation.images import (baselines, calibration_check, geometric_median,
                                       replay_manifest)
from jzi_ros.inference.localizer import Localizer, LocalizerConfig
from jzi_ros.training.manifest import Sample, write_manifest
from support import make_tiny_checkpoint, make_tiny_map, tiny_tree, world_of


def test_chance_is_the_exact_expectation_over_terminal_cells():
    tree = tiny_tree(grid=4, depth=2, size_m=1600.0)  # 16 x 16 terminal cells of 100 m
    centre = np.array([[50.0, 50.0]])  # a terminal cell's centre
    chance = baselines(tree, centre, None)["chance"]
    # within 25/50 m only its own cell; within 100 m also its 4 edge neighbours
    assert chance["recall"]["25"] == pytest.approx(1 / 256)
    assert chance["recall"]["100"] == pytest.approx(5 / 256)
    assert chance["path_accuracy"] == {"1": pytest.approx(1 / 16), "2": pytest.approx(1 / 256)}
    assert chance["count"] == 1


def test_prior_beats_chance_when_queries_cluster_where_training_rows_are():
    tree = tiny_tree(grid=4, depth=2, size_m=1600.0)
    rng = np.random.default_rng(0)
    train = rng.normal((420.0, -380.0), 20.0, (200, 2))
    test = rng.normal((420.0, -380.0), 20.0, (50, 2))
    result = baselines(tree, test, train)
    prior, chance = result["prior"], result["chance"]
    assert prior["guess_en_m"] == pytest.approx([420.0, -380.0], abs=10.0)
    assert prior["recall"]["100"] == 1.0 and chance["recall"]["100"] < 0.05
    assert prior["median_m"] < 40 < chance["median_m"]
    assert "200 training rows" in prior["from"]
    # without training rows the prior is the map's centre
    assert baselines(tree, test, None)["prior"]["guess_en_m"] == [0.0, 0.0]


def test_geometric_median_ignores_a_far_outlier():
    points = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0], [1000.0, 1000.0]])
    median = geometric_median(points)

    def total(p):
        return np.hypot(*(points - p).T).sum()

    grid = np.stack(np.meshgrid(np.linspace(0, 3, 301), np.linspace(0, 3, 301)), -1)
    best = min(total(p) for p in grid.reshape(-1, 2))
    assert total(median) <= best + 1e-6  # no point of a 1 cm grid does better
    assert np.all(median < 2.0)  # the mean would be at ~200 m


def test_calibration_check_flags_drift_in_either_direction():
    calibration = SimpleNamespace(target="mean", mean_nees=2.0, median_nees=1.4, frames=40)
    assert not calibration_check(calibration, {"count": 10, "mean_nees": 2.5})["drift"]
    high = calibration_check(calibration, {"count": 10, "mean_nees": 9.0})
    assert high["drift"] and "too small" in high["verdict"] and high["ratio"] == 4.5
    low = calibration_check(calibration, {"count": 10, "mean_nees": 0.5})
    assert low["drift"] and "too large" in low["verdict"]
    median = SimpleNamespace(target="median", mean_nees=2.0, median_nees=1.4, frames=40)
    assert calibration_check(median, {"count": 3, "median_nees": 1.5, "mean_nees": 50})[
        "drift"] is False
    assert calibration_check(None, {"count": 3, "mean_nees": 2.0}) is None


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    pyramid = make_tiny_map(tmp, depth=2)
    ckpt = make_tiny_checkpoint(tmp, pyramid, sharpen=True)
    world, tree = world_of(pyramid), pyramid.tree
    rng = np.random.default_rng(1)
    samples = []
    for index in range(10):
        east, north = rng.uniform(-700, 700, 2)
        image = tmp / f"frame{index}.png"
        cv2.imwrite(str(image), world.ground_image(east, north, size=(40, 80))[..., ::-1])
        lat, lon = tree.to_latlon(east, north)
        samples.append(Sample(image, float(lat), float(lon),
                              split="test" if index < 6 else "val"))
    broken = tmp / "broken.png"
    broken.write_bytes(b"not an image")
    samples.append(Sample(broken, samples[0].latitude, samples[0].longitude, split="test"))
    manifest = tmp / "manifest.csv"
    write_manifest(manifest, samples)
    return pyramid, ckpt, manifest


def test_manifest_frames_are_scored_like_bag_frames(scene):
    pyramid, ckpt, manifest = scene
    localizer = Localizer.from_paths(pyramid.path, ckpt, LocalizerConfig(device="cpu"))
    from jzi_ros.training.manifest import read_manifest
    rows = [s for s in read_manifest(manifest) if s.split == "test"]
    result = replay_manifest(manifest, rows, localizer, progress=False)
    assert len(result.records) == 7 and len(result.used) == 6
    assert result.records[-1].skip == "bad_image" and "broken.png" in result.records[-1].detail
    first = result.used[0]
    assert first.gt.latitude == pytest.approx(float(first.gt.latitude))
    assert np.hypot(*pyramid.tree.to_local(first.fix.latitude, first.fix.longitude)) < 1e4


def test_jzi_evaluate_writes_the_report_with_baselines_and_the_table(scene, tmp_path, capsys):
    pyramid, ckpt, manifest = scene
    out = tmp_path / "report"
    assert main(["evaluate", str(manifest), "--map", str(pyramid.path), "--model", str(ckpt),
                 "--out", str(out), "--device", "cpu", "--backend", "torch",
                 "--prior-manifest", str(manifest), "--split", "all", "--no-progress",
                 "--no-plots"]) == 2  # the prior manifest has no 'train' rows
    assert "no 'train' rows" in capsys.readouterr().err
    assert main(["evaluate", str(manifest), "--map", str(pyramid.path), "--model", str(ckpt),
                 "--out", str(out), "--device", "cpu", "--backend", "torch",
                 "--no-progress", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    for name in ("model", "chance", "prior"):
        assert any(line.startswith(name) for line in printed.splitlines())
    report = (out / "report.md").read_text()
    assert "chance: uniform terminal cell" in report and "no-image prior" in report
    import json
    summary = json.loads((out / "report.json").read_text())
    assert summary["frames"]["used"] == 6
    assert summary["baselines"]["chance"]["path_accuracy"]["1"] == pytest.approx(1 / 16)
    assert summary["calibration_check"] is None  # the checkpoint was never calibrated
