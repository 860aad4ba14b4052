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
The demo model's recipe (prepare -> views -> train -> finalize) on a small world, and its tool.

benchmarks/train_demo_model.sh made the shipped model with these steps; here they run on a
700 m world with a few days and views and a random tiny model instead of a trained one.
"""
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from jzi_ros.demo import recipe
from jzi_ros.demo.flow import DEMO_CARD_KEY
from jzi_ros.demo.stages import flight_day
from jzi_ros.demo.world import WorldSpec
from jzi_ros.errors import JziError
from jzi_ros.maps.pyramid import MapPyramid
from jzi_ros.model.checkpoint import read_header
from jzi_ros.training.manifest import read_manifest
from jzi_ros.training.render import RenderSpec, ViewRenderer, write_view_set
from support import make_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SPEC = WorldSpec(seed=3, size_m=700.0, margin_m=100.0, gsd_m=1.0)
TRAIN_DAYS, VAL_DAYS = (100, 101), (200,)


def _tool():
    spec = importlib.util.spec_from_file_location("demo_recipe",
                                                  ROOT / "benchmarks" / "demo_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "prepared"
    recipe.prepare(out, SPEC, TRAIN_DAYS, VAL_DAYS, progress=False)
    return out


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.mark.slow
def test_prepare_writes_world_map_and_one_raster_per_day(prepared):
    card = json.loads((prepared / "demo_card.json").read_text())
    assert {k: card[k] for k in ("world", "tile_px", "grid", "depth", "train_days",
                                 "val_days")} == {
        "world": SPEC.to_dict(), "tile_px": recipe.TILE_PX, "grid": recipe.GRID,
        "depth": recipe.DEPTH, "train_days": list(TRAIN_DAYS), "val_days": list(VAL_DAYS)}
    # a day is the style the flight of that seed would be flown in
    assert card["styles"]["100"] == flight_day(100)[1].to_dict()
    pyramid = MapPyramid.open(prepared / "map")
    assert (pyramid.tree.grid, pyramid.tree.depth) == (recipe.GRID, recipe.DEPTH)
    assert pyramid.tree.size_m == SPEC.size_m
    assert sorted(p.name for p in (prepared / "days" / "train").iterdir()) == [
        "day0100.tif", "day0101.tif"]
    assert [p.name for p in (prepared / "days" / "val").iterdir()] == ["day0200.tif"]
    # same world, other days: the same georeferencing, different pixels
    world = _read(prepared / "world.tif")
    days = [_read(recipe.day_raster(prepared, "train", d)) for d in TRAIN_DAYS]
    with rasterio.open(prepared / "world.tif") as a, \
            rasterio.open(recipe.day_raster(prepared, "val", 200)) as b:
        assert a.crs == b.crs and a.transform == b.transform
    for day in days:
        assert day.shape == world.shape
        assert np.abs(day.astype(int) - world).mean() > 5
    assert np.abs(days[0].astype(int) - days[1]).mean() > 5


def test_prepare_refuses_a_flight_day():
    with pytest.raises(JziError, match="flight seeds \\[0\\]"):
        recipe.prepare(Path("unused"), SPEC, (0, 100), VAL_DAYS, progress=False)
    with pytest.raises(JziError, match="overlapping \\[100\\]"):
        recipe.prepare(Path("unused"), SPEC, (100,), (100,), progress=False)


def test_shipped_days_keep_every_flight_out():
    days = set(recipe.TRAIN_DAYS) | set(recipe.VAL_DAYS)
    assert not days & set(range(recipe.FIRST_TRAINING_DAY))
    assert not set(recipe.TRAIN_DAYS) & set(recipe.VAL_DAYS)
    flown = {str(flight_day(seed)[1].to_dict()) for seed in range(4)}
    assert not flown & {str(flight_day(seed)[1].to_dict()) for seed in days}


@pytest.mark.slow
def test_finalize_calibrates_on_the_views_and_stamps_the_demo_card(prepared, tmp_path):
    pyramid = MapPyramid.open(prepared / "map")
    spec = RenderSpec(sources=(str(recipe.day_raster(prepared, "val", 200)),),
                      sampling=recipe.SAMPLING, photometric=0.0)
    renderer = ViewRenderer.from_spec(spec, pyramid.tree)
    val = write_view_set(renderer, tmp_path / "val", 4, "val", seed=1, progress=False)
    renderer.close()
    assert [s.source for s in read_manifest(val / "manifest.csv")] == ["day0200.tif"] * 4
    run = tmp_path / "run"
    run.mkdir()
    make_tiny_checkpoint(run, pyramid, name="best.safetensors", embed=False,
                         metadata={"metrics": {"recall@100m": 0.5}})
    out = tmp_path / "shipped" / "demo_model.safetensors"
    out.parent.mkdir()
    info = recipe.finalize(run, prepared, val / "manifest.csv", out, beam=2)
    metadata = read_header(out)["metadata"]
    assert metadata[DEMO_CARD_KEY]["world"] == SPEC.to_dict()
    assert metadata[DEMO_CARD_KEY]["trained"] == {"recall@100m": 0.5}
    assert metadata[DEMO_CARD_KEY]["train_days"] == list(TRAIN_DAYS)
    calibration = metadata["calibration"]
    assert calibration["frames"] == 4 and calibration["beam_width"] == 2
    assert calibration["covariance_scale"] > 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() == info["sha256"]
    # finalize embedded the map with the shipped model: a Localizer opens it
    assert pyramid.load_embeddings(read_header(out)["encoder_hash"]).shape[0] == \
        pyramid.tree.num_views
    # calibrate-flights: the same model recalibrated on a validation flight of another day
    with pytest.raises(JziError, match="seed 0 is the demo's test flight"):
        recipe.calibrate_on_flights(tmp_path / "demo", [0, 1], out)
    again = recipe.calibrate_on_flights(tmp_path / "demo", [1], out, beam=2, frames=8)
    assert (tmp_path / "demo" / "validation_seed1").is_dir()
    flights = read_header(out)["metadata"]["calibration"]
    assert 2 <= flights["frames"] <= 8 and flights["beam_width"] == 2
    assert flights == again["calibration"] != calibration
    assert again["calibrated_on"] == "validation flights (seeds 1)"
    assert again["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() != info["sha256"]
    assert read_header(out)["metadata"][DEMO_CARD_KEY] == metadata[DEMO_CARD_KEY]


def test_tool_reports_bad_input_in_one_line(tmp_path, capsys):
    assert _tool().main(["prepare", str(tmp_path / "x"), "--train-days", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "flight seeds [5]" in err
