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

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree, haversine_m, offset_latlon, OutsideRootError, parse_path


@pytest.fixture(scope="module")
def paper_tree() -> CellTree:
    # The paper's Washington DC map: a 10 km square centred 2 km east of (38.8936, -77.0116).
    lat, lon = offset_latlon(38.8936, -77.0116, 2000.0, 0.0)
    return CellTree(lat, lon, 10_000.0, grid=4, depth=4)


@pytest.mark.parametrize("lat, lon, expected", [
    (38.908513, -76.940898, (7, 6, 6, 5)),
    (38.918031, -76.94114, (3, 14, 10, 9)),
])
def test_reproduces_paper_labels(paper_tree, lat, lon, expected):
    assert paper_tree.path_of(lat, lon) == expected


def test_cell_sides_match_paper(paper_tree):
    assert [paper_tree.cell_side(lv) for lv in range(5)] == pytest.approx(
        [10_000, 2_500, 625, 156.25, 39.0625])
    assert paper_tree.num_views == 1 + 16 + 256 + 4096


def test_row_zero_is_north_col_zero_is_west():
    tree = CellTree(45.0, 7.0, 1000.0, grid=4, depth=1)
    assert tree.path_of_local(-400, 400) == (0,)  # north-west corner cell
    assert tree.path_of_local(400, 400) == (3,)  # north-east
    assert tree.path_of_local(-400, -400) == (12,)  # south-west
    assert tree.path_of_local(400, -400) == (15,)  # south-east
    assert tree.cell_center_local((0,)) == pytest.approx((-375, 375))


def test_outside_root_raises_and_try_returns_none(paper_tree):
    with pytest.raises(OutsideRootError, match="outside"):
        paper_tree.path_of(38.0, -77.0)
    assert paper_tree.try_path_of(38.0, -77.0) is None
    with pytest.raises(OutsideRootError):
        paper_tree.path_of_local(5000.1, 0)


def test_bad_construction_and_paths_are_clear_errors():
    with pytest.raises(JziError, match="size_m"):
        CellTree(10, 10, -5)
    with pytest.raises(JziError, match="grid"):
        CellTree(10, 10, 100, grid=1)
    with pytest.raises(JziError, match="latitude"):
        CellTree(95, 10, 100)
    tree = CellTree(10, 10, 100, grid=3, depth=2)
    with pytest.raises(JziError, match="outside 0..8"):
        tree.cell_center((9,))
    with pytest.raises(JziError, match="longer"):
        tree.cell_center((1, 2, 3))
    with pytest.raises(JziError, match="integers"):
        parse_path("7,x")


def test_view_table_order_and_inverse():
    tree = CellTree(0.0, 0.0, 100.0, grid=3, depth=3)
    paths = list(tree.view_paths())
    assert len(paths) == tree.num_views == 1 + 9 + 81
    assert [tree.view_index(p) for p in paths] == list(range(tree.num_views))
    assert [tree.path_of_view(i) for i in range(tree.num_views)] == paths
    prefixes = np.array([p for p in paths if len(p) == 2])
    assert tree.view_indices(prefixes).tolist() == [tree.view_index(p) for p in prefixes]
    assert tree.children((4,))[0] == (4, 0) and tree.parent((4, 0)) == (4,)


def test_vectorised_centres_match_scalar():
    tree = CellTree(52.0, 13.0, 2000.0, grid=4, depth=3)
    rng = np.random.default_rng(0)
    paths = rng.integers(0, 16, size=(50, 3))
    expected = [tree.cell_center_local(p) for p in paths]
    assert tree.cell_centers_local(paths) == pytest.approx(np.array(expected))


def test_from_bounds_covers_box():
    tree = CellTree.from_bounds(44.0500, -123.0754, 44.0623, -123.0625, grid=4, depth=3)
    for lat in (44.0500, 44.0623):
        for lon in (-123.0754, -123.0625):
            assert tree.try_path_of(lat, lon) is not None
    assert 1000 < tree.size_m < 1500


def test_dict_round_trip():
    tree = CellTree(1.5, 2.5, 300.0, grid=2, depth=5)
    assert CellTree.from_dict(tree.to_dict()) == tree


trees = st.builds(
    CellTree,
    center_lat=st.floats(-70, 70), center_lon=st.floats(-179, 179),
    size_m=st.floats(50, 50_000), grid=st.integers(2, 5), depth=st.integers(1, 5))


@settings(max_examples=60, deadline=None)
@given(tree=trees, data=st.data())
def test_path_centre_path_round_trip(tree, data):
    path = tuple(data.draw(st.lists(st.integers(0, tree.num_actions - 1),
                                    min_size=tree.depth, max_size=tree.depth)))
    lat, lon = tree.cell_center(path)
    assert tree.path_of(lat, lon) == path


@settings(max_examples=60, deadline=None)
@given(tree=trees, u=st.floats(-0.4999, 0.4999), v=st.floats(-0.4999, 0.4999))
def test_point_inside_its_cell_and_near_its_centre(tree, u, v):
    lat, lon = tree.to_latlon(u * tree.size_m, v * tree.size_m)
    path = tree.path_of(lat, lon)
    east, north = tree.to_local(lat, lon)
    west, south, east_b, north_b = tree.cell_bounds_local(path)
    tol = 1e-6 * tree.size_m
    assert west - tol <= east <= east_b + tol and south - tol <= north <= north_b + tol
    c_east, c_north = tree.cell_center_local(path)
    half_diagonal = tree.cell_side(tree.depth) * math.sqrt(2) / 2
    assert math.hypot(east - c_east, north - c_north) <= half_diagonal + tol


def test_haversine_agrees_with_local_frame():
    tree = CellTree(38.9, -77.0, 10_000.0)
    lat, lon = tree.to_latlon(3000.0, -4000.0)
    assert haversine_m(38.9, -77.0, lat, lon) == pytest.approx(5000.0, rel=3e-3)
