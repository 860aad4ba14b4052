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
Map imagery on board: the root square as one Cloud-Optimized GeoTIFF, plus a feature index.

The zoom only needs the pyramid's views, but geometric refinement registers a camera frame
against the orthophoto at (about) the frame's ground sampling, which the 4 fixed view levels
do not offer. So ``jzi map build`` also writes ``imagery.tif``: the source clipped to the root
square, north-up in the tree's local frame (so local metres map to pixels by one affine), at
the source's own ground resolution (capped at :data:`MAX_IMAGERY_PX` pixels a side), JPEG
compressed with overviews. Refinement reads only the window around the zoom's cells; GDAL picks
the overview level that matches the requested resolution.

``features.npz`` is the feature index: local features (SIFT by default) of the whole imagery
at :data:`INDEX_MAX_PX` pixels a side at most, keypoints in local metres; the classical
baseline matches against it, and refinement matches a frame against the part around the
zoom's cells instead of detecting features on an imagery window per frame. Frames usually see
the ground coarser than an orthophoto (0.3 m imagery, 0.7 m frames), so the index also holds
up to two coarser levels (2x, 4x): refinement uses the level nearest the frame's ground
sampling. Both files are written atomically; a map built before they existed simply has no
refinement, one built before the levels existed has the base level only.
"""
from __future__ import annotations

from dataclasses import dataclass
import json
import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_path
from jzi_ros.geo import CellTree
from jzi_ros.maps.features import detect_features

LOG = logging.getLogger(__name__)

IMAGERY = "imagery.tif"
FEATURES = "features.npz"
MAX_IMAGERY_PX = 16384  # imagery side cap (a 10 km root at 0.61 m/px)
BLOCK_PX = 1024  # rendered and feature-detected in blocks of at most this side
INDEX_MAX_PX = 4096  # feature index side cap (classical global registration)
INDEX_FEATURES_PER_BLOCK = 3000  # per BLOCK_PX x BLOCK_PX block of the index image
INDEX_LEVELS = 3  # the base resolution, then 2x and 4x coarser
INDEX_MIN_PX = 512  # no coarser level with fewer pixels a side than this
TAG_TREE = "JZI_TREE"
TAG_M_PER_PX = "JZI_M_PER_PX"


def source_ground_resolution(renderer, tree: CellTree) -> float:
    """Return metres per source pixel over the root square (from the unclipped window)."""
    c0, r0, c1, r1 = renderer._source_window(tree.cell_bounds_local(()))
    return tree.size_m / max(c1 - c0, r1 - r0, 1e-9)


def choose_resolution(tree: CellTree, source_m_per_px: float,
                      requested: float | None = None) -> float:
    """Return the imagery's metres per pixel: the request, else the source's, capped in size."""
    wanted = source_m_per_px if requested is None else float(requested)
    if not (math.isfinite(wanted) and wanted > 0):
        raise JziError(f"map imagery resolution must be a number of metres per pixel > 0, "
                       f"got {wanted!r} (--imagery-m-per-px)")
    return max(wanted, tree.size_m / MAX_IMAGERY_PX)


def _block_level(tree: CellTree, m_per_px: float) -> tuple[int, int]:
    """Return (level, tile px) of the coarsest level whose cells fit in one block."""
    for level in range(tree.depth + 1):
        tile = math.ceil(tree.cell_side(level) / m_per_px)
        if tile <= BLOCK_PX or level == tree.depth:
            return level, max(tile, 8)
    raise AssertionError("unreachable")


def write_imagery(make_renderer: Callable, tree: CellTree, crs, out_dir: str | Path,
                  m_per_px: float | None = None, progress: bool = False) -> Path:
    """
    Render the root square through ``make_renderer(tile_px)`` (a build ``CellRenderer``).

    ``crs`` is the tree's local frame as a rasterio CRS. Writes ``out_dir/imagery.tif`` (COG,
    JPEG, with a validity mask) atomically; returns it.
    """
    import rasterio
    from rasterio.shutil import copy as rio_copy
    from rasterio.transform import Affine
    from tqdm import tqdm

    out = Path(out_dir) / IMAGERY
    m_per_px = choose_resolution(tree, source_ground_resolution(make_renderer(8), tree),
                                 m_per_px)
    level, tile = _block_level(tree, m_per_px)
    side_px = tile * tree.grid ** level
    res = tree.size_m / side_px
    renderer = make_renderer(tile)
    half = tree.size_m / 2
    profile = {"driver": "GTiff", "width": side_px, "height": side_px, "count": 3,
               "dtype": "uint8", "crs": crs,
               "transform": Affine(res, 0.0, -half, 0.0, -res, half), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "DEFLATE",
               "BIGTIFF": "IF_SAFER"}
    with atomic_path(out) as final_tmp:
        scratch = final_tmp.with_name(final_tmp.name + ".scratch.tif")
        try:
            with rasterio.open(scratch, "w", **profile) as dst:
                paths = list(tree.level_paths(level))
                for path in tqdm(paths, desc="map imagery", unit="block",
                                 disable=not progress, dynamic_ncols=True):
                    rgb, valid = renderer(path)
                    west, _, _, north = tree.cell_bounds_local(path)
                    col = round((west + half) / res)
                    row = round((half - north) / res)
                    window = rasterio.windows.Window(col, row, tile, tile)
                    dst.write(np.moveaxis(rgb, -1, 0), window=window)
                    dst.write_mask((valid * 255).astype(np.uint8), window=window)
                dst.update_tags(**{TAG_TREE: json.dumps(tree.to_dict()),
                                   TAG_M_PER_PX: repr(res)})
            rio_copy(scratch, final_tmp, driver="COG", COMPRESS="JPEG", QUALITY="90",
                     OVERVIEW_RESAMPLING="AVERAGE", BIGTIFF="IF_SAFER")
        finally:
            scratch.unlink(missing_ok=True)
    LOG.info("map imagery %s: %d px a side, %.3f m/px", out, side_px, res)
    return out


@dataclass
class Window:
    """Imagery read for a local box: RGB, validity, and the pixel -> local-metres mapping."""

    rgb: np.ndarray  # uint8 [H, W, 3]
    valid: np.ndarray  # bool [H, W]
    west_m: float  # local east of the left edge of pixel column 0
    north_m: float  # local north of the top edge of pixel row 0
    m_per_px: float

    def pixel_to_local(self) -> np.ndarray:
        """3x3 affine from OpenCV pixel coordinates (centres at integers) to local E/N metres."""
        s = self.m_per_px
        return np.array([[s, 0.0, self.west_m + 0.5 * s],
                         [0.0, -s, self.north_m - 0.5 * s],
                         [0.0, 0.0, 1.0]])


class MapImagery:
    """An opened ``imagery.tif``: windowed reads in local metres at a requested resolution."""

    def __init__(self, path: Path) -> None:
        import rasterio

        self.path = Path(path)
        try:
            self.dataset = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as err:
            raise JziError(f"map imagery {self.path} cannot be read: {err}; rebuild the map "
                           "with `jzi map build`") from None
        transform = self.dataset.transform
        self.m_per_px = float(transform.a)
        self.west_m = float(transform.c)
        self.north_m = float(transform.f)
        if abs(transform.e + transform.a) > 1e-9 * abs(transform.a) or transform.b or transform.d:
            raise JziError(f"map imagery {self.path} is not north-up with square pixels; "
                           "rebuild the map with `jzi map build`")

    @classmethod
    def open_in(cls, map_dir: str | Path) -> "MapImagery | None":
        """Return the imagery of a map directory, or None when the map has none."""
        path = Path(map_dir) / IMAGERY
        return cls(path) if path.is_file() else None

    @property
    def nbytes(self) -> int:
        return self.path.stat().st_size

    def read(self, bounds: tuple[float, float, float, float], m_per_px: float) -> Window:
        """
        Read the local box ``(west, south, east, north)`` at about ``m_per_px``.

        Parts outside the imagery come back black and invalid. The resolution is never finer
        than the stored one.
        """
        from rasterio.enums import Resampling
        from rasterio.windows import Window as RioWindow

        west, south, east, north = (float(v) for v in bounds)
        m_per_px = max(float(m_per_px), self.m_per_px)
        step = m_per_px / self.m_per_px  # stored pixels per output pixel
        c0 = math.floor((west - self.west_m) / self.m_per_px)
        r0 = math.floor((self.north_m - north) / self.m_per_px)
        width = max(1, math.ceil((east - west) / self.m_per_px))
        height = max(1, math.ceil((north - south) / self.m_per_px))
        out_w, out_h = max(1, round(width / step)), max(1, round(height / step))
        rgb = np.zeros((out_h, out_w, 3), np.uint8)
        valid = np.zeros((out_h, out_w), bool)
        ds = self.dataset
        # the part of the request inside the raster, in output pixels
        oc0 = max(0, math.ceil(-c0 / step))
        or0 = max(0, math.ceil(-r0 / step))
        oc1 = min(out_w, math.floor((ds.width - c0) / step))
        or1 = min(out_h, math.floor((ds.height - r0) / step))
        if oc1 > oc0 and or1 > or0:
            window = RioWindow(c0 + oc0 * step, r0 + or0 * step, (oc1 - oc0) * step,
                               (or1 - or0) * step)
            shape = (or1 - or0, oc1 - oc0)
            data = ds.read((1, 2, 3), window=window, out_shape=(3, *shape),
                           resampling=Resampling.average)
            mask = ds.dataset_mask(window=window, out_shape=shape,
                                   resampling=Resampling.nearest)
            rgb[or0:or1, oc0:oc1] = np.moveaxis(data, 0, -1)
            valid[or0:or1, oc0:oc1] = mask > 0
        actual = width * self.m_per_px / out_w
        return Window(rgb, valid, self.west_m + c0 * self.m_per_px,
                      self.north_m - r0 * self.m_per_px, actual)

    def close(self) -> None:
        self.dataset.close()


@dataclass
class FeatureIndex:
    """Local features of the whole map: keypoints in local metres, descriptors, detector."""

    points_en: np.ndarray  # float32 [N, 2] east/north metres
    descriptors: np.ndarray  # [N, D] float32 (SIFT) or uint8 (ORB)
    detector: str
    m_per_px: float

    @property
    def nbytes(self) -> int:
        return int(self.points_en.nbytes + self.descriptors.nbytes)

    def pixel_to_local(self, tree: CellTree) -> np.ndarray:
        """3x3 affine from index pixels (from the root's north-west corner) to local metres."""
        half, s = tree.size_m / 2, self.m_per_px
        return np.array([[s, 0.0, -half], [0.0, -s, half], [0.0, 0.0, 1.0]])

    def pixels(self, tree: CellTree, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Return keypoints as index pixels, float32 [N, 2] (MAGSAC wants image-like units)."""
        half, s = tree.size_m / 2, self.m_per_px
        en = self.points_en[rows].astype(np.float64)
        return np.stack([(en[:, 0] + half) / s, (half - en[:, 1]) / s], axis=1).astype(
            np.float32)

    def save(self, path: str | Path) -> None:
        """Write the index as a pickle-free ``.npz``, atomically (one level)."""
        save_index(path, [self])

    @classmethod
    def load(cls, path: str | Path) -> "FeatureIndex":
        """Return the base (finest) level of an index file."""
        return load_index(path)[0]


def save_index(path: str | Path, levels: Sequence[FeatureIndex]) -> None:
    """
    Write index levels (finest first) as one pickle-free ``.npz``, atomically.

    Level 0 has the plain keys (``points_en``, ``descriptors``, ``m_per_px``), level k the
    suffix ``_k``: a reader of one level reads the base level of any file.
    """
    arrays = {"detector": np.array(levels[0].detector)}
    for k, level in enumerate(levels):
        suffix = f"_{k}" if k else ""
        descriptors = level.descriptors
        if level.detector == "sift":  # SIFT values are integers in 0..255: store them as bytes
            descriptors = np.clip(np.rint(descriptors), 0, 255).astype(np.uint8)
        arrays.update({f"points_en{suffix}": level.points_en.astype(np.float32),
                       f"descriptors{suffix}": descriptors,
                       f"m_per_px{suffix}": np.array(level.m_per_px)})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def load_index(path: str | Path) -> list[FeatureIndex]:
    """Return every level of an index file, finest first."""
    try:
        with np.load(path, allow_pickle=False) as data:
            detector = str(data["detector"])
            levels = []
            while f"points_en{_suffix(len(levels))}" in data.files:
                suffix = _suffix(len(levels))
                descriptors = data[f"descriptors{suffix}"]
                if detector == "sift":
                    descriptors = descriptors.astype(np.float32)
                levels.append(FeatureIndex(data[f"points_en{suffix}"].astype(np.float32),
                                           descriptors, detector,
                                           float(data[f"m_per_px{suffix}"])))
            if not levels:
                raise KeyError("points_en")
            return levels
    except FileNotFoundError:
        raise JziError(f"map feature index {path} does not exist; rebuild the map with "
                       "`jzi map build`") from None
    except (KeyError, ValueError, OSError) as err:
        raise JziError(f"map feature index {path} is corrupt ({err}); rebuild the map "
                       "with `jzi map build`") from None


def _suffix(level: int) -> str:
    return f"_{level}" if level else ""


def index_resolutions(imagery_m_per_px: float, tree: CellTree) -> list[float]:
    """Return the index levels' metres per pixel: the base, then 2x coarser while it pays."""
    out = [max(imagery_m_per_px, tree.size_m / INDEX_MAX_PX)]
    while len(out) < INDEX_LEVELS and tree.size_m / (2 * out[-1]) >= INDEX_MIN_PX:
        out.append(2 * out[-1])
    return out


def build_feature_index(imagery: MapImagery, tree: CellTree, detector: str = "sift",
                        progress: bool = False, m_per_px: float | None = None
                        ) -> FeatureIndex:
    """Detect features over the whole imagery, block by block (default: the base level)."""
    from tqdm import tqdm

    if m_per_px is None:
        m_per_px = index_resolutions(imagery.m_per_px, tree)[0]
    half = tree.size_m / 2
    block_m = BLOCK_PX * m_per_px
    overlap_m = 32 * m_per_px
    starts = np.arange(-half, half, block_m)
    points, descriptors = [], []
    boxes = [(w, n) for n in -starts for w in starts]
    for west, north in tqdm(boxes, desc="map features", unit="block", disable=not progress,
                            dynamic_ncols=True):
        box = (west - overlap_m, north - block_m - overlap_m, west + block_m + overlap_m,
               north + overlap_m)
        window = imagery.read(box, m_per_px)
        pixels, desc = detect_features(window.rgb, detector, INDEX_FEATURES_PER_BLOCK,
                                       window.valid)
        if len(pixels) == 0:
            continue
        en = _apply(window.pixel_to_local(), pixels)
        # keep each feature in exactly one block (the overlap only avoids edge losses)
        own = ((en[:, 0] >= west) & (en[:, 0] < west + block_m)
               & (en[:, 1] <= north) & (en[:, 1] > north - block_m))
        points.append(en[own])
        descriptors.append(desc[own])
    if not points:
        width = 32 if detector == "orb" else 128
        dtype = np.uint8 if detector == "orb" else np.float32
        return FeatureIndex(np.zeros((0, 2), np.float32), np.zeros((0, width), dtype),
                            detector, m_per_px)
    return FeatureIndex(np.concatenate(points).astype(np.float32),
                        np.concatenate(descriptors), detector, m_per_px)


def _apply(affine: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels, np.float64).reshape(-1, 2)
    return pixels @ affine[:2, :2].T + affine[:2, 2]


def write_map_imagery(make_renderer: Callable, tree: CellTree, crs, out_dir: str | Path,
                      m_per_px: float | None = None, detector: str = "sift",
                      progress: bool = False) -> tuple[Path, Path]:
    """Write ``imagery.tif`` and ``features.npz`` into a map directory; return both paths."""
    image_path = write_imagery(make_renderer, tree, crs, out_dir, m_per_px, progress)
    imagery = MapImagery(image_path)
    try:
        levels = [build_feature_index(imagery, tree, detector, progress, m_per_px)
                  for m_per_px in index_resolutions(imagery.m_per_px, tree)]
    finally:
        imagery.close()
    features_path = Path(out_dir) / FEATURES
    save_index(features_path, levels)
    LOG.info("map feature index %s: %s %s features", features_path,
             " + ".join(str(len(level.points_en)) for level in levels), detector)
    return image_path, features_path


def imagery_summary(map_dir: str | Path) -> str:
    """Return one line on the map's refinement imagery (for `jzi map build` and `map info`)."""
    image_path = Path(map_dir) / IMAGERY
    features_path = Path(map_dir) / FEATURES
    if not image_path.is_file():
        return ("imagery   none: refinement and the classical baseline are off (map built "
                "before they existed; rebuild it with `jzi map build`)")
    imagery = MapImagery(image_path)
    try:
        side = imagery.dataset.width
        line = (f"imagery   {IMAGERY} {imagery.nbytes / 2**20:.1f} MiB, {side} px a side, "
                f"{imagery.m_per_px:.3f} m/px")
    finally:
        imagery.close()
    if features_path.is_file():
        index, *coarser = load_index(features_path)
        line += (f"; {FEATURES} {features_path.stat().st_size / 2**20:.1f} MiB, "
                 f"{len(index.points_en)} {index.detector} features at {index.m_per_px:.2f} "
                 "m/px")
        if coarser:
            line += " (coarser: " + ", ".join(f"{len(c.points_en)} at {c.m_per_px:.2f}"
                                              for c in coarser) + " m/px)"
    return line
