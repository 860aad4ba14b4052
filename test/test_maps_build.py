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
Building pyramids from rasters the tests write.

A red marker at a known lat/lon must show up at the expected pixel of the view that contains
it, at every level and from every source kind (GeoTIFF in UTM, Web-Mercator MBTiles, an XYZ
tile folder).
"""
from __future__ import annotations

import os
from pathlib import Path
import sqlite3

import numpy as np
import pyproj
import pytest

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402, I100 (after the importorskip)

from jzi_ros.errors import JziError  # noqa: E402
from jzi_ros.geo import CellTree  # noqa: E402
from jzi_ros.maps.build import build_pyramid  # noqa: E402

CENTER = (44.05, -123.07)
BACKGROUND = (60, 90, 30)
MARKER_HALF_M = 12.0
TILE = 32


def tree(depth: int = 3) -> CellTree:
    return CellTree(CENTER[0], CENTER[1], 800.0, grid=4, depth=depth)


def marker_latlon(t: CellTree) -> tuple[float, float]:
    """Off-centre inside cell (6, 9) so flips or shifts move it to a different pixel."""
    east, north = t.cell_center_local((6, 9))
    lat, lon = t.to_latlon(east + 9.0, north - 6.0)
    return float(lat), float(lon)


def write_geotiff(path: Path, crs: str, marker: tuple[float, float], half_m: float = 500.0,
                  res: float = 1.0, west_only: bool = False, with_crs: bool = True,
                  dtype: str = "uint8") -> Path:
    """Write an RGB raster centred on CENTER in ``crs``: flat background, red square at marker."""
    to_crs = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    cx, cy = to_crs.transform(CENTER[1], CENTER[0])
    mx, my = to_crs.transform(marker[1], marker[0])
    n = int(2 * half_m / res)
    west, north = cx - half_m, cy + half_m
    data = np.empty((3, n, n), dtype=np.float64)
    data[:] = np.array(BACKGROUND, dtype=np.float64)[:, None, None]
    # Marker radius in projected units: the CRS scale factor is ~1 here (UTM/3857 at 44 deg
    # differ; compute it from a metre offset so the marker is MARKER_HALF_M metres on the ground).
    ox, oy = to_crs.transform(*reversed(_offset(marker, MARKER_HALF_M)))
    rx, ry = abs(ox - mx), abs(oy - my)
    cols = west + (np.arange(n) + 0.5) * res
    rows = north - (np.arange(n) + 0.5) * res
    inside = (np.abs(rows - my)[:, None] <= ry) & (np.abs(cols - mx)[None, :] <= rx)
    data[:, inside] = np.array([255, 0, 0], dtype=np.float64)[:, None]
    if west_only:
        data[:, :, n // 2:] = 0
    if dtype == "uint16":
        data = data * 16
    transform = Affine(res, 0.0, west, 0.0, -res, north)
    profile = {"driver": "GTiff", "width": n, "height": n, "count": 3, "dtype": dtype,
               "crs": crs if with_crs else None, "transform": transform, "tiled": True,
               "blockxsize": 256, "blockysize": 256}
    if west_only:
        profile["nodata"] = 0
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
    return path


def _offset(latlon, metres):
    from jzi_ros.geo import offset_latlon
    return offset_latlon(latlon[0], latlon[1], metres, metres)


def assert_marker_everywhere(pyramid, t: CellTree, marker) -> None:
    east, north = t.to_local(marker[0], marker[1])
    for level in range(t.depth):
        path = t.path_of(marker[0], marker[1], depth=level)
        view = pyramid.view(path).astype(np.float64)
        west, _, east_b, north_b = t.cell_bounds_local(path)
        px = (east_b - west) / TILE
        want_col, want_row = (east - west) / px - 0.5, (north_b - north) / px - 0.5
        redness = np.clip(view[..., 0] - view[..., 1] - (BACKGROUND[0] - BACKGROUND[1]), 0, None)
        redness[view.sum(axis=-1) < 50] = 0  # nodata (black) is not marker
        assert redness.sum() > 0, f"no marker in level {level} view {path}"
        rows, cols = np.indices(redness.shape)
        got_row = (rows * redness).sum() / redness.sum()
        got_col = (cols * redness).sum() / redness.sum()
        assert abs(got_row - want_row) < 1.0 and abs(got_col - want_col) < 1.0, (
            f"level {level}: marker at ({got_row:.2f}, {got_col:.2f}) px, "
            f"expected ({want_row:.2f}, {want_col:.2f})")
        # The marker is red, not blue: RGB order is right.
        peak = np.unravel_index(np.argmax(redness), redness.shape)
        assert view[peak][0] > view[peak][2] + 20


def test_geotiff_utm_marker_at_expected_pixel_every_level(tmp_path):
    t = tree()
    marker = marker_latlon(t)
    src = write_geotiff(tmp_path / "utm.tif", "EPSG:32610", marker)
    pyramid = build_pyramid(src, tmp_path / "map", t, tile_px=TILE, progress=False)
    assert pyramid.views.shape == (t.num_views, TILE, TILE, 3)
    assert_marker_everywhere(pyramid, t, marker)
    assert all(v < 0.01 for v in pyramid.nodata_fraction.values())
    # A view away from the marker is plain background.
    far = pyramid.view((0, 0))
    assert np.abs(far.astype(int) - BACKGROUND).max() <= 2
    assert pyramid.manifest["source"]["sha256"]
    assert "UTM zone 10N" in pyramid.manifest["source"]["crs_wkt"]


def test_geotiff_lonlat_marker_at_expected_pixel_every_level(tmp_path):
    # EPSG:4326's authority axis order is lat, lon: the PROJ operation handed to GDAL's warp
    # must use it (with x = lon it rendered every view as nodata)
    t = tree()
    marker = marker_latlon(t)
    src = write_geotiff(tmp_path / "lonlat.tif", "EPSG:4326", marker, half_m=0.0065,
                        res=0.0065 / 600)
    pyramid = build_pyramid(src, tmp_path / "map", t, tile_px=TILE, progress=False)
    assert all(v < 0.01 for v in pyramid.nodata_fraction.values())
    assert_marker_everywhere(pyramid, t, marker)


def test_source_without_crs_is_refused_then_accepted_with_crs(tmp_path):
    t = tree(depth=2)
    marker = marker_latlon(t)
    src = write_geotiff(tmp_path / "nocrs.tif", "EPSG:32610", marker, with_crs=False)
    with pytest.raises(JziError, match=r"nocrs\.tif has no CRS"):
        build_pyramid(src, tmp_path / "map", t, tile_px=TILE, progress=False)
    assert not (tmp_path / "map").exists()
    pyramid = build_pyramid(src, tmp_path / "map", t, tile_px=TILE, progress=False,
                            crs="EPSG:32610")
    assert_marker_everywhere(pyramid, t, marker)


def test_uncovered_root_is_refused_and_nothing_written(tmp_path):
    t = tree(depth=2)
    src = write_geotiff(tmp_path / "half.tif", "EPSG:32610", marker_latlon(t), west_only=True)
    with pytest.raises(JziError, match=r"half\.tif does not cover the root square: "
                                       r"nodata level 0 [45]\d\.\d%"):
        build_pyramid(src, tmp_path / "map", t, tile_px=TILE, progress=False, max_nodata=0.3)
    assert sorted(os.listdir(tmp_path)) == ["half.tif"]
    pyramid = build_pyramid(src, tmp_path / "map", t, tile_px=TILE, progress=False,
                            max_nodata=0.9)
    for level, fraction in pyramid.nodata_fraction.items():
        assert 0.4 < fraction < 0.6, (level, fraction)


def test_unreadable_and_missing_sources(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a raster")
    with pytest.raises(JziError, match="bad.tif cannot be read"):
        build_pyramid(bad, tmp_path / "map", tree(2), tile_px=TILE, progress=False)
    with pytest.raises(JziError, match="does not exist"):
        build_pyramid(tmp_path / "nope.tif", tmp_path / "map", tree(2), tile_px=TILE,
                      progress=False)
    assert not (tmp_path / "map").exists()


def test_existing_output_needs_overwrite(tmp_path):
    t = tree(depth=2)
    src = write_geotiff(tmp_path / "a.tif", "EPSG:32610", marker_latlon(t))
    build_pyramid(src, tmp_path / "map", t, tile_px=TILE, progress=False)
    with pytest.raises(JziError, match="already exists"):
        build_pyramid(src, tmp_path / "map", t, tile_px=TILE, progress=False)
    rebuilt = build_pyramid(src, tmp_path / "map", t, tile_px=48, progress=False,
                            overwrite=True)
    assert rebuilt.tile_px == 48


def test_sixteen_bit_source_is_stretched(tmp_path):
    t = tree(depth=2)
    marker = marker_latlon(t)
    src = write_geotiff(tmp_path / "u16.tif", "EPSG:32610", marker, dtype="uint16")
    pyramid = build_pyramid(src, tmp_path / "map", t, tile_px=TILE, progress=False)
    root = pyramid.view(())
    assert root.max() > 200  # stretched to 8 bits, not clipped to 255 everywhere
    assert np.median(root[..., 0]) < 200


@pytest.fixture(scope="module")
def mercator_sources(tmp_path_factory):
    """Provide a Web-Mercator GeoTIFF made into MBTiles by GDAL, and those unpacked to z/x/y."""
    folder = tmp_path_factory.mktemp("mercator")
    t = tree(depth=2)
    marker = marker_latlon(t)
    tif = write_geotiff(folder / "merc.tif", "EPSG:3857", marker, half_m=700.0, res=1.2)
    mbtiles = folder / "merc.mbtiles"
    import rasterio.shutil
    rasterio.shutil.copy(tif, mbtiles, driver="MBTiles", TILE_FORMAT="PNG")
    xyz = folder / "xyz"
    with sqlite3.connect(mbtiles) as db:
        rows = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles")
        for zoom, col, tms_row, data in rows:
            # MBTiles rows count from the south (TMS); XYZ rows from the north.
            target = xyz / str(zoom) / str(col) / f"{(1 << zoom) - 1 - tms_row}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return t, marker, mbtiles, xyz


@pytest.mark.parametrize("kind", ["mbtiles", "xyz"])
def test_tile_sources_marker(tmp_path, mercator_sources, kind):
    t, marker, mbtiles, xyz = mercator_sources
    src = mbtiles if kind == "mbtiles" else xyz
    pyramid = build_pyramid(src, tmp_path / "map", t, tile_px=TILE, progress=False)
    assert_marker_everywhere(pyramid, t, marker)
    assert max(pyramid.nodata_fraction.values()) < 0.02
    assert pyramid.manifest["source"]["kind"].startswith(kind)


def test_xyz_folder_without_tiles_is_refused(tmp_path):
    (tmp_path / "tiles" / "notazoom").mkdir(parents=True)
    with pytest.raises(JziError, match="no XYZ zoom folders"):
        build_pyramid(tmp_path / "tiles", tmp_path / "map", tree(2), tile_px=TILE,
                      progress=False)


def test_grey_single_band_source_gives_grey_views(tmp_path):
    t = tree(depth=2)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32610", always_xy=True)
    cx, cy = to_utm.transform(CENTER[1], CENTER[0])
    ramp = np.tile(np.linspace(0, 250, 1000).astype(np.uint8), (1000, 1))  # dark west
    with rasterio.open(tmp_path / "grey.tif", "w", driver="GTiff", width=1000, height=1000,
                       count=1, dtype="uint8", crs="EPSG:32610",
                       transform=Affine(1.0, 0.0, cx - 500, 0.0, -1.0, cy + 500)) as dst:
        dst.write(ramp[None])
    root = build_pyramid(tmp_path / "grey.tif", tmp_path / "map", t, tile_px=TILE,
                         progress=False).view(()).astype(int)
    assert np.abs(root[..., 0] - root[..., 2]).max() == 0
    assert root[TILE // 2, 2, 0] + 100 < root[TILE // 2, TILE - 3, 0]


def test_missing_proj_grid_warning_becomes_one_log_line(caplog):
    import logging
    import warnings

    from jzi_ros.maps import build

    def caught(*texts):
        with warnings.catch_warnings(record=True) as items:
            warnings.simplefilter("always")
            for text in texts:
                warnings.warn(text, UserWarning)
        return items

    grid = "Best transformation is not available due to missing Grid(name='us_noaa_wohpgn.tif')"
    with caplog.at_level(logging.INFO, logger="jzi_ros.maps.build"):
        with pytest.warns(UserWarning, match="something else"):
            build._note_missing_grids(caught(grid, "something else"), "NAD83(HARN) test")
        build._note_missing_grids(caught(grid), "NAD83(HARN) test")  # noted once per CRS
    notes = [r for r in caplog.records if "grid file" in r.getMessage()]
    assert len(notes) == 1 and "NAD83(HARN) test" in notes[0].getMessage()


@pytest.mark.parametrize("crs", ["EPSG:32610", "EPSG:4326", "EPSG:3857"])
def test_affine_fast_path_matches_gdals_warp(tmp_path, crs):
    """The one-affine warp (used where the CRS change is affine over a box) agrees with GDAL."""
    from jzi_ros.maps.build import CellRenderer
    from jzi_ros.maps.sources import open_source

    t = tree()
    marker = marker_latlon(t)
    res = 1e-5 if crs == "EPSG:4326" else 1.0
    src = write_geotiff(tmp_path / "src.tif", crs, marker, res=res,
                        half_m=500.0 * (1e-5 if crs == "EPSG:4326" else 1.0))
    with open_source(src) as source:
        renderer = CellRenderer(source, t, TILE)
        east, north = t.to_local(*marker)
        for half, size in ((60.0, 96), (300.0, 40)):  # finer than the raster, and coarser
            box = (east - half, north - half, east + half, north + half)
            assert renderer._affine_map(*_dst(box, size), size) is not None
            fast_rgb, fast_valid = renderer.render_box(box, size, size)
            renderer._affine_map = lambda *args: None  # force GDAL's warper
            gdal_rgb, gdal_valid = renderer.render_box(box, size, size)
            del renderer._affine_map
            assert (fast_valid == gdal_valid).mean() > 0.99
            diff = np.abs(fast_rgb.astype(int) - gdal_rgb.astype(int))
            assert diff.mean() < 3.0, (half, diff.mean())
            centres = []
            for rgb in (fast_rgb, gdal_rgb):
                red = np.clip(rgb[..., 0].astype(float) - rgb[..., 1] - 30, 0, None)
                rows, cols = np.indices(red.shape)
                centres.append(np.array([(rows * red).sum(), (cols * red).sum()]) / red.sum())
            assert np.abs(centres[0] - centres[1]).max() < 0.25  # the marker at the same place


def _dst(box, size):
    west, south, east, north = box
    return Affine((east - west) / size, 0.0, west, 0.0, -(north - south) / size, north), size
