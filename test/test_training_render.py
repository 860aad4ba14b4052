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
Training views rendered from georeferenced rasters.

The same synthetic ground is written as GeoTIFFs (in the tree's own frame and in Web
Mercator) and held as an in-memory array: a camera must see the same image through both, so
the window read, the reprojection and the homography agree with the exact in-memory render.
"""
import json
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
import torch  # noqa: E402, I100 (after the importorskip)
from torch.utils.data import DataLoader  # noqa: E402

from jzi_ros.cli.main import main as jzi  # noqa: E402
from jzi_ros.errors import JziError  # noqa: E402
from jzi_ros.maps.build import tree_crs  # noqa: E402
from jzi_ros.model.config import ModelConfig  # noqa: E402
from jzi_ros.training.camera import CameraModel, CameraPose  # noqa: E402
from jzi_ros.training.config import load_train_config  # noqa: E402
from jzi_ros.training.data import RenderedZoomDataset  # noqa: E402
from jzi_ros.training.manifest import read_manifest, Sample  # noqa: E402
from jzi_ros.training.render import (ArrayGround, check_not_test, RasterGround,  # noqa: E402
                                     RenderSpec, ViewRenderer, write_view_set)
from support import make_tiny_map, SyntheticWorld, tiny_tree  # noqa: E402

RES = 512


def world_rasters(tmp_path: Path, tree, margin: float = 0.25, half_only: bool = False):
    """Return (ArrayGround of the world, GeoTIFF in the tree frame, GeoTIFF in EPSG:3857)."""
    from affine import Affine
    from rasterio.warp import calculate_default_transform, reproject, Resampling

    world = SyntheticWorld(tree, 0, resolution=RES)
    image = world.image.copy()
    if half_only:
        image[:, RES // 2:] = 0  # the eastern half has no imagery
    g, h = tree.size_m / RES, tree.size_m / 2
    # pad the root with reflected margins so cameras near the edge still see ground
    pad = int(RES * margin)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    if half_only:
        padded[:, pad + RES // 2:] = 0
    transform = Affine(g, 0, -h - pad * g, 0, -g, h + pad * g)
    local = tmp_path / "local.tif"
    profile = {"driver": "GTiff", "count": 3, "dtype": "uint8"}
    with rasterio.open(local, "w", width=padded.shape[1], height=padded.shape[0],
                       crs=tree_crs(tree), transform=transform, **profile) as dst:
        dst.write(np.moveaxis(padded, 2, 0))
    merc = tmp_path / "mercator.tif"
    with rasterio.open(local) as src:
        dst_transform, width, height = calculate_default_transform(
            src.crs, "EPSG:3857", src.width, src.height, *src.bounds)
        out = np.zeros((3, height, width), np.uint8)
        reproject(src.read(), out, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=dst_transform, dst_crs="EPSG:3857",
                  resampling=Resampling.bilinear)
    with rasterio.open(merc, "w", width=width, height=height, crs="EPSG:3857",
                       transform=dst_transform, **profile) as dst:
        dst.write(out)
    to_local = np.array([[g, 0, -h - pad * g], [0, -g, h + pad * g], [0, 0, 1]])
    return ArrayGround(padded, to_local, "array"), local, merc


@pytest.mark.parametrize("pose", [CameraPose(100.0, -200.0, 300.0, 0.0, 90.0),
                                  CameraPose(-300.0, 250.0, 400.0, 137.0, 70.0),
                                  CameraPose(790.0, -790.0, 250.0, 300.0, 80.0)])
def test_raster_views_match_the_exact_in_memory_render(tmp_path, pose):
    tree = tiny_tree(depth=2, size_m=1600.0)
    exact, local, merc = world_rasters(tmp_path, tree)
    camera = CameraModel(160, 120, 70.0)
    want, seen = exact.view(camera, pose)
    assert seen == 1.0 and want.std() > 10  # a textured view, fully on the raster
    for path, tolerance in ((local, 1.0), (merc, 1.0)):
        got, got_seen = RasterGround(path, tree).view(camera, pose)
        assert got.shape == (120, 160, 3)
        assert got_seen == pytest.approx(1.0)
        # mean grey-level difference: resampling noise (~0.2), not a view 10 m off (~3)
        assert np.abs(got.astype(float) - want).mean() < tolerance, path.name
    # a view 60 m away differs by far more: the tolerance does detect a misplaced camera
    shifted = CameraPose(pose.east_m + 60, pose.north_m, pose.altitude_m, pose.heading_deg,
                         pose.pitch_deg)
    other, _ = exact.view(camera, shifted)
    assert np.abs(other.astype(float) - want).mean() > 8.0


def test_views_are_seeded_labelled_at_nadir_and_follow_the_sampling(tmp_path):
    tree = tiny_tree(depth=2, size_m=1600.0)
    _, local, _ = world_rasters(tmp_path, tree)
    spec = RenderSpec(sources=(str(local),), sampling={
        "width": 96, "height": 72, "heading_deg": (-10, 10), "altitude_m": (200, 300),
        "pitch_deg": (80, 90)})
    renderer = ViewRenderer.from_spec(spec, tree)
    a = renderer.draw(np.random.default_rng(3))
    b = renderer.draw(np.random.default_rng(3))
    c = renderer.draw(np.random.default_rng(4))
    assert np.array_equal(a.image, b.image) and a.latitude == b.latitude
    assert not np.array_equal(a.image, c.image)
    for view in (a, c):
        assert view.heading_deg <= 10 or view.heading_deg >= 350
        assert 200 <= view.altitude_m <= 300 and 80 <= view.pitch_deg <= 90
        lat, lon = tree.to_latlon(view.east_m, view.north_m)
        assert (lat, lon) == pytest.approx((view.latitude, view.longitude))
        assert max(abs(view.east_m), abs(view.north_m)) <= tree.size_m / 2
        assert view.source == "local.tif"


def test_views_that_miss_the_imagery_are_redrawn_or_refused(tmp_path):
    tree = tiny_tree(depth=2, size_m=1600.0)
    _, local, _ = world_rasters(tmp_path, tree, half_only=True)
    sampling = {"width": 64, "height": 48, "altitude_m": (100, 120), "pitch_deg": (85, 90)}
    spec = RenderSpec(sources=(str(local),), sampling=sampling, min_valid=0.95)
    renderer = ViewRenderer.from_spec(spec, tree)
    easts = [renderer.draw(np.random.default_rng(i)).east_m for i in range(12)]
    assert max(easts) < 60  # nadirs over the blank eastern half were redrawn
    ground = RasterGround(local, tree)
    image, seen = ground.view(CameraModel(64, 48, 60), CameraPose(500, 0, 100))
    assert seen == 0.0 and image.max() == 0
    blank = ViewRenderer([_Blank()], tree, RenderSpec(sources=("x",), sampling=sampling))
    with pytest.raises(JziError, match="cover the map's root"):
        blank.draw(np.random.default_rng(0))


class _Blank:
    name = "blank"

    def view(self, camera, pose):
        return np.zeros((camera.height, camera.width, 3), np.uint8), 0.0


def test_jzi_views_writes_a_manifest_training_refuses_to_learn_from(tmp_path):
    pyramid = make_tiny_map(tmp_path, depth=2, tile_px=16, size_m=1600.0)
    _, local, merc = world_rasters(tmp_path, pyramid.tree)
    out = tmp_path / "test_views"
    assert jzi(["views", str(merc), "--map", str(pyramid.path), "--out", str(out),
                "--count", "5", "--size", "64x48", "--altitude-m", "150,200",
                "--seed", "7", "--no-progress"]) == 0
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == 5 and all(r.split == "test" and r.source == "mercator.tif"
                                  for r in rows)
    assert all(150 <= r.altitude <= 200 and r.pitch is not None and r.image.is_file()
               and 60 <= r.hfov <= 80 for r in rows)  # the camera's field of view is recorded
    info = json.loads((out / "views.json").read_text())
    assert info["seed"] == 7 and info["sources_sha256"]["mercator.tif"]
    # the same seed writes the same set
    again = write_view_set(ViewRenderer.from_spec(RenderSpec(
        sources=(str(merc),), sampling=info["render"]["sampling"], photometric=0.0),
        pyramid.tree), tmp_path / "again", 5, "test", 7, progress=False)
    assert [r.latitude for r in read_manifest(again / "manifest.csv")] == \
        [r.latitude for r in rows]
    spec = RenderSpec(sources=(str(merc),))
    with pytest.raises(JziError, match="test date must stay unseen"):
        check_not_test(spec, rows, "m.csv")
    check_not_test(RenderSpec(sources=(str(local),)), rows, "m.csv")  # another raster: fine
    check_not_test(spec, [Sample(Path("a.jpg"), 0.0, 0.0, source="mercator.tif")], "m.csv")


def test_rendered_dataset_is_fresh_per_epoch_and_reproducible_in_workers(tmp_path):
    tree = tiny_tree(depth=2, size_m=1600.0)
    _, local, _ = world_rasters(tmp_path, tree)
    spec = RenderSpec(sources=(str(local),), samples_per_epoch=4,
                      sampling={"width": 64, "height": 48, "altitude_m": (150, 200)})
    config = ModelConfig.preset("tiny", grid=4, depth=2)
    dataset = RenderedZoomDataset(spec, tree, config, augment=True, seed=1)
    first = dataset[2]
    assert first["ground"].shape[-1] == config.encoder.image_size
    assert torch.equal(first["ground"], dataset[2]["ground"])
    dataset.set_epoch(1)
    assert not torch.equal(first["ground"], dataset[2]["ground"])
    dataset.set_epoch(0)
    loaded = next(iter(DataLoader(dataset, batch_size=4, num_workers=1)))
    assert torch.equal(loaded["ground"][2], first["ground"])
    assert torch.equal(loaded["path"][2], first["path"])
    assert torch.equal(loaded["view_rows"][2, 0], torch.tensor(0))


def test_train_config_render_block_resolves_sources_and_validates(tmp_path):
    (tmp_path / "cfg.yaml").write_text("map: m\nout: o\nrender:\n  sources: [a.tif]\n"
                                       "  samples_per_epoch: 8\n")
    config = load_train_config(tmp_path / "cfg.yaml")
    assert config.manifest == "" and config.render_spec().sources == (str(tmp_path / "a.tif"),)
    with pytest.raises(JziError, match="render.sampling"):
        load_train_config(None, ["map=m", "out=o", "render.sources=a.tif",
                                 "render.sampling.altitude=3"])
    with pytest.raises(JziError, match="'manifest' is required"):
        load_train_config(None, ["map=m", "out=o"])


def test_training_on_rendered_views_validates_on_a_written_set(tmp_path):
    from jzi_ros.training.loop import train

    torch.set_num_threads(1)
    pyramid = make_tiny_map(tmp_path, depth=2, tile_px=16, size_m=1600.0)
    _, local, merc = world_rasters(tmp_path, pyramid.tree)
    sampling = {"width": 64, "height": 48, "altitude_m": (150, 200)}
    renderer = ViewRenderer.from_spec(RenderSpec(sources=(str(merc),), sampling=sampling),
                                      pyramid.tree)
    val = write_view_set(renderer, tmp_path / "val", 4, "val", 0, progress=False)
    config = load_train_config(None, [
        f"manifest={val / 'manifest.csv'}", f"map={pyramid.path}", f"out={tmp_path / 'run'}",
        "model_preset=tiny", "num_workers=0", "epochs=2", "batch_size=4",
        f"render.sources=[{local}]", "render.samples_per_epoch=8",
        "render.sampling.width=64", "render.sampling.height=48",
        "render.sampling.altitude_m=[150, 200]"])
    summary = train(config, progress=False, log=lambda _msg: None)
    assert summary["val_samples"] == 4 and summary["epochs"] == 2
    assert 0.0 <= summary["final"]["recall@100m"] <= 1.0
    assert summary["final"]["step"] == 4  # 8 rendered views per epoch, batches of 4
    assert not (tmp_path / "run" / "val.csv").exists()  # the manifest named its val rows


def test_rows_held_out_by_val_fraction_are_written_for_calibration(tmp_path):
    from test_training_loop import make_dataset

    from jzi_ros.training.loop import train

    torch.set_num_threads(1)
    pyramid = make_tiny_map(tmp_path, depth=2, tile_px=16)
    manifest = make_dataset(tmp_path, pyramid, 10)
    config = load_train_config(None, [
        f"manifest={manifest}", f"map={pyramid.path}", f"out={tmp_path / 'run'}",
        "model_preset=tiny", "num_workers=0", "epochs=1", "val_fraction=0.3",
        "augment=false"])
    summary = train(config, progress=False, log=lambda _msg: None)
    held = read_manifest(tmp_path / "run" / "val.csv")
    assert len(held) == summary["val_samples"] == 3 and {r.split for r in held} == {"val"}
    train_images = {s.image for s in read_manifest(manifest)}
    assert {r.image for r in held} <= train_images


@pytest.mark.parametrize("budget", ["max_steps=3", "max_minutes=0.0001"])
def test_a_spent_budget_stops_validates_and_saves(tmp_path, budget):
    from test_training_loop import make_dataset

    from jzi_ros.training.loop import train

    torch.set_num_threads(1)
    pyramid = make_tiny_map(tmp_path, depth=2, tile_px=16)
    manifest = make_dataset(tmp_path, pyramid, 12)
    lines = []
    config = load_train_config(None, [
        f"manifest={manifest}", f"map={pyramid.path}", f"out={tmp_path / 'run'}",
        "model_preset=tiny", "num_workers=0", "epochs=50", "batch_size=2", "val_every=10",
        "augment=false", budget])
    summary = train(config, progress=False, log=lines.append)
    final = summary["final"]
    assert summary["epochs"] == 1 and "val_loss" in final  # validated although val_every=10
    assert final["step"] == (3 if budget.startswith("max_steps") else 1)
    assert (tmp_path / "run" / "best.safetensors").exists()
    assert any("budget reached" in line for line in lines)
    assert any("first step" in line for line in lines)


RECIPES = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.yaml")) + sorted(
    (Path(__file__).resolve().parents[1] / "jzi_ros" / "training" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_shipped_training_config_validates(recipe):
    import yaml

    rendered = "render" in yaml.safe_load(recipe.read_text())
    # the recipe's script names the rasters of a render block
    config = load_train_config(recipe, ["manifest=m.csv", "map=m", "out=o"]
                               + (["render.sources=[a.tif]"] if rendered else []))
    model = config.model_config()
    assert model.encoder.image_size > 0 and config.batch_size >= 1
    assert (config.render_spec() is not None) == rendered


def test_the_gpu_recipe_trains_on_rendered_views(tmp_path):
    """The GPU recipe's architecture and render block, one step on the CPU (no GPU needed)."""
    from jzi_ros.training.loop import train

    torch.set_num_threads(1)
    pyramid = make_tiny_map(tmp_path, depth=2, tile_px=16, size_m=1600.0)
    _, local, merc = world_rasters(tmp_path, pyramid.tree)
    val = write_view_set(ViewRenderer.from_spec(RenderSpec(
        sources=(str(merc),), sampling={"width": 64, "height": 48, "altitude_m": (150, 200)}),
        pyramid.tree), tmp_path / "val", 2, "val", 0, progress=False)
    recipe = next(p for p in RECIPES if p.name == "any_area_gpu.yaml")
    config = load_train_config(recipe, [
        f"manifest={val / 'manifest.csv'}", f"map={pyramid.path}", f"out={tmp_path / 'run'}",
        "device=cpu", "amp=off", "num_workers=0", "batch_size=2", "max_steps=1",
        "val_batch_size=2", f"render.sources=[{local}]", "render.samples_per_epoch=2",
        "render.sampling.altitude_m=[150, 200]"])
    summary = train(config, progress=False, log=lambda _msg: None)
    assert summary["final"]["step"] == 1
    card = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert card["final"]["step"] == 1
    from jzi_ros.model.checkpoint import read_header
    header = read_header(tmp_path / "run" / "last.safetensors")
    assert header["config"]["encoder"]["kind"] == "resnet"
    assert header["config"]["decoder"]["layers"] == 6
