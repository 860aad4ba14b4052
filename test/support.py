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
Shared test helpers: a tiny synthetic map and a tiny checkpoint embedded into it.

Used by the tests of every stream (maps, model, inference, ROS, replay, demo), so keep the
signatures stable. Everything is deterministic for a given seed and small enough that a test
builds a map + checkpoint in well under a second on a laptop CPU.

The synthetic world is one smooth multi-octave colour field over the root square; each map view
is that field rendered over the cell's bounds, so a child's view really is a zoomed part of its
parent (like an orthophoto) and every cell looks different from every other.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from jzi_ros.geo import CellTree

# Washington DC, the paper's area; any valid centre works.
TINY_CENTER = (38.9, -77.03)


class SyntheticWorld:
    """
    A deterministic colour field over the root square of ``tree``.

    The field is a stack of random octaves (coarse to fine) upsampled to ``resolution`` pixels,
    so views at every level have structure: coarse octaves make the root-level cells differ,
    fine octaves make the deepest cells differ.
    """

    def __init__(self, tree: CellTree, seed: int = 0, resolution: int | None = None) -> None:
        self.tree = tree
        rng = np.random.default_rng(seed)
        finest = tree.grid ** tree.depth
        self.resolution = int(resolution or max(256, finest * 8))
        field = np.zeros((self.resolution, self.resolution, 3), np.float32)
        size, weight = 2, 1.0
        while size <= finest * 2:
            octave = rng.uniform(-1.0, 1.0, (size, size, 3)).astype(np.float32)
            field += weight * cv2.resize(octave, (self.resolution, self.resolution),
                                         interpolation=cv2.INTER_CUBIC)
            size, weight = size * 2, weight * 0.8
        field -= field.min(axis=(0, 1))
        field /= field.max(axis=(0, 1))
        self.image = np.ascontiguousarray((field * 255).round().astype(np.uint8))

    def _crop(self, west: float, south: float, east: float, north: float,
              out_hw: tuple[int, int]) -> np.ndarray:
        """Render the local-frame box (metres) into an ``out_hw`` RGB image (north-up)."""
        half, res = self.tree.size_m / 2, self.resolution
        # pixel x grows east, y grows south, origin at the root's north-west corner
        x0, x1 = (west + half) / self.tree.size_m * res, (east + half) / self.tree.size_m * res
        y0, y1 = (half - north) / self.tree.size_m * res, (half - south) / self.tree.size_m * res
        height, width = out_hw
        matrix = np.array([[(x1 - x0) / width, 0, x0], [0, (y1 - y0) / height, y0]], np.float32)
        return cv2.warpAffine(self.image, matrix, (width, height),
                              flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT)

    def render_view(self, path: Sequence[int], tile_px: int) -> np.ndarray:
        """Return the map view of the cell at ``path``: uint8 [tile_px, tile_px, 3]."""
        return self._crop(*self.tree.cell_bounds_local(path), (tile_px, tile_px))

    def ground_image(self, east: float, north: float, extent_m: float | None = None,
                     size: tuple[int, int] = (32, 64)) -> np.ndarray:
        """
        Return a stand-in "ground photo" taken at a local point: the field around it, [H, W, 3].

        Not a real perspective view; it only has to be a deterministic function of the
        position so that a tiny model can learn it in tests.
        """
        extent = extent_m or self.tree.cell_side(self.tree.depth) * 2
        height, width = size
        half_w, half_h = extent / 2, extent / 2 * height / width
        return self._crop(east - half_w, north - half_h, east + half_w, north + half_h, size)


def tiny_tree(grid: int = 4, depth: int = 2, size_m: float = 1600.0) -> CellTree:
    return CellTree(TINY_CENTER[0], TINY_CENTER[1], size_m, grid=grid, depth=depth)


def make_tiny_map(tmp_path: str | Path, grid: int = 4, depth: int = 2, tile_px: int = 16,
                  seed: int = 0, name: str = "map", size_m: float = 1600.0):
    """
    Write a synthetic pyramid under ``tmp_path/name`` and return the opened MapPyramid.

    ``grid=4, depth=2`` has 17 views; ``depth=3`` has 273 (still fast at tile_px 16).
    """
    from jzi_ros.maps.pyramid import write_pyramid

    tree = tiny_tree(grid, depth, size_m)
    world = SyntheticWorld(tree, seed)
    return write_pyramid(Path(tmp_path) / name, tree, tile_px,
                         lambda path: world.render_view(path, tile_px),
                         {"synthetic": True, "seed": seed}, overwrite=False, progress=False)


def world_of(pyramid, seed: int | None = None) -> SyntheticWorld:
    """Return the SyntheticWorld a :func:`make_tiny_map` pyramid was rendered from."""
    if seed is None:
        seed = int(pyramid.manifest.get("source", {}).get("seed", 0))
    return SyntheticWorld(pyramid.tree, seed)


def tiny_model_config(grid: int, depth: int, preset: str = "tiny"):
    from jzi_ros.model.config import ModelConfig

    return dataclasses.replace(ModelConfig.preset(preset), grid=grid, depth=depth)


def embed_views_into(pyramid, model) -> np.ndarray:
    """Encode every map view with ``model`` and store the table next to the map."""
    from jzi_ros.maps.embed import write_map_embeddings

    write_map_embeddings(pyramid, model, batch_size=64, progress=False,
                         info={"source": "test.support"})
    return pyramid.load_embeddings(model.encoder_hash())


def make_tiny_model(pyramid, seed: int = 0, preset: str = "tiny"):
    """Return a randomly initialised ZoomModel sized to the map's grid/depth (eval mode, CPU)."""
    import torch

    from jzi_ros.model.zoom import ZoomModel

    torch.manual_seed(seed)
    model = ZoomModel(tiny_model_config(pyramid.tree.grid, pyramid.tree.depth, preset))
    return model.eval()


def sharpen_decoder(model, seed: int = 0):
    """
    Re-draw the decoder's matrices with unit gain (in place; returns ``model``).

    The model's own init (std 0.02) gives near-uniform policies that ignore the ground token,
    so every frame decodes to the same path; tests of decoding/posteriors want random
    policies that are decisive and depend on their input.
    """
    import torch

    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.decoder.parameters():
            if param.ndim == 2:
                torch.nn.init.normal_(param, std=2.0 / param.shape[1] ** 0.5, generator=rng)
    return model


# 80 px square: a north-up model's crop (56 px) sits on whole pixels at 0 and 90 degrees
HEADING_SCENE = np.random.default_rng(4).integers(0, 256, (80, 80, 3), dtype=np.uint8)


def make_north_up_model(root: Path, source: str):
    """
    Write a tiny map and a decisive north-up model embedded into it under ``root``.

    Returns ``(pyramid, checkpoint path)``: a frame turned by its heading changes the fix, so
    tests can tell a rotated frame from an unrotated one.
    """
    from jzi_ros.model.checkpoint import save_checkpoint

    pyramid = make_tiny_map(root)
    model = make_tiny_model(pyramid, seed=2)
    model.config.heading = "north-up"
    sharpen_decoder(model, 2)
    path = Path(root) / "north_up.safetensors"
    save_checkpoint(path, model, {"source": source})
    embed_views_into(pyramid, model)
    return pyramid, path


def make_tiny_checkpoint(tmp_path: str | Path, pyramid, seed: int = 0, name: str = "tiny.ckpt",
                         preset: str = "tiny", metadata: dict | None = None,
                         embed: bool = True, sharpen: bool = False) -> Path:
    """
    Save a random tiny model for ``pyramid`` and (by default) embed the map with it.

    ``sharpen``: decisive, input-dependent random policy (see :func:`sharpen_decoder`).
    """
    from jzi_ros.model.checkpoint import save_checkpoint

    model = make_tiny_model(pyramid, seed, preset)
    if sharpen:
        sharpen_decoder(model, seed)
    path = Path(tmp_path) / name
    save_checkpoint(path, model, dict(metadata or {"source": "test.support", "seed": seed}))
    if embed:
        embed_views_into(pyramid, model)
    return path


def make_geotiff(path: str | Path, tree: CellTree, seed: int = 0, px: int = 512,
                 margin: float = 0.05) -> Path:
    """
    Write the SyntheticWorld of ``tree`` as an EPSG:4326 GeoTIFF covering the root square.

    Each lat/lon pixel samples the world at its true local-frame position, so a pyramid built
    from this raster reproduces :func:`make_tiny_map`'s views (up to resampling).
    """
    import rasterio
    from rasterio.transform import from_bounds

    world = SyntheticWorld(tree, seed)
    half = tree.size_m / 2 * (1 + margin)
    lats, lons = tree.to_latlon(np.array([-half, half, -half, half]),
                                np.array([-half, -half, half, half]))
    south, north = float(np.min(lats)), float(np.max(lats))
    west, east = float(np.min(lons)), float(np.max(lons))
    lon_grid, lat_grid = np.meshgrid(west + (np.arange(px) + 0.5) / px * (east - west),
                                     north - (np.arange(px) + 0.5) / px * (north - south))
    x_m, y_m = tree.to_local(lat_grid, lon_grid)
    res = world.resolution
    map_x = ((np.asarray(x_m) + tree.size_m / 2) / tree.size_m * res - 0.5).astype(np.float32)
    map_y = ((tree.size_m / 2 - np.asarray(y_m)) / tree.size_m * res - 0.5).astype(np.float32)
    image = cv2.remap(world.image, map_x, map_y, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=px, height=px, count=3, dtype="uint8",
                       crs="EPSG:4326",
                       transform=from_bounds(west, south, east, north, px, px)) as dst:
        dst.write(np.moveaxis(image, 2, 0))
    return path


def random_rgb(height: int = 48, width: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


class LoggerRecords(logging.Handler):
    """
    Collect the messages of one named logger, as a context manager.

    Not pytest's caplog: under ``colcon test`` (ROS's pytest plugins loaded) caplog sees no
    records, so tests that assert on a log line attach their own handler.
    """

    def __init__(self, name):
        super().__init__(logging.DEBUG)
        self.logger, self.lines = logging.getLogger(name), []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def __enter__(self):
        # a logging.config.dictConfig (ROS plugins) may have disabled loggers made before it
        self.saved = (self.logger.level, self.logger.disabled)
        self.logger.setLevel(logging.DEBUG)
        self.logger.disabled = False
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.saved[0])
        self.logger.disabled = self.saved[1]

    @property
    def text(self):
        return "\n".join(self.lines)


def one_thread_torch():
    """
    Run a test with one torch thread, restoring the count after (a generator for a fixture).

    Tiny models: extra intra-op threads only fight the other test processes for cores. A test
    module makes it an autouse fixture: ``one_thread = pytest.fixture(autouse=True)(...)``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_retrieval(pyramid, seed: int = 0, crops: str = "single"):
    """Return a random tiny retrieval model (32-d embeddings) for ``pyramid``'s tree."""
    import torch

    from jzi_ros.model.config import ModelConfig
    from jzi_ros.model.retrieval import RetrievalConfig, RetrievalModel

    torch.manual_seed(seed)
    config = dataclasses.replace(ModelConfig.preset("tiny"), grid=pyramid.tree.grid,
                                 depth=pyramid.tree.depth, ground_crops=crops)
    return RetrievalModel(RetrievalConfig(config, embed_dim=32)).eval()


def save_identity_retrieval(pyramid, path: str | Path, seed: int = 1,
                            logit_scale: float | None = None) -> Path:
    """
    Save a tiny retrieval model whose frame head is its view head: a view finds itself.

    ``logit_scale`` (the inverse temperature, at most 100) sharpens its softmax: at the
    initial one the random tiny encoder gives a view's own cell only ~0.2 of the mass.
    """
    import math

    import torch

    from jzi_ros.model.retrieval import save_retrieval

    model = tiny_retrieval(pyramid, seed=seed)
    with torch.no_grad():
        model.frame_head.load_state_dict(model.view_head.state_dict())
        if logit_scale is not None:
            model.logit_scale.fill_(math.log(logit_scale))
    save_retrieval(path, model)
    return Path(path)


# --- a downward camera over textured ground (visual odometry) -----------------------------
DOWNWARD_HFOV_DEG, DOWNWARD_HEIGHT_M, DOWNWARD_SIZE = 70.0, 250.0, (240, 320)
TEXTURE_M_PER_PX = 0.5


def ground_texture(seed: int = 0, side: int = 1600) -> np.ndarray:
    """Grey ground with structure at several scales (fields, edges, speckle), RGB."""
    rng = np.random.default_rng(seed)
    field = np.zeros((side, side), np.float32)
    for cells, weight in ((8, 1.0), (32, 0.6), (128, 0.4), (400, 0.3)):
        octave = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
        field += weight * cv2.resize(octave, (side, side), interpolation=cv2.INTER_CUBIC)
    field = (field - field.min()) / (field.max() - field.min()) * 255
    return np.repeat(field.astype(np.uint8)[:, :, None], 3, axis=2)


def camera_frame(texture: np.ndarray, east_m: float, north_m: float,
                 compass_deg: float = 0.0) -> np.ndarray:
    """
    Render the nadir view of the downward camera at (east, north) over ``texture``.

    The texture is centred on the origin at 0.5 m per pixel.

    ``compass_deg``: where the image top points, clockwise from North.
    """
    from jzi_ros.inference.camera_pose import Intrinsics

    height, width = DOWNWARD_SIZE
    gsd = DOWNWARD_HEIGHT_M / Intrinsics.from_hfov(width, height, DOWNWARD_HFOV_DEG).fx
    theta, scale = math.radians(compass_deg), gsd / TEXTURE_M_PER_PX
    # texture px per frame px along u (image right) and v (image down); texture y grows South
    col_u = np.array([math.cos(theta), math.sin(theta)]) * scale
    col_v = np.array([-math.sin(theta), math.cos(theta)]) * scale
    centre = np.array([texture.shape[1] / 2 + east_m / TEXTURE_M_PER_PX,
                       texture.shape[0] / 2 - north_m / TEXTURE_M_PER_PX])
    offset = centre - col_u * (width - 1) / 2 - col_v * (height - 1) / 2
    matrix = np.array([[col_u[0], col_v[0], offset[0]], [col_u[1], col_v[1], offset[1]]],
                      np.float32)
    return cv2.warpAffine(texture, matrix, (width, height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
