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

"""The largest map root a raster covers (``jzi map build --fit``)."""
import numpy as np
import pyproj
import pytest

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402, I100 (after the importorskip)

from jzi_ros.cli.main import main  # noqa: E402
from jzi_ros.maps.fit import fit_root, largest_square  # noqa: E402
from jzi_ros.maps.pyramid import MapPyramid  # noqa: E402


def _brute(mask):
    best = (0, 0, 0)
    rows, cols = mask.shape
    for side in range(1, min(rows, cols) + 1):
        for r in range(rows - side + 1):
            for c in range(cols - side + 1):
                if mask[r:r + side, c:c + side].all():
                    best = (r, c, side)
                    break
            if best[2] == side:
                break
        if best[2] < side:
            break
    return best[2]


def test_largest_square_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(30):
        mask = rng.random((14, 17)) < 0.85
        r, c, side = largest_square(mask)
        assert side == _brute(mask)
        assert side == 0 or mask[r:r + side, c:c + side].all()
    assert largest_square(np.zeros((4, 4), bool)) == (0, 0, 0)


def test_fit_finds_the_covered_square_and_the_map_has_no_nodata(tmp_path, capsys):
    # a 1200 x 800 m UTM raster whose western 300 m are black (untagged no-data)
    rng = np.random.default_rng(1)
    image = rng.integers(30, 220, (3, 400, 600), dtype=np.uint8)
    image[:, :, :150] = 0
    path = tmp_path / "utm.tif"
    with rasterio.open(path, "w", driver="GTiff", width=600, height=400, count=3,
                       dtype="uint8", crs="EPSG:32618",
                       transform=Affine(2.0, 0, 500000.0, 0, -2.0, 4300000.0)) as dst:
        dst.write(image)
    lat, lon, size = fit_root(path)
    assert 760 <= size <= 800  # the covered part is 900 x 800 m: the square is ~800 m
    x, y = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32618", always_xy=True).transform(
        lon, lat)
    assert x - size / 2 >= 500300.0 - 1.0  # clear of the black western strip
    assert x + size / 2 <= 501200.0 and y - size / 2 >= 4299200.0 and y + size / 2 <= 4300000.0
    out = tmp_path / "map"
    assert main(["map", "build", str(path), "--out", str(out), "--fit", "--depth", "2",
                 "--tile-px", "32", "--max-nodata", "0", "--no-progress"]) == 0
    assert "fitted root" in capsys.readouterr().out
    pyramid = MapPyramid.open(out)
    assert pyramid.tree.size_m == pytest.approx(size)
    assert np.asarray(pyramid.views[0]).reshape(-1, 3).any(axis=1).mean() > 0.995
