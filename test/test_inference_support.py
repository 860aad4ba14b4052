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

"""The shared test helpers build what they promise (other streams' tests rely on them)."""
import numpy as np
import pytest

from support import make_geotiff, SyntheticWorld, tiny_tree


def test_synthetic_views_are_distinct_and_deterministic():
    tree = tiny_tree(4, 3)
    world, world2 = SyntheticWorld(tree), SyntheticWorld(tree)
    views = np.stack([world.render_view(p, 16) for p in tree.view_paths()])
    again = np.stack([world2.render_view(p, 16) for p in tree.view_paths()])
    assert views.dtype == np.uint8 and views.shape == (tree.num_views, 16, 16, 3)
    assert np.array_equal(views, again)
    flat = views.reshape(len(views), -1).astype(np.float32)
    sq = (flat ** 2).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * flat @ flat.T, 0) / flat.shape[1])
    np.fill_diagonal(dist, np.inf)
    assert dist.min() > 5.0  # every pair of cells differs visibly


def test_child_view_is_a_zoomed_part_of_its_parent():
    tree = tiny_tree(4, 2)
    world = SyntheticWorld(tree)
    root = world.render_view((), 64).astype(np.float32)
    child = world.render_view((5,), 16).astype(np.float32)  # row 1, column 1
    assert np.abs(root[16:32, 16:32] - child).mean() < 12.0
    assert np.abs(root[0:16, 0:16] - child).mean() > np.abs(root[16:32, 16:32] - child).mean()


def test_geotiff_covers_the_root(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    tree = tiny_tree(4, 2)
    with rasterio.open(make_geotiff(tmp_path / "w.tif", tree, px=64)) as src:
        west, south, east, north = src.bounds
        assert src.count == 3 and src.crs.to_epsg() == 4326
    for lat, lon in (tree.cell_center((0,)), tree.cell_center((15,))):
        assert south < lat < north and west < lon < east
