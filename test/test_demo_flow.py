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

"""`jzi demo` end to end at miniature scale, the demo bag, and chance recall."""
import json
from pathlib import Path

import numpy as np
import pytest

from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC, write_bag
from jzi_ros.demo.flight import FlightSpec, fly
from jzi_ros.demo.flow import chance_recall, DEMO_CARD_KEY, DemoOptions, model_card, run_demo
from jzi_ros.demo.world import WorldSpec
from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree, haversine_m

TINY_WORLD = WorldSpec(seed=5, size_m=480.0, margin_m=120.0, gsd_m=2.0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """Save an untrained tiny model whose card names the tiny world (grid 4, depth 2)."""
    import torch

    from jzi_ros.model.checkpoint import save_checkpoint
    from jzi_ros.model.config import ModelConfig
    from jzi_ros.model.zoom import ZoomModel

    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", grid=4, depth=2, ground_crops="single")
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(path, ZoomModel(config, load_weights=False),
                    {DEMO_CARD_KEY: {"world": TINY_WORLD.to_dict(), "tile_px": 32}})
    return path


def test_model_card_names_world_tree_and_tile(tiny_model):
    world, tree, tile_px = model_card(tiny_model)
    assert world == TINY_WORLD and tile_px == 32
    assert (tree.size_m, tree.grid, tree.depth) == (480.0, 4, 2)


def test_flight_stays_inside_the_root_and_moves_smoothly():
    spec = FlightSpec(frames=120, speed_mps=15.0, rate_hz=1.0, edge_margin_m=100.0)
    poses, stamps = fly(np.random.default_rng(2), 1000.0, spec)
    xy = np.array([(p.east_m, p.north_m) for p in poses])
    assert np.all(np.abs(xy) < 500.0)
    steps = np.hypot(*np.diff(xy, axis=0).T)
    assert np.all(steps <= 15.0 + 1e-6) and np.median(steps) > 10.0
    assert np.all(np.diff(stamps) == 1_000_000_000)
    assert all(84 <= p.pitch_deg <= 90 and 220 <= p.altitude_m <= 290 for p in poses)
    # yaw-stabilised: the image top stays within the jitter of north
    assert all(min(p.heading_deg % 360, 360 - p.heading_deg % 360) <= spec.yaw_jitter_deg
               for p in poses)
    track, _ = fly(np.random.default_rng(2), 1000.0, FlightSpec(frames=50, yaw_mode="track"))
    assert np.ptp([p.heading_deg for p in track]) > 30
    with pytest.raises(JziError, match="yaw_mode"):
        FlightSpec(yaw_mode="sideways")


def test_bag_holds_frames_and_ground_truth(tmp_path):
    from jzi_ros.evaluation.bags import open_bag

    tree = CellTree(40.0, -83.0, 500.0, 4, 2)
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (200, 30, 30)
    frames = [(1_000_000_000 + i * 500_000_000, image, (10.0 * i, -5.0 * i, 100.0))
              for i in range(4)]
    bag = write_bag(tmp_path / "bag", tree, iter(frames))
    assert sorted(p.name for p in bag.iterdir()) == ["bag.mcap", "metadata.yaml"]
    with open_bag(bag) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == {IMAGE_TOPIC: "sensor_msgs/msg/CompressedImage",
                          GT_TOPIC: "sensor_msgs/msg/NavSatFix"}
        fixes, images = [], []
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            (fixes if conn.topic == GT_TOPIC else images).append(msg)
    assert len(images) == len(fixes) == 4
    assert images[1].format == "jpeg"
    assert images[1].header.stamp.sec == 1 and images[1].header.stamp.nanosec == 500_000_000
    lat, lon = tree.to_latlon(30.0, -15.0)
    assert haversine_m(fixes[3].latitude, fixes[3].longitude, lat, lon) < 1e-3
    assert fixes[3].status.status == 0 and fixes[3].altitude == 100.0
    with pytest.raises(JziError, match="already exists"):
        write_bag(tmp_path / "bag", tree, iter(frames))


def test_chance_recall_matches_geometry():
    tree = CellTree(40.0, -83.0, 1000.0, 4, 2)  # 16 x 16 terminal cells of 62.5 m
    # a point at a cell centre: only that centre is within 25 m
    chance = chance_recall(tree, np.array([[31.25, 31.25]]), (25.0, 2000.0))
    assert chance == {"25": pytest.approx(1 / 256), "2000": 1.0}


@pytest.mark.slow
def test_demo_runs_end_to_end_at_miniature_scale(tiny_model, tmp_path):
    flight = FlightSpec(frames=6, width=96, height=72, edge_margin_m=60.0)
    options = DemoOptions(workdir=tmp_path / "demo", model=tiny_model, flight=flight,
                          progress=False)
    lines = []
    result = run_demo(options, say=lines.append)
    assert result.ran == ["world", "map", "embeddings", "bag"]
    for name in ("world.tif", "map/manifest.json", "bag/metadata.yaml", "report/report.md",
                 "report/trajectory.png", "report/demo.json"):
        assert (tmp_path / "demo" / name).exists(), name
    summary = result.summary
    assert summary["frames"]["used"] == 6
    assert set(summary["top1"]["recall"]) == {"25", "50", "100", "250"}
    assert 0.0 < result.chance["50"] < result.chance["250"] <= 1.0
    card = json.loads((tmp_path / "demo" / "report" / "demo.json").read_text())
    assert card["chance_recall"] == result.chance
    # second run: everything but the replay is cached
    again = run_demo(options, say=lines.append)
    assert again.ran == []
    assert any("cached" in line for line in lines)
    # another flight seed only redoes the bag
    other = run_demo(DemoOptions(workdir=tmp_path / "demo", model=tiny_model, flight=flight,
                                 progress=False, seed=1), say=lines.append)
    assert other.ran == ["bag"]


def test_shipped_demo_model_is_small_and_names_its_world():
    from jzi_ros.demo.flow import shipped_model
    from jzi_ros.model.checkpoint import read_header

    path = shipped_model()
    if not path.exists():
        pytest.skip(f"{path} not built yet (benchmarks/train_demo_model.sh)")
    assert path.stat().st_size < 20e6
    world, tree, tile_px = model_card(path)
    assert (tree.size_m, tree.grid, tree.depth) == (world.size_m, 4, 3)
    assert tile_px > 0
    calibration = read_header(path)["metadata"].get("calibration")
    assert calibration and calibration["covariance_scale"] > 0


def test_demo_cli_reports_a_missing_model(tmp_path, capsys):
    from jzi_ros.cli.main import main

    code = main(["demo", "--workdir", str(tmp_path), "--model", str(tmp_path / "nope.st")])
    assert code == 2
    assert "demo model" in capsys.readouterr().err
