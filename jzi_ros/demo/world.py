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
The demo world: semantic layers of a generated landscape, georeferenced in the tree's frame.

The world is stored as layers (class, per-object tone, height, texture pattern, roof aspect)
rather than as colours, so that the map orthophoto and the camera's views can be rendered from
the SAME geometry in DIFFERENT styles (season, sun, colours): queries are never copies of map
pixels. The raster lives in the local azimuthal-equidistant frame of the demo's CellTree, so a
world pixel and a tree position are related by a plain affine map (no reprojection error in
the ground truth).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree, local_crs

# Semantic classes of the world raster.
GRASS, SOIL, FIELD, FOREST, WATER, ROAD, MAJOR_ROAD, MARKING, PARKING, BUILDING, TREE, \
    PAVED, SAND = range(13)
CLASS_NAMES = ("grass", "soil", "field", "forest", "water", "road", "major_road", "marking",
               "parking", "building", "tree", "paved", "sand")
FLAT = 255  # aspect value of a flat roof (other values: facet azimuth * 255 / 360)

# Where the demo world sits: a real place (Columbus, Ohio), only for plausible coordinates.
DEMO_LAT = 40.0017
DEMO_LON = -83.0197


@dataclass(frozen=True)
class WorldSpec:
    """
    Size and seed of a generated world.

    ``size_m`` is the map root; the raster extends ``margin_m`` beyond it on every side so
    that cameras near the edge still see ground.
    """

    seed: int = 0
    size_m: float = 2500.0
    margin_m: float = 300.0
    gsd_m: float = 1.0
    center_lat: float = DEMO_LAT
    center_lon: float = DEMO_LON

    def __post_init__(self) -> None:
        if not self.size_m > 0 or not self.gsd_m > 0 or self.margin_m < 0:
            raise JziError(f"world spec: need size_m > 0, gsd_m > 0, margin_m >= 0, got "
                           f"size_m={self.size_m} gsd_m={self.gsd_m} margin_m={self.margin_m}")
        if self.pixels < 64:
            raise JziError(f"world spec: the world is only {self.pixels} px wide; "
                           "use a larger size_m or a smaller gsd_m")

    @property
    def extent_m(self) -> float:
        """Side of the whole raster in metres (root plus margins)."""
        return self.size_m + 2 * self.margin_m

    @property
    def pixels(self) -> int:
        return int(round(self.extent_m / self.gsd_m))

    def tree(self, grid: int = 4, depth: int = 3) -> CellTree:
        """Return the cell tree whose root is this world's root square."""
        return CellTree(self.center_lat, self.center_lon, self.size_m, grid, depth)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class World:
    """
    Layers of a generated world, all ``[pixels, pixels]``, row 0 = north, column 0 = west.

    ``tone`` is a per-object random value (which crop, which roof paint); ``pattern`` a texture
    phase (plough stripes); ``aspect`` the azimuth a roof facet faces (FLAT for flat roofs).
    ``car_slots`` are parking places ``[N, 3]`` (east m, north m, angle rad) that each style
    fills with its own cars.
    """

    spec: WorldSpec
    labels: np.ndarray
    tone: np.ndarray
    height: np.ndarray
    pattern: np.ndarray
    aspect: np.ndarray
    car_slots: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    seconds: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape

    @property
    def half_extent_m(self) -> float:
        return self.spec.extent_m / 2

    def pixel_to_local(self) -> np.ndarray:
        """
        3x3 affine: homogeneous pixel (col, row) -> local (east, north) metres.

        Pixel centres sit at half-integer coordinates: (0.5, 0.5) is the centre of the
        north-west pixel, (0, 0) its outer corner (the GDAL convention).
        """
        g, h = self.spec.gsd_m, self.half_extent_m
        return np.array([[g, 0.0, -h], [0.0, -g, h], [0.0, 0.0, 1.0]])

    def local_to_pixel(self) -> np.ndarray:
        """3x3 affine: local (east, north) metres -> pixel (col, row)."""
        return np.linalg.inv(self.pixel_to_local())

    def to_pixels(self, east, north) -> tuple[np.ndarray, np.ndarray]:
        h, g = self.half_extent_m, self.spec.gsd_m
        return (np.asarray(east) + h) / g, (h - np.asarray(north)) / g

    def class_fractions(self) -> dict[str, float]:
        counts = np.bincount(self.labels.ravel(), minlength=len(CLASS_NAMES))
        return {name: float(c) / self.labels.size for name, c in zip(CLASS_NAMES, counts)}


def crs_wkt(spec: WorldSpec) -> str:
    """WKT of the world's CRS: the azimuthal equidistant frame CellTree uses for this root."""
    return local_crs(spec.center_lat, spec.center_lon).to_wkt()


def write_geotiff(world: World, rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB rendering of ``world`` as a tiled, compressed, georeferenced GeoTIFF."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import Affine

    from jzi_ros.files import atomic_path

    if rgb.shape[:2] != world.shape or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise JziError(f"write_geotiff: image shape {rgb.shape} does not match the world "
                       f"{world.shape} x 3")
    h = world.half_extent_m
    transform = Affine(world.spec.gsd_m, 0.0, -h, 0.0, -world.spec.gsd_m, h)
    path = Path(path)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", width=rgb.shape[1], height=rgb.shape[0],
                           count=3, dtype="uint8", crs=crs_wkt(world.spec),
                           transform=transform, tiled=True, blockxsize=256, blockysize=256,
                           compress="deflate", predictor=2, photometric="RGB") as dst:
            dst.write(np.moveaxis(rgb, 2, 0))
            dst.update_tags(jzi_demo_world=str(world.spec.to_dict()))
            # overviews, as `jzi map build` advises for any big raster: the coarse map levels
            # read them instead of decoding the full-resolution world per tile
            factors = [2 ** k for k in range(1, 16) if max(rgb.shape[:2]) >> k >= 256]
            if factors:
                dst.build_overviews(factors, Resampling.average)
                dst.update_tags(ns="rio_overview", resampling="average")
    return path
