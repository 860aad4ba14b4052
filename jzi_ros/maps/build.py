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
Build a map pyramid from imagery: every cell rendered north-up in the tree's local frame.

Per cell the renderer reads only the source window under the cell, already decimated to about
``oversample`` x the tile resolution (GDAL then serves coarse levels from overviews, or from the
JPEG decoder's reduced-resolution decode, instead of the full-resolution raster), and warps
that small array into the cell's square: with one affine map where the CRS change is affine
over the box to a tenth of a pixel (OpenCV), else with ``rasterio.warp.reproject``. A coverage
mask is warped alongside so every level's nodata fraction is known.
"""
from __future__ import annotations

from dataclasses import dataclass
import logging
import math
import os
from pathlib import Path
import shutil
import time
import warnings

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree, local_crs
from jzi_ros.maps.georef import check_georef_sigma_m
from jzi_ros.maps.pyramid import MapPyramid, write_pyramid
from jzi_ros.maps.sources import open_source, Source

LOG = logging.getLogger(__name__)
DEFAULT_MAX_NODATA = 0.5
AFFINE_TOLERANCE_PX = 0.1  # largest residual of the affine CRS change over a box (raster px)
_GRID_NOTED: set[str] = set()  # source CRSs whose missing-grid note was logged


def _note_missing_grids(caught: list, crs_name: str) -> None:
    """
    Turn pyproj's "best transformation is not available" warning into one log line per CRS.

    NAD83 rasters (e.g. NAD83(HARN)) have grid-based operations to WGS 84 that need PROJ grid
    files an offline install lacks; the grid-free fallback differs by about a metre, far
    below a terminal cell (docs/any-area.md). Every other warning is re-issued unchanged.
    """
    for item in caught:
        if "not available due to missing Grid" in str(item.message):
            if crs_name not in _GRID_NOTED:
                _GRID_NOTED.add(crs_name)
                LOG.info("PROJ: the most accurate operation from %s needs a grid file that is "
                         "not installed (projsync --all or proj-data adds it); using a "
                         "grid-free one, ~1 m apart: harmless at cell sizes", crs_name)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def tree_crs(tree: CellTree) -> "rasterio.crs.CRS":  # noqa: F821 - lazy import
    """Return the tree's local azimuthal-equidistant frame as a rasterio CRS (metres, north-up)."""
    from rasterio.crs import CRS
    return CRS.from_wkt(local_crs(tree.center_lat, tree.center_lon).to_wkt())


@dataclass
class BuildResult:
    """What a build produced and how fast (for the CLI's summary line)."""

    pyramid: MapPyramid
    tiles: int
    seconds: float

    @property
    def tiles_per_s(self) -> float:
        return self.tiles / max(self.seconds, 1e-9)


class CellRenderer:
    """Callable ``path -> (rgb uint8 [T, T, 3], valid bool [T, T])`` for ``write_pyramid``."""

    def __init__(self, source: Source, tree: CellTree, tile_px: int,
                 oversample: float = 2.0) -> None:
        self.source = source
        self.tree = tree
        self.tile_px = int(tile_px)
        self.oversample = float(oversample)
        self.dst_crs = tree_crs(tree)
        self._transformer, self._operation = self._coordinate_operation()
        # Corner + edge samples of a unit square; enough to bound a cell under any sane CRS.
        t = np.linspace(0.0, 1.0, 9)
        self._edge_u = np.concatenate([t, np.ones_like(t), t[::-1], np.zeros_like(t)])
        self._edge_v = np.concatenate([np.zeros_like(t), t, np.ones_like(t), t[::-1]])

    def _coordinate_operation(self):
        """
        One PROJ operation source CRS -> local frame, chosen once for the whole root.

        Left to itself GDAL picks the operation per warp call from that call's area of
        interest, which costs ~40 ms of PROJ database lookups per tile (4x the warp itself).
        """
        import pyproj
        from pyproj.aoi import AreaOfInterest
        from pyproj.transformer import TransformerGroup
        half = self.tree.size_m / 2
        lats, lons = self.tree.to_latlon(np.array([-half, half, -half, half]),
                                         np.array([-half, -half, half, half]))
        aoi = AreaOfInterest(float(np.min(lons)), float(np.min(lats)),
                             float(np.max(lons)), float(np.max(lats)))
        src = pyproj.CRS.from_wkt(self.source.crs.to_wkt())
        dst = pyproj.CRS.from_wkt(self.dst_crs.to_wkt())
        # GDAL applies COORDINATE_OPERATION in the CRSs' authority axis order (lat, lon for
        # EPSG:4326); our own transforms use x = east. Same operation, two axis conventions.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            authority = TransformerGroup(src, dst, always_xy=False, area_of_interest=aoi)
            xy = TransformerGroup(src, dst, always_xy=True, area_of_interest=aoi)
        _note_missing_grids(caught, src.name)
        for gdal_op, transformer in zip(authority.transformers, xy.transformers):
            definition = gdal_op.to_proj4()
            if definition:
                return transformer, definition
        LOG.debug("no explicit PROJ operation for %s; GDAL chooses per tile", src.name)
        return pyproj.Transformer.from_crs(src, dst, always_xy=True), None

    @property
    def operation(self) -> str | None:
        """Return the PROJ pipeline used for every warp (None: GDAL's own choice per tile)."""
        return self._operation

    def _source_window(self, bounds) -> tuple[float, float, float, float]:
        """Unclipped (col0, row0, col1, row1) of the source pixels under a local-frame box."""
        west, south, east, north = bounds
        xs = west + self._edge_u * (east - west)
        ys = south + self._edge_v * (north - south)
        sx, sy = self._transformer.transform(xs, ys, direction="INVERSE")
        inv = ~self.source.dataset.transform
        sx, sy = np.asarray(sx), np.asarray(sy)
        cols, rows = inv.a * sx + inv.b * sy + inv.c, inv.d * sx + inv.e * sy + inv.f
        return (float(np.min(cols)), float(np.min(rows)),
                float(np.max(cols)), float(np.max(rows)))

    def _to_rgb(self, data: np.ndarray) -> np.ndarray:
        """Band stack as read -> float32 RGB in 0..255 (palette, grey, >8-bit handled)."""
        src = self.source
        if src.colormap is not None:
            data = np.moveaxis(src.colormap[data[0].astype(np.intp).clip(0, 255)], -1, 0)
        data = data.astype(np.float32)
        if src.stretch is not None:
            low = src.stretch[0][:, None, None]
            high = src.stretch[1][:, None, None]
            data = np.clip((data - low) / (high - low) * 255.0, 0.0, 255.0)
        if data.shape[0] == 1:
            data = np.repeat(data, 3, axis=0)
        return data

    def __call__(self, path: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        return self.render_box(self.tree.cell_bounds_local(path), self.tile_px, self.tile_px)

    def render_box(self, bounds: tuple[float, float, float, float], width: int, height: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Render a local-frame box (west, south, east, north) into ``height x width`` pixels."""
        from affine import Affine
        import cv2
        from rasterio.enums import Resampling
        from rasterio.warp import reproject
        from rasterio.windows import Window

        dataset = self.source.dataset
        west, south, east, north = bounds
        c0, r0, c1, r1 = self._source_window(bounds)
        # Source pixels per tile pixel, from the unclipped footprint.
        step = max((c1 - c0) / width, (r1 - r0) / height)
        c0 = max(0, math.floor(c0) - 2)
        r0 = max(0, math.floor(r0) - 2)
        c1 = min(dataset.width, math.ceil(c1) + 2)
        r1 = min(dataset.height, math.ceil(r1) + 2)
        rgb = np.zeros((height, width, 3), dtype=np.uint8)
        if c1 <= c0 or r1 <= r0:
            return rgb, np.zeros((height, width), dtype=bool)
        win_w, win_h = c1 - c0, r1 - r0
        dst_transform = Affine((east - west) / width, 0.0, west, 0.0, -(north - south) / height,
                               north)
        affine = self._affine_map(dst_transform, width, height)
        # Integer factors: GDAL averages those fastest (and maps them onto overviews). The
        # affine path reads at about the box's resolution (GDAL's average is the anti-alias
        # filter, OpenCV's bilinear then samples); GDAL's warper gets `oversample` x that.
        decimate = max(1, math.floor(step if affine is not None else step / self.oversample))
        out_w = max(1, round(win_w / decimate))
        out_h = max(1, round(win_h / decimate))
        window = Window(c0, r0, win_w, win_h)
        palette = self.source.colormap is not None
        read_resampling = (Resampling.nearest if palette or decimate == 1
                           else Resampling.average)
        data = dataset.read(list(self.source.bands), window=window, out_shape=(
            len(self.source.bands), out_h, out_w), resampling=read_resampling)
        mask = dataset.dataset_mask(window=window, out_shape=(out_h, out_w),
                                    resampling=Resampling.nearest)
        stack = np.concatenate([self._to_rgb(data), (mask > 0)[None].astype(np.float32)])
        if affine is not None:
            # raster pixel centres -> centres of the decimated window's pixels
            factor = np.array([out_w / win_w, out_h / win_h])
            coef = affine * factor
            coef[2] += (0.5 - np.array([c0, r0])) * factor - 0.5
            out = cv2.warpAffine(np.ascontiguousarray(np.moveaxis(stack, 0, -1)),
                                 np.ascontiguousarray(coef.T), (width, height),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            out = np.moveaxis(out.reshape(height, width, -1), -1, 0)
        else:  # the CRS change bends over this box: GDAL's warper, point by point
            src_transform = (dataset.transform @ Affine.translation(c0, r0)
                             @ Affine.scale(win_w / out_w, win_h / out_h))
            out = np.zeros((4, height, width), dtype=np.float32)
            extra = {"COORDINATE_OPERATION": self._operation} if self._operation else {}
            reproject(stack, out, src_transform=src_transform, src_crs=self.source.crs,
                      dst_transform=dst_transform, dst_crs=self.dst_crs, dst_nodata=0.0,
                      resampling=Resampling.bilinear, **extra)
        valid = out[3] > 0.5
        rgb = np.clip(np.rint(np.moveaxis(out[:3], 0, -1)), 0, 255).astype(np.uint8)
        return rgb, valid

    def _affine_map(self, dst_transform, width: int, height: int) -> np.ndarray | None:
        """
        Return the affine map box pixel -> raster pixel (centres, ``[3, 2]``), None if it bends.

        Over a box of a few kilometres the source CRS -> local frame change is affine to a
        small fraction of a pixel for the usual projections (UTM, Web Mercator, lat/lon), so
        it is fitted on a 3 x 3 grid of PROJ-transformed points and applied by OpenCV: many
        times cheaper than GDAL's per-pixel warp, which is what bounded rendering training
        views. The fit's largest residual must stay under :data:`AFFINE_TOLERANCE_PX` raster
        pixels (GDAL's own approximating transformer allows 0.125).
        """
        u = np.tile([0.0, (width - 1) / 2, width - 1.0], 3)  # box pixel centres (OpenCV)
        v = np.repeat([0.0, (height - 1) / 2, height - 1.0], 3)
        xs = dst_transform.c + (u + 0.5) * dst_transform.a
        ys = dst_transform.f + (v + 0.5) * dst_transform.e
        sx, sy = self._transformer.transform(xs, ys, direction="INVERSE")
        inv = ~self.source.dataset.transform
        sx, sy = np.asarray(sx, np.float64), np.asarray(sy, np.float64)
        target = np.stack([inv.a * sx + inv.b * sy + inv.c - 0.5,
                           inv.d * sx + inv.e * sy + inv.f - 0.5], axis=1)
        if not np.all(np.isfinite(target)):
            return None
        design = np.stack([u, v, np.ones_like(u)], axis=1)
        coef = np.linalg.lstsq(design, target, rcond=None)[0]
        if np.max(np.abs(design @ coef - target)) > AFFINE_TOLERANCE_PX:
            return None
        return coef


def _warn_without_overviews(src: Source, tree: CellTree, tile_px: int) -> None:
    """Coarse levels of a big raster without overviews decode the full raster per tile."""
    dataset = src.dataset
    big = max(dataset.width, dataset.height) > 16 * tile_px
    if big and not dataset.overviews(src.bands[0]) and dataset.driver != "WMS":
        LOG.warning("%s (%d x %d px) has no overviews: the coarse levels read it at full "
                    "resolution; `gdaladdo -r average %s` makes the build faster",
                    dataset.name, dataset.width, dataset.height, dataset.name)


def build_pyramid(source: str | os.PathLike, out_dir: str | os.PathLike, tree: CellTree,
                  tile_px: int = 384, overwrite: bool = False, progress: bool = True,
                  max_nodata: float | None = DEFAULT_MAX_NODATA, crs: str | None = None,
                  terminal: bool = False, imagery: bool = True,
                  imagery_m_per_px: float | None = None,
                  georef_sigma_m: float | None = None) -> MapPyramid:
    """
    Render ``source`` (GDAL raster with a CRS, MBTiles file or XYZ folder) into a map.

    ``crs`` (file or string) supplies/overrides the source CRS. ``max_nodata`` refuses a map
    whose views are more than that fraction uncovered at any level (None: never refuse).
    ``imagery`` also writes the refinement imagery and feature index
    (:mod:`jzi_ros.maps.imagery`) at ``imagery_m_per_px`` (None: the source's resolution).
    ``georef_sigma_m``: the source's georeferencing 1-sigma in metres, stored in the manifest
    (None: unknown).
    """
    return build_pyramid_timed(source, out_dir, tree, tile_px, overwrite, progress,
                               max_nodata, crs, terminal, imagery=imagery,
                               imagery_m_per_px=imagery_m_per_px,
                               georef_sigma_m=georef_sigma_m).pyramid


def build_pyramid_timed(source: str | os.PathLike, out_dir: str | os.PathLike,
                        tree: CellTree, tile_px: int = 384, overwrite: bool = False,
                        progress: bool = True,
                        max_nodata: float | None = DEFAULT_MAX_NODATA,
                        crs: str | None = None, terminal: bool = False,
                        allow_large: bool = False, imagery: bool = True,
                        imagery_m_per_px: float | None = None,
                        georef_sigma_m: float | None = None) -> BuildResult:
    """
    :func:`build_pyramid` that also reports the tile count and wall time.

    The size is estimated first: a map larger than the free disk is refused, one above
    :data:`LARGE_MAP_BYTES` needs ``allow_large``.
    """
    if max_nodata is not None and not 0.0 <= max_nodata <= 1.0:
        raise JziError(f"--max-nodata must be a fraction in 0..1, got {max_nodata}")
    check_georef_sigma_m(georef_sigma_m, f"map {out_dir} (--georef-sigma-m)")
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not overwrite:
        # Checked before opening the source so a slow source is not touched for nothing.
        raise JziError(f"output {out_dir} already exists (pass --overwrite to replace it)")
    check_map_size(tree, tile_px, out_dir, terminal, allow_large)
    start = time.perf_counter()
    with open_source(source, crs) as src:
        renderer = CellRenderer(src, tree, tile_px)
        _warn_without_overviews(src, tree, tile_px)
        info = dict(src.info, resampling="windowed average read + bilinear warp",
                    local_crs=renderer.dst_crs.to_proj4(),
                    coordinate_operation=renderer.operation)
        pyramid = write_pyramid(out_dir, tree, tile_px, renderer, info, overwrite=overwrite,
                                progress=progress, max_nodata=max_nodata, terminal=terminal,
                                georef_sigma_m=georef_sigma_m)
        if imagery:
            from jzi_ros.maps.imagery import write_map_imagery
            write_map_imagery(lambda tile: CellRenderer(src, tree, tile), tree,
                              renderer.dst_crs, out_dir, imagery_m_per_px, progress=progress)
    seconds = time.perf_counter() - start
    tiles = tree.num_views + (tree.num_actions ** tree.depth if terminal else 0)
    LOG.info("built %s: %d tiles in %.1f s", out_dir, tiles, seconds)
    return BuildResult(pyramid, tiles, seconds)


# above this a build needs an explicit --allow-large (a typo in --depth/--tile-px costs TBs)
LARGE_MAP_BYTES = 64 * 2**30


def _human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.3g} EiB"


def check_map_size(tree: CellTree, tile_px: int, out_dir: str | Path, terminal: bool = False,
                   allow_large: bool = False) -> int:
    """
    Estimate the map's size before building; refuse what exceeds the free disk space.

    Builds above :data:`LARGE_MAP_BYTES` need ``allow_large``. Returns the estimate in bytes.
    """
    tiles = tree.num_views + (tree.num_actions ** tree.depth if terminal else 0)
    size = tiles * int(tile_px) ** 2 * 3
    where = Path(out_dir).expanduser().absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    shape = (f"{tiles:,} tiles of {tile_px} px (grid {tree.grid}, depth {tree.depth}"
             f"{', terminal tiles' if terminal else ''})")
    if size > free:
        raise JziError(f"map {out_dir} would need {_human_bytes(size)} for {shape}, but "
                       f"{where} has {_human_bytes(free)} free; lower --depth or --tile-px")
    if size > LARGE_MAP_BYTES and not allow_large:
        raise JziError(f"map {out_dir} would be {_human_bytes(size)} ({shape}), above "
                       f"{_human_bytes(LARGE_MAP_BYTES)}; check --depth/--tile-px, or pass "
                       f"--allow-large to build it")
    return size
