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

"""``jzi map build|embed|info|preview`` through the real CLI entry point."""
from __future__ import annotations

import json
import sys
import types

import cv2
import numpy as np
import pyproj
import pytest

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402, I100 (after the importorskip)

from jzi_ros.cli.main import main  # noqa: E402
from jzi_ros.maps.pyramid import MapPyramid  # noqa: E402

LAT, LON = 44.05, -123.07


def geotiff(path, with_crs=True):
    """600 m of UTM 10N around (LAT, LON): west half green, east half blue, 1 m pixels."""
    x, y = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32610",
                                       always_xy=True).transform(LON, LAT)
    data = np.zeros((3, 600, 600), dtype=np.uint8)
    data[1, :, :300] = 200
    data[2, :, 300:] = 200
    with rasterio.open(path, "w", driver="GTiff", width=600, height=600, count=3,
                       dtype="uint8", crs="EPSG:32610" if with_crs else None,
                       transform=Affine(1.0, 0.0, x - 300, 0.0, -1.0, y + 300)) as dst:
        dst.write(data)
    return path


def build_args(src, out, *extra):
    return ["map", "build", str(src), "--out", str(out), "--center", f"{LAT},{LON}",
            "--size", "400", "--grid", "2", "--depth", "3", "--tile-px", "32",
            "--no-progress", *extra]


@pytest.fixture
def built(tmp_path, capsys):
    src = geotiff(tmp_path / "src.tif")
    assert main(build_args(src, tmp_path / "map")) == 0
    out = capsys.readouterr().out
    assert "tiles/s" in out and "21 tiles of 32 px" in out
    return tmp_path / "map"


def test_build_info_preview(built, tmp_path, capsys):
    pyramid = MapPyramid.open(built)
    # West half green, east half blue, north-up: the root view's left is green.
    root = pyramid.view(()).astype(int)
    assert root[16, 4, 1] > 150 and root[16, 4, 2] < 50
    assert root[16, 28, 2] > 150 and root[16, 28, 1] < 50
    assert main(["map", "info", str(built)]) == 0
    out = capsys.readouterr().out
    assert "grid 2 x 2, depth 3, 21 views of 32 px" in out
    assert "400.00" in out and "100.00" in out and "50.00" in out
    assert "embeddings none" in out
    assert main(["map", "info", str(built), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tile_px"] == 32
    png = tmp_path / "p.png"
    assert main(["map", "preview", str(built), "--path", "1,2", "--out", str(png)]) == 0
    image = cv2.imread(str(png))
    assert image.shape[0] > 32 and image.shape[1] == 3 * 32 + 2 * 4
    # The chosen child (action 1 = north-east quadrant) is outlined in red on the root.
    bgr = image[-32:, :32].astype(int)
    red = (bgr[..., 2] > 200) & (bgr[..., 1] < 100) & (bgr[..., 0] < 100)
    assert red[:, 16:].sum() > 10 and red[16:, :16].sum() == 0


def test_build_with_bounds(tmp_path, capsys):
    src = geotiff(tmp_path / "src.tif")
    args = ["map", "build", str(src), "--out", str(tmp_path / "m"), "--bounds",
            "44.049,-123.071,44.051,-123.069", "--depth", "2", "--tile-px", "16",
            "--no-progress"]
    assert main(args) == 0
    tree = MapPyramid.open(tmp_path / "m").tree
    assert tree.grid == 4 and tree.depth == 2
    assert abs(tree.center_lat - 44.05) < 1e-9 and 150 < tree.size_m < 230


def one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_build_errors(tmp_path, capsys):
    nocrs = geotiff(tmp_path / "nocrs.tif", with_crs=False)
    assert main(build_args(nocrs, tmp_path / "map")) == 2
    one_error_line(capsys, "nocrs.tif has no CRS", "--crs")
    assert not (tmp_path / "map").exists()
    assert main(build_args(nocrs, tmp_path / "map", "--crs", "EPSG:32610")) == 0
    capsys.readouterr()
    assert main(build_args(nocrs, tmp_path / "map", "--crs", "EPSG:32610")) == 2
    one_error_line(capsys, "already exists", "--overwrite")
    far = ["map", "build", str(nocrs), "--out", str(tmp_path / "far"), "--center",
           "45.0,-123.0", "--size", "400", "--crs", "EPSG:32610", "--no-progress"]
    assert main(far) == 2
    one_error_line(capsys, "nocrs.tif does not cover the root", "level 0 100.0%", "--max-nodata")
    assert not (tmp_path / "far").exists()
    assert main(["map", "build", str(nocrs), "--out", str(tmp_path / "x"), "--center",
                 "44.05", "--size", "10"]) == 2
    one_error_line(capsys, "--center '44.05'", "LAT,LON")
    assert main(["map", "build", str(nocrs), "--out", str(tmp_path / "x"), "--center",
                 "44.05,-123.07"]) == 2
    one_error_line(capsys, "--center needs --size")
    assert main(build_args(tmp_path / "missing.tif", tmp_path / "x")) == 2
    one_error_line(capsys, "missing.tif does not exist")


def test_info_on_corrupt_map(built, capsys):
    (built / "manifest.json").write_text("{")
    assert main(["map", "info", str(built)]) == 2
    one_error_line(capsys, "manifest.json is corrupt")


def test_embed_passes_arguments_to_embed_map(built, tmp_path, monkeypatch, capsys):
    calls = []

    def embed_map(map_dir, model_path, batch_size=32, device="cpu", progress=True):
        calls.append((str(map_dir), str(model_path), batch_size, device, progress))
        return built / "embeddings.safetensors"

    # Stand-in for stream B's module so only the CLI wiring is under test here.
    monkeypatch.setitem(sys.modules, "jzi_ros.maps.embed",
                        types.SimpleNamespace(embed_map=embed_map))
    assert main(["map", "embed", str(built), "--model", "m.safetensors", "--batch-size", "8",
                 "--no-progress"]) == 0
    assert calls == [(str(built), "m.safetensors", 8, "cpu", False)]
    assert "embeddings written" in capsys.readouterr().out


def test_georef_sigma_set_on_build_changed_by_map_set_and_shown_by_info(tmp_path, capsys):
    src = geotiff(tmp_path / "src.tif")
    assert main(build_args(src, tmp_path / "map", "--georef-sigma-m", "2.45")) == 0
    assert "georef     1-sigma 2.45 m per horizontal axis" in capsys.readouterr().out
    assert MapPyramid.open(tmp_path / "map").georef_sigma_m == 2.45
    assert main(["map", "set", str(tmp_path / "map"), "--georef-sigma-m", "11.2"]) == 0
    assert "1-sigma 11.2 m" in capsys.readouterr().out
    assert main(["map", "info", str(tmp_path / "map")]) == 0
    assert "georef     1-sigma 11.2 m per horizontal axis" in capsys.readouterr().out
    assert main(["map", "info", str(tmp_path / "map"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["georef_sigma_m"] == 11.2
    for bad in ("-3", "nan"):
        assert main(["map", "set", str(tmp_path / "map"), "--georef-sigma-m", bad]) == 2
        one_error_line(capsys, "manifest.json: georef_sigma_m", "finite number of metres >= 0")
    assert MapPyramid.open(tmp_path / "map").georef_sigma_m == 11.2
    assert main(build_args(src, tmp_path / "bad", "--georef-sigma-m", "-1")) == 2
    one_error_line(capsys, "--georef-sigma-m", "georef_sigma_m = -1.0")
    assert not (tmp_path / "bad").exists()


def test_info_says_when_the_georef_sigma_is_unknown(built, capsys):
    assert main(["map", "info", str(built)]) == 0
    assert (f"1-sigma unknown (0 m used: refined fixes ignore the imagery's georeferencing "
            f"error); set it: jzi map set {built} --georef-sigma-m M") in capsys.readouterr().out
