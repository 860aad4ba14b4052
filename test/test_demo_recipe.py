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
The demo model's recipe (prepare -> train -> finalize) on a small world, and its tool.

benchmarks/train_demo_model.sh made the shipped model with these steps; here they run on a
700 m world with a dozen images and a random tiny model instead of a trained one.
"""
import hashlib
import importlib.util
import json
from pathlib import Path

import cv2
import pytest

from jzi_ros.demo import recipe
from jzi_ros.demo.dataset import DatasetSpec
from jzi_ros.demo.flow import DEMO_CARD_KEY
from jzi_ros.demo.world import WorldSpec
from jzi_ros.maps.pyramid import MapPyramid
from jzi_ros.model.checkpoint import read_header
from jzi_ros.training.manifest import read_manifest
from support import make_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SPEC = WorldSpec(seed=3, size_m=700.0, margin_m=100.0, gsd_m=1.0)
DATA = DatasetSpec(train=6, val=4, train_styles=2, val_styles=1)


def _tool():
    spec = importlib.util.spec_from_file_location("demo_recipe",
                                                  ROOT / "benchmarks" / "demo_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "prepared"
    recipe.prepare(out, SPEC, DATA, progress=False)
    return out


@pytest.mark.slow
def test_prepare_writes_world_map_and_a_labelled_dataset(prepared):
    card = json.loads((prepared / "demo_card.json").read_text())
    assert card == {"world": SPEC.to_dict(), "tile_px": recipe.TILE_PX, "grid": recipe.GRID,
                    "depth": recipe.DEPTH}
    pyramid = MapPyramid.open(prepared / "map")
    assert (pyramid.tree.grid, pyramid.tree.depth) == (recipe.GRID, recipe.DEPTH)
    assert pyramid.tree.size_m == SPEC.size_m
    samples = read_manifest(prepared / "dataset" / "manifest.csv")
    assert sorted(s.split for s in samples) == ["train"] * 6 + ["val"] * 4
    half = SPEC.size_m / 2
    for sample in samples:
        east, north = pyramid.tree.to_local(sample.latitude, sample.longitude)
        assert abs(east) <= half and abs(north) <= half
        image = cv2.imread(str(sample.image))
        assert image is not None and image.ndim == 3 and image.std() > 1.0


@pytest.mark.slow
def test_finalize_calibrates_and_stamps_the_demo_card(prepared, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pyramid = MapPyramid.open(prepared / "map")
    make_tiny_checkpoint(run, pyramid, name="best.safetensors", embed=False,
                         metadata={"metrics": {"recall@100m": 0.5}})
    out = tmp_path / "shipped" / "demo_model.safetensors"
    out.parent.mkdir()
    info = recipe.finalize(run, prepared, out, beam=2)
    metadata = read_header(out)["metadata"]
    assert metadata[DEMO_CARD_KEY]["world"] == SPEC.to_dict()
    assert metadata[DEMO_CARD_KEY]["trained"] == {"recall@100m": 0.5}
    calibration = metadata["calibration"]
    assert calibration["frames"] == 4 and calibration["beam_width"] == 2
    assert calibration["covariance_scale"] > 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() == info["sha256"]
    # finalize embedded the map with the shipped model: a Localizer opens it
    assert pyramid.load_embeddings(read_header(out)["encoder_hash"]).shape[0] == \
        pyramid.tree.num_views


def test_tool_reports_bad_input_in_one_line(tmp_path, capsys):
    assert _tool().main(["prepare", str(tmp_path / "x"), "--train", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train >= 1" in err
