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
Heading policy: frames rotated by their known heading, or random rotations in training.

North-up models see frames rotated by their known heading, heading-free models are trained
with random rotations, and the localizer refuses a north-up model without heading.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.inference.localizer import Localizer, LocalizerConfig
from jzi_ros.model.checkpoint import read_header, save_checkpoint
from jzi_ros.model.config import ModelConfig
from jzi_ros.model.preprocess import orient, rotate_crop
from jzi_ros.training.camera import CameraModel, CameraPose
from jzi_ros.training.config import load_train_config
from jzi_ros.training.data import ZoomDataset
from jzi_ros.training.loop import train
from jzi_ros.training.manifest import label_samples, Sample
from jzi_ros.training.render import ArrayGround
from support import make_tiny_map, make_tiny_model, SyntheticWorld, tiny_tree


def _ground(tree):
    world = SyntheticWorld(tree, 0, resolution=1024)
    g, h = tree.size_m / 1024, tree.size_m / 2
    return ArrayGround(world.image, np.array([[g, 0, -h], [0, -g, h], [0, 0, 1]]))


@pytest.mark.parametrize("heading", [37.0, 90.0, 211.0, 300.0])
def test_north_up_rotation_undoes_the_camera_heading(heading):
    ground = _ground(tiny_tree(size_m=1600.0))
    camera = CameraModel(160, 120, 70.0)
    north, _ = ground.view(camera, CameraPose(120.0, -80.0, 300.0, 0.0, 90.0))
    turned, _ = ground.view(camera, CameraPose(120.0, -80.0, 300.0, heading, 90.0))
    want = rotate_crop(north, 0.0)
    got = rotate_crop(turned, heading)
    assert got.shape == want.shape == (84, 84, 3)
    assert np.abs(got.astype(float) - want).mean() < 1.0  # measured: <= 0.2 grey levels
    # the wrong sense of rotation gives another image (measured: 17-21 grey levels)
    wrong = rotate_crop(turned, -heading)
    assert np.abs(wrong.astype(float) - want).mean() > 10.0


def test_orient_follows_the_policy_and_names_the_fix():
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    none = ModelConfig.preset("tiny")
    assert orient(image, none, 45.0, 30.0) is image
    free = ModelConfig.preset("tiny", heading="free")
    assert orient(image, free, 45.0).shape == (42, 42, 3)
    assert np.array_equal(orient(image, free, 45.0), rotate_crop(image, 0.0))
    north_up = ModelConfig.preset("tiny", heading="north-up")
    assert np.array_equal(orient(image, north_up, 45.0), rotate_crop(image, 45.0))
    with pytest.raises(JziError, match="north-up.*needs its heading"):
        orient(image, north_up, None)
    with pytest.raises(JziError, match="model.heading"):
        ModelConfig.preset("tiny", heading="south-up")


def test_north_up_training_rows_need_a_heading(tmp_path):
    tree = tiny_tree()
    lat, lon = tree.to_latlon(10.0, 10.0)
    rows = label_samples([Sample(Path("a.png"), float(lat), float(lon), heading=10.0),
                          Sample(Path("b.png"), float(lat), float(lon))], tree)
    config = ModelConfig.preset("tiny", heading="north-up", grid=4, depth=2)
    with pytest.raises(JziError, match="1 row.*b.png.*model.heading=free"):
        ZoomDataset(rows, tree, config, augment=False)
    ZoomDataset(rows, tree, ModelConfig.preset("tiny", heading="free", grid=4, depth=2), False)


def test_localizer_refuses_a_north_up_model_without_heading(tmp_path):
    pyramid = make_tiny_map(tmp_path, depth=2)
    model = make_tiny_model(pyramid)
    model.config.heading = "north-up"
    path = tmp_path / "north_up.ckpt"
    save_checkpoint(path, model, {"source": "test"})
    assert read_header(path)["config"]["heading"] == "north-up"  # the model card says so
    from jzi_ros.maps.embed import write_map_embeddings
    write_map_embeddings(pyramid, model, batch_size=64, progress=False)
    localizer = Localizer.from_paths(pyramid.path, path, LocalizerConfig(device="cpu"))
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    with pytest.raises(JziError) as err:
        localizer.localize(image)
    message = str(err.value)
    assert "north_up.ckpt" in message and "heading" in message and "\n" not in message
    fix = localizer.localize(image, heading_deg=123.0)
    assert np.isfinite(fix.latitude)
    # jzi bench times a north-up model on a frame with a heading (the rotation is timed too)
    from jzi_ros.inference.bench import bench_localizer, TIMING_HEADING_DEG, timing_heading
    assert timing_heading(localizer) == TIMING_HEADING_DEG
    row = bench_localizer(localizer, image, frames=2, warmup=1, paper_way=True)
    assert row.frame_ms["median"] > 0 and row.paper_way_ms["median"] > 0


def test_init_checkpoint_refuses_architecture_overrides(tmp_path):
    pyramid = make_tiny_map(tmp_path, depth=2)
    model = make_tiny_model(pyramid)
    init = tmp_path / "init.ckpt"
    save_checkpoint(init, model, {"source": "test"})
    torch.set_num_threads(1)
    common = [f"manifest={tmp_path / 'm.csv'}", f"map={pyramid.path}", f"init={init}",
              "model_preset=tiny", "num_workers=0"]
    config = load_train_config(None, common + [f"out={tmp_path / 'a'}",
                                               "model.decoder.layers=5"])
    with pytest.raises(JziError, match=r"init=.*\['decoder'\] differ"):
        train(config, progress=False, log=lambda _msg: None)
