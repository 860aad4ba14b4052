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
The largest map root (a square in the local metric frame) that a raster's imagery covers.

Users rarely know the centre and side to pass to ``jzi map build``; guessing too big leaves
nodata in the views, too small wastes imagery. The raster's coverage is rendered once, coarsely,
into a local frame centred on it (the same reader and reprojection as the map builder, so
rotated or Web-Mercator rasters are handled), and the largest all-covered square is found
with the classic dynamic programme over the mask. Pure-black pixels count as uncovered: many
rasters mark no-data that way without a nodata tag.
"""
from __future__ import annotations

import math
import os

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree


def largest_square(mask: np.ndarray) -> tuple[int, int, int]:
    """Return (row, col, side) of the largest all-True square in a 2-D mask (top-left corner)."""
    rows, cols = mask.shape
    sides = np.zeros((rows + 1, cols + 1), np.int32)
    for r in range(rows):
        above, row_mask = sides[r], mask[r]
        current = sides[r + 1]
        for c in np.flatnonzero(row_mask):
            current[c + 1] = 1 + min(above[c], above[c + 1], current[c])
    best = int(sides.max())
    if best == 0:
        return 0, 0, 0
    r, c = np.unravel_index(int(np.argmax(sides)), sides.shape)
    return int(r) - best, int(c) - best, best


def fit_root(source: str | os.PathLike, crs: str | None = None, cells: int = 256
             ) -> tuple[float, float, float]:
    """Return (centre latitude, centre longitude, side metres) of the largest covered root."""
    from pyproj import Transformer

    from jzi_ros.maps.build import CellRenderer
    from jzi_ros.maps.sources import open_source

    with open_source(source, crs) as src:
        dataset = src.dataset
        left, bottom, right, top = dataset.bounds
        to_lonlat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
        xs = np.array([left, right, right, left, (left + right) / 2])
        ys = np.array([bottom, bottom, top, top, (bottom + top) / 2])
        lons, lats = to_lonlat.transform(xs, ys)
        # a frame centred on the raster, big enough to hold all of it
        probe = CellTree(float(lats[4]), float(lons[4]), 1.0, 2, 1)
        east, north = probe.to_local(np.asarray(lats[:4]), np.asarray(lons[:4]))
        half = float(np.max(np.abs(np.concatenate([east, north])))) * 1.02
        if not math.isfinite(half) or half <= 0:
            raise JziError(f"map source {source}: cannot place its bounds on the globe")
        tree = CellTree(float(lats[4]), float(lons[4]), 2 * half, 2, 1)
        rgb, valid = CellRenderer(src, tree, cells).render_box((-half, -half, half, half),
                                                               cells, cells)
    row, col, side = largest_square(valid & rgb.any(axis=2))
    if side < 3:
        raise JziError(f"map source {source}: no covered square found (is it all no-data?)")
    pixel = 2 * half / cells
    # one pixel in from every edge: the coarse mask's border pixels are partly uncovered
    size = (side - 2) * pixel
    centre_east = -half + (col + side / 2) * pixel
    centre_north = half - (row + side / 2) * pixel
    lat, lon = tree.to_latlon(centre_east, centre_north)
    return float(lat), float(lon), float(size)
