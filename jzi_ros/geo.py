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
The geographic cell tree: a square root region split K x K for D levels.

Cells are addressed by action paths (tuples of ints): at each level the child index is
``row * K + col`` with row 0 the northern row and column 0 the western column. Geometry lives
in a local metric frame (azimuthal equidistant projection centred on the root), so every cell
is a true square in metres; ``east``/``north`` below are metres from the root centre.

Pure functions and a small frozen dataclass; no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator, Sequence

import numpy as np
import pyproj
from pyproj.enums import TransformDirection

from jzi_ros.errors import JziError

Path = tuple[int, ...]


class OutsideRootError(JziError, ValueError):
    """A point lies outside the root square of a cell tree."""


def local_crs(lat: float, lon: float) -> pyproj.CRS:
    """
    Return the local metric frame of a map: azimuthal equidistant, centred on (lat, lon).

    The one definition of the frame the cell tree, the map rasters and the demo world share;
    metres east/north, north-up at the centre.
    """
    return pyproj.CRS.from_proj4(
        f"+proj=aeqd +lat_0={lat!r} +lon_0={lon!r} +datum=WGS84 +units=m +no_defs")


def local_frame(lat: float, lon: float) -> pyproj.Transformer:
    """Return a Transformer lat/lon (WGS84) <-> metres east/north of (lat, lon)."""
    return pyproj.Transformer.from_crs("EPSG:4326", local_crs(lat, lon), always_xy=True)


def offset_latlon(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    """Return the lat/lon that lies ``east_m``/``north_m`` metres from (lat, lon)."""
    lon2, lat2 = local_frame(lat, lon).transform(east_m, north_m, direction="INVERSE")
    return float(lat2), float(lon2)


def haversine_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres (mean Earth radius); works on numpy arrays."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=np.float64))
                              for v in (lat1, lon1, lat2, lon2))
    a = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6371008.8 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _check_finite(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value):
        raise JziError(f"cell tree: {name} must be a finite number, got {value!r}")
    return value


@dataclass(frozen=True)
class CellTree:
    """
    Root square (centre + side in metres), a ``grid`` x ``grid`` split, ``depth`` levels.

    Level 0 is the root; level ``depth`` holds the terminal cells. A full path has ``depth``
    actions. The map views the policy sees are the cells of levels 0..depth-1.
    """

    center_lat: float
    center_lon: float
    size_m: float
    grid: int = 4
    depth: int = 4
    _transformer: pyproj.Transformer = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        lat = _check_finite("center_lat", self.center_lat)
        lon = _check_finite("center_lon", self.center_lon)
        size = _check_finite("size_m", self.size_m)
        if not -85.0 <= lat <= 85.0 or not -180.0 <= lon <= 180.0:
            raise JziError(f"cell tree: centre ({lat}, {lon}) is not a valid latitude/longitude")
        if size <= 0:
            raise JziError(f"cell tree: size_m must be > 0 metres, got {size}")
        if int(self.grid) != self.grid or self.grid < 2:
            raise JziError(f"cell tree: grid must be an integer >= 2, got {self.grid!r}")
        if int(self.depth) != self.depth or self.depth < 1:
            raise JziError(f"cell tree: depth must be an integer >= 1, got {self.depth!r}")
        object.__setattr__(self, "grid", int(self.grid))
        object.__setattr__(self, "depth", int(self.depth))
        object.__setattr__(self, "_transformer", local_frame(lat, lon))

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_bounds(cls, south: float, west: float, north: float, east: float,
                    grid: int = 4, depth: int = 4) -> "CellTree":
        """Return the smallest root square (centred on the box) covering a lat/lon bounding box."""
        if not (south < north and west < east):
            raise JziError(f"cell tree: bounds need south < north and west < east, got "
                           f"south={south} west={west} north={north} east={east}")
        lat0, lon0 = (south + north) / 2, (west + east) / 2
        tr = local_frame(lat0, lon0)
        xs, ys = tr.transform([west, east, west, east], [south, south, north, north])
        half = max(np.max(np.abs(xs)), np.max(np.abs(ys)))
        return cls(lat0, lon0, 2 * float(half), grid, depth)

    def to_dict(self) -> dict:
        return {"center_lat": self.center_lat, "center_lon": self.center_lon,
                "size_m": self.size_m, "grid": self.grid, "depth": self.depth}

    @classmethod
    def from_dict(cls, data: dict) -> "CellTree":
        missing = {"center_lat", "center_lon", "size_m", "grid", "depth"} - set(data)
        if missing:
            raise JziError(f"cell tree: missing field(s) {sorted(missing)} in {data!r}")
        return cls(float(data["center_lat"]), float(data["center_lon"]), float(data["size_m"]),
                   int(data["grid"]), int(data["depth"]))

    # --- local frame --------------------------------------------------------------------
    def to_local(self, lat, lon):
        """lat/lon (degrees, scalars or arrays) -> (east, north) metres from the root centre."""
        east, north = self._transformer.transform(lon, lat)
        return east, north

    def to_latlon(self, east, north):
        """(east, north) metres from the root centre -> (lat, lon) degrees."""
        # (the enum, not "INVERSE": pyproj parses a string on every call)
        lon, lat = self._transformer.transform(east, north, direction=TransformDirection.INVERSE)
        return lat, lon

    # --- sizes and counts ---------------------------------------------------------------
    def cell_side(self, level: int) -> float:
        """Side in metres of a cell at ``level`` (0 = root, ``depth`` = terminal)."""
        if not 0 <= level <= self.depth:
            raise JziError(f"cell tree: level must be in 0..{self.depth}, got {level}")
        return self.size_m / self.grid ** level

    @property
    def num_actions(self) -> int:
        return self.grid * self.grid

    @cached_property
    def level_offsets(self) -> tuple[int, ...]:
        """Index of the first view of each level 0..depth in the flat view table."""
        offsets, total = [], 0
        for level in range(self.depth + 1):
            offsets.append(total)
            total += self.num_actions ** level
        return tuple(offsets)

    @property
    def num_views(self) -> int:
        """Count the non-terminal cells (levels 0..depth-1): the views the policy sees."""
        return self.level_offsets[self.depth]

    # --- paths --------------------------------------------------------------------------
    def check_path(self, path: Sequence[int], max_len: int | None = None) -> Path:
        path = tuple(int(a) for a in path)
        limit = self.depth if max_len is None else max_len
        if len(path) > limit:
            raise JziError(f"cell tree: path {path} is longer than {limit} actions")
        bad = [a for a in path if not 0 <= a < self.num_actions]
        if bad:
            raise JziError(f"cell tree: path {path} has action(s) {bad} outside "
                           f"0..{self.num_actions - 1}")
        return path

    def path_of_local(self, east: float, north: float, depth: int | None = None) -> Path:
        """Path of the cell at ``depth`` (default: terminal) that contains a local point."""
        depth = self.depth if depth is None else depth
        half = self.size_m / 2
        east, north = float(east), float(north)
        if not (np.isfinite(east) and np.isfinite(north)):
            raise OutsideRootError(f"point ({east}, {north}) m is not finite")
        if not (-half <= east <= half and -half <= north <= half):
            raise OutsideRootError(
                f"point {east:.1f} m east, {north:.1f} m north of the root centre lies outside "
                f"the {self.size_m:.1f} m root square (half side {half:.1f} m)")
        # x grows east, y grows south, both from the root's north-west corner.
        x, y = east + half, half - north
        path = []
        n = self.grid ** depth
        col = min(int(x / self.size_m * n), n - 1)
        row = min(int(y / self.size_m * n), n - 1)
        for level in range(depth - 1, -1, -1):
            scale = self.grid ** level
            path.append((row // scale % self.grid) * self.grid + col // scale % self.grid)
        return tuple(path)

    def path_of(self, lat: float, lon: float, depth: int | None = None) -> Path:
        """Return the ground-truth action path of a lat/lon; OutsideRootError outside the root."""
        east, north = self.to_local(lat, lon)
        try:
            return self.path_of_local(east, north, depth)
        except OutsideRootError as err:
            raise OutsideRootError(f"({lat}, {lon}): {err}") from None

    def try_path_of(self, lat: float, lon: float, depth: int | None = None) -> Path | None:
        """Like :meth:`path_of` but None for a point outside the root."""
        try:
            return self.path_of(lat, lon, depth)
        except OutsideRootError:
            return None

    def cell_bounds_local(self, path: Sequence[int]) -> tuple[float, float, float, float]:
        """(west, south, east, north) metres of the cell at ``path`` (any level)."""
        path = self.check_path(path)
        west, north = -self.size_m / 2, self.size_m / 2
        side = self.size_m
        for action in path:
            side /= self.grid
            row, col = divmod(action, self.grid)
            west += col * side
            north -= row * side
        return west, north - side, west + side, north

    def cell_center_local(self, path: Sequence[int]) -> tuple[float, float]:
        west, south, east, north = self.cell_bounds_local(path)
        return (west + east) / 2, (south + north) / 2

    def cell_center(self, path: Sequence[int]) -> tuple[float, float]:
        """Cell centre as (lat, lon)."""
        lat, lon = self.to_latlon(*self.cell_center_local(path))
        return float(lat), float(lon)

    def cell_centers_local(self, paths: np.ndarray) -> np.ndarray:
        """Vectorised centres of full or partial paths: int array [N, L] -> float [N, 2] (E, N)."""
        paths = np.asarray(paths, dtype=np.int64)
        if paths.ndim != 2:
            raise JziError(f"cell tree: paths must be a 2-D array [N, L], got shape {paths.shape}")
        side = self.size_m / self.grid ** np.arange(1, paths.shape[1] + 1)
        rows, cols = np.divmod(paths, self.grid)
        west = -self.size_m / 2 + (cols * side).sum(axis=1)
        north = self.size_m / 2 - (rows * side).sum(axis=1)
        last = side[-1] if paths.shape[1] else self.size_m
        return np.stack([west + last / 2, north - last / 2], axis=1)

    def children(self, path: Sequence[int]) -> list[Path]:
        path = self.check_path(path, self.depth - 1)
        return [path + (a,) for a in range(self.num_actions)]

    @staticmethod
    def parent(path: Sequence[int]) -> Path:
        if not path:
            raise JziError("cell tree: the root has no parent")
        return tuple(path[:-1])

    def level_paths(self, level: int) -> Iterator[Path]:
        """All paths of a level, in view-table order (row-major at every level)."""
        if not 0 <= level <= self.depth:
            raise JziError(f"cell tree: level must be in 0..{self.depth}, got {level}")
        for index in range(self.num_actions ** level):
            yield self._path_from_level_index(index, level)

    def _path_from_level_index(self, index: int, level: int) -> Path:
        path, k = [], self.num_actions
        for _ in range(level):
            index, action = divmod(index, k)
            path.append(action)
        return tuple(reversed(path))

    def view_index(self, path: Sequence[int]) -> int:
        """Row of a non-terminal cell (levels 0..depth-1) in the flat view table."""
        path = self.check_path(path, self.depth - 1)
        index = 0
        for action in path:
            index = index * self.num_actions + action
        return self.level_offsets[len(path)] + index

    def view_indices(self, paths: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`view_index` for prefixes of equal length: int [N, L] -> int [N]."""
        paths = np.asarray(paths, dtype=np.int64)
        index = np.zeros(paths.shape[0], dtype=np.int64)
        for step in range(paths.shape[1]):
            index = index * self.num_actions + paths[:, step]
        return self.level_offsets[paths.shape[1]] + index

    def path_of_view(self, view_index: int) -> Path:
        """Inverse of :meth:`view_index`."""
        if not 0 <= view_index < self.num_views:
            raise JziError(f"cell tree: view index {view_index} outside 0..{self.num_views - 1}")
        level = max(lv for lv in range(self.depth) if self.level_offsets[lv] <= view_index)
        return self._path_from_level_index(view_index - self.level_offsets[level], level)

    def view_paths(self) -> Iterator[Path]:
        """Every non-terminal path in view-table order."""
        for level in range(self.depth):
            yield from self.level_paths(level)


def parse_path(text: str) -> Path:
    """'7,6,6' -> (7, 6, 6); '' or 'root' -> ()."""
    text = text.strip()
    if text in ("", "root", "()"):
        return ()
    try:
        return tuple(int(part) for part in text.replace(" ", "").strip("()[]").split(","))
    except ValueError:
        raise JziError(f"path {text!r}: expected comma-separated integers such as 7,6,6")
