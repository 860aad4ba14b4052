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

"""The demo world: deterministic by seed, varied, georeferenced; styles and shadows."""
import numpy as np
import pytest

from jzi_ros.demo.layout import generate_world
from jzi_ros.demo.style import render, shadow_mask, Style
from jzi_ros.demo.world import BUILDING, CLASS_NAMES, WATER, WorldSpec, write_geotiff
from jzi_ros.errors import JziError

SMALL = WorldSpec(seed=3, size_m=700.0, margin_m=100.0, gsd_m=1.0)


@pytest.fixture(scope="module")
def world():
    return generate_world(SMALL)


def test_same_seed_same_world_other_seed_other_world(world):
    again = generate_world(SMALL)
    for name in ("labels", "tone", "height", "pattern", "aspect"):
        np.testing.assert_array_equal(getattr(world, name), getattr(again, name))
    np.testing.assert_array_equal(world.car_slots, again.car_slots)
    other = generate_world(WorldSpec(seed=4, size_m=700.0, margin_m=100.0))
    assert np.mean(other.labels != world.labels) > 0.3


def test_world_has_the_expected_size_and_many_classes(world):
    assert world.shape == (900, 900)
    fractions = world.class_fractions()
    assert sum(fractions.values()) == pytest.approx(1.0)
    assert sum(v > 0.002 for v in fractions.values()) >= 8, fractions
    assert set(fractions) == set(CLASS_NAMES)


def test_places_differ_at_every_zoom_level():
    """Neighbouring cells of a 4x4 split at every level have different class histograms."""
    world = generate_world(WorldSpec(seed=0, size_m=1600.0, margin_m=0.0, gsd_m=2.0))
    labels = world.labels
    for cells in (4, 16):
        side = labels.shape[0] // cells
        hists = np.array([[np.bincount(labels[r * side:(r + 1) * side,
                                              c * side:(c + 1) * side].ravel(),
                                       minlength=len(CLASS_NAMES)) / side ** 2
                           for c in range(cells)] for r in range(cells)])
        diffs = np.abs(hists[:, 1:] - hists[:, :-1]).sum(axis=-1)
        assert np.median(diffs) > 0.05, (cells, np.median(diffs))


def test_pixel_local_affine_is_consistent(world):
    a, inv = world.pixel_to_local(), world.local_to_pixel()
    np.testing.assert_allclose(a @ inv, np.eye(3), atol=1e-12)
    east, north, _ = a @ [0.0, 0.0, 1.0]
    assert (east, north) == (-450.0, 450.0)  # outer corner of the north-west pixel
    x, y = world.to_pixels(0.0, 0.0)
    assert (x, y) == (450.0, 450.0)


def test_styles_change_pixels_not_geometry(world):
    rng = np.random.default_rng(0)
    base = render(world, Style.map())
    other = render(world, Style.random(rng))
    assert base.shape == world.shape + (3,) and base.dtype == np.uint8
    assert np.abs(base.astype(int) - other.astype(int)).mean() > 10
    # water is still where water was: darker than the mean in both renderings
    water = world.labels == WATER
    if water.any():
        for image in (base, other):
            assert image[water].mean() < image.mean() + 5


def test_shadows_fall_away_from_the_sun():
    height = np.zeros((60, 60), np.uint8)
    height[28:32, 28:32] = 20
    # sun in the south at 45 deg: a 20 m building casts ~20 m of shadow to the north
    mask = shadow_mask(height, azimuth_deg=180.0, elevation_deg=45.0)
    assert mask[10:27, 29].all() and not mask[33:, 29].any()
    assert not mask[28:32, 28:32].any()  # the roof itself is lit
    assert not mask[:6, 29].any()


def test_buildings_have_roofs_and_heights(world):
    roofs = world.labels == BUILDING
    assert roofs.sum() > 1000
    assert world.height[roofs].min() >= 2


def test_geotiff_is_georeferenced(world, tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.warp import transform as warp_transform

    image = render(world, Style.map())
    path = write_geotiff(world, image, tmp_path / "w.tif")
    with rasterio.open(path) as src:
        assert (src.width, src.height, src.count) == (900, 900, 3)
        np.testing.assert_array_equal(np.moveaxis(src.read(), 0, 2), image)
        # the raster centre is the world's centre lat/lon
        x, y = src.xy(450, 450, offset="ul")
        lons, lats = warp_transform(src.crs, "EPSG:4326", [x], [y])
    assert lats[0] == pytest.approx(SMALL.center_lat, abs=1e-7)
    assert lons[0] == pytest.approx(SMALL.center_lon, abs=1e-7)
    with pytest.raises(JziError, match="does not match"):
        write_geotiff(world, image[:10], tmp_path / "bad.tif")


def test_bad_world_specs_are_refused():
    with pytest.raises(JziError, match="size_m"):
        WorldSpec(size_m=0)
    with pytest.raises(JziError, match="px wide"):
        WorldSpec(size_m=20, margin_m=0)
