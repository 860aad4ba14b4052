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
Drone-camera training views rendered from georeferenced imagery of the map's area.

A user with an orthophoto of their area has no geotagged drone photos to train on; what they
can have is the map and other rasters of the same ground (other years, other seasons). This
module turns any of those into drone frames: a random camera (altitude, pitch off nadir,
heading policy, field of view) above a random point of the map's root, the exact ground-plane
homography of :mod:`jzi_ros.training.camera`, and the sensor's own imperfections (blur, noise,
vignetting, exposure, occluders). The label is the camera's nadir, so it is exact.

Rasters are read by window: each view reads only the source pixels under its footprint,
already decimated to about the view's resolution, so memory stays flat whatever the raster's
size. A :class:`Ground` is anything that renders a camera's view; the demo's generated world is
an :class:`ArrayGround` (a north-up array in the tree's frame), a GeoTIFF a :class:`RasterGround`.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
import math
import os
from pathlib import Path
import time
from typing import Protocol, Sequence

import cv2
import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree
from jzi_ros.training.camera import CameraModel, CameraPose, footprint, render_view

MANIFEST = "manifest.csv"
HORIZON_MARGIN_DEG = 3.0


@dataclass(frozen=True)
class ViewSampling:
    """
    Ranges the query camera is drawn from (uniform).

    ``heading_deg`` is the heading policy: (-10, 10) is a yaw-stabilised camera held north-up
    (a mapping drone's gimbal); (0, 360) any heading (a model that must not rely on it).
    """

    width: int = 320
    height: int = 240
    heading_deg: tuple[float, float] = (0.0, 360.0)
    hfov_deg: tuple[float, float] = (60.0, 80.0)
    altitude_m: tuple[float, float] = (80.0, 150.0)
    pitch_deg: tuple[float, float] = (65.0, 90.0)
    degrade: float = 1.0  # scales blur, noise and occluder probability (0 = clean images)

    def __post_init__(self) -> None:
        for name in ("heading_deg", "hfov_deg", "altitude_m", "pitch_deg"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise JziError(f"view sampling: {name} must be a [low, high] pair, got {value!r}")
            low, high = (float(v) for v in value)
            if not low <= high:
                raise JziError(f"view sampling: {name} range ({low}, {high}) has low > high")
            object.__setattr__(self, name, (low, high))
        if self.altitude_m[0] <= 0:
            raise JziError(f"view sampling: altitude_m must be > 0, got {self.altitude_m}")
        if self.degrade < 0:
            raise JziError(f"view sampling: degrade must be >= 0, got {self.degrade}")
        worst = CameraModel(self.width, self.height, self.hfov_deg[1])
        if self.pitch_deg[0] - worst.vfov_deg / 2 < HORIZON_MARGIN_DEG or self.pitch_deg[1] > 90:
            raise JziError(f"view sampling: pitch_deg {self.pitch_deg} must lie in "
                           f"[{worst.vfov_deg / 2 + HORIZON_MARGIN_DEG:.1f}, 90] with hfov "
                           f"{self.hfov_deg[1]} deg (lower pitches see the horizon)")

    def to_dict(self) -> dict:
        return asdict(self)


def sample_pose(rng: np.random.Generator, sampling: ViewSampling, east_m: float,
                north_m: float, heading_deg: float | None = None
                ) -> tuple[CameraModel, CameraPose]:
    """Sample a camera and pose above (east, north); heading random unless given."""
    camera = CameraModel(sampling.width, sampling.height, float(rng.uniform(*sampling.hfov_deg)))
    heading = (float(rng.uniform(*sampling.heading_deg)) % 360 if heading_deg is None
               else heading_deg)
    pose = CameraPose(float(east_m), float(north_m), float(rng.uniform(*sampling.altitude_m)),
                      heading, float(rng.uniform(*sampling.pitch_deg)))
    return camera, pose


def degrade_frame(image: np.ndarray, rng: np.random.Generator, amount: float = 1.0
                  ) -> np.ndarray:
    """Blur, vignetting, exposure drift, sensor noise and occluders of a real drone frame."""
    h, w = image.shape[:2]
    img = image.astype(np.float32)
    if rng.random() < 0.3 * amount:
        length = int(rng.integers(3, 8))
        kernel = np.zeros((length, length), np.float32)
        angle = rng.uniform(0, math.pi)
        c = (length - 1) / 2
        for t in np.linspace(-c, c, 2 * length):
            kernel[int(round(c + t * math.sin(angle))), int(round(c + t * math.cos(angle)))] = 1
        img = cv2.filter2D(img, -1, kernel / kernel.sum())
    else:
        sigma = rng.uniform(0.0, 1.2 * amount)
        if sigma > 0.2:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
    # Vignetting and exposure drift.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img *= (1 - rng.uniform(0, 0.25) * amount * r2 / 2)[..., None]
    img *= rng.uniform(1 - 0.15 * amount, 1 + 0.15 * amount)
    img += rng.normal(0, rng.uniform(1, 5) * amount, img.shape).astype(np.float32)
    if rng.random() < 0.25 * amount:
        _landing_gear(img, rng)
    if rng.random() < 0.15 * amount:
        for _ in range(int(rng.integers(1, 5))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            spot = np.zeros((h, w), np.float32)
            cv2.circle(spot, centre, int(rng.integers(3, max(4, w // 20))), 1.0, -1)
            spot = cv2.GaussianBlur(spot, (0, 0), 3)[..., None]
            img = img * (1 - 0.5 * spot) + 0.5 * spot * 90
    return np.clip(img, 0, 255).astype(np.uint8)


def _landing_gear(img: np.ndarray, rng: np.random.Generator) -> None:
    """Add a dark, out-of-focus strut entering from a top corner (what drone cameras often see)."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.float32)
    x = 0 if rng.random() < 0.5 else w - 1
    end = (int(x + (1 if x == 0 else -1) * rng.uniform(0.1, 0.3) * w),
           int(rng.uniform(0.15, 0.4) * h))
    cv2.line(mask, (x, 0), end, 1.0, int(max(3, rng.uniform(0.03, 0.08) * w)))
    mask = cv2.GaussianBlur(mask, (0, 0), 2.5)[..., None]
    img *= 1 - 0.85 * mask
    img += 0.85 * mask * 30


def other_day(image: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """
    Shift a whole frame's colours like another day's light: white balance, gamma, saturation.

    One raster has one day's light; this makes "other days" of it (weaker than a real second
    date: geometry, shadows and vegetation do not change).
    """
    if amount <= 0:
        return image
    img = image.astype(np.float32) / 255.0
    img = img ** np.float32(math.exp(rng.normal(0.0, 0.25 * amount)))
    img *= (1 + rng.normal(0.0, 0.08 * amount, 3)).astype(np.float32)
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    saturation = np.float32(max(0.0, 1 + rng.normal(0.0, 0.3 * amount)))
    img = grey[..., None] + (img - grey[..., None]) * saturation
    return np.clip(img * 255.0, 0, 255).astype(np.uint8)


class Ground(Protocol):
    """Imagery lying on the ground plane of the tree's local frame."""

    name: str

    def view(self, camera: CameraModel, pose: CameraPose) -> tuple[np.ndarray, float]:
        """Return the camera's image (RGB uint8) and the fraction of it that sees imagery."""


class ArrayGround:
    """A north-up RGB array in the tree's local frame (the demo's styled world)."""

    def __init__(self, rgb: np.ndarray, pixel_to_local: np.ndarray, name: str = "array") -> None:
        self.rgb = rgb
        self.pixel_to_local = np.asarray(pixel_to_local, np.float64)
        self.name = name

    def view(self, camera: CameraModel, pose: CameraPose) -> tuple[np.ndarray, float]:
        image = render_view(self.rgb, self.pixel_to_local, camera, pose)
        corners = footprint(camera, pose)
        cols_rows = cv2.perspectiveTransform(corners.reshape(-1, 1, 2),
                                             np.linalg.inv(self.pixel_to_local)).reshape(-1, 2)
        h, w = self.rgb.shape[:2]
        inside = np.all((cols_rows >= 0) & (cols_rows <= (w, h)))
        return image, 1.0 if inside else float(np.mean(image.any(axis=2)))


class RasterGround:
    """
    A georeferenced raster (any CRS GDAL reads) sampled window by window.

    Per view the footprint's bounding box in the local frame is rendered by the map builder's
    :class:`~jzi_ros.maps.build.CellRenderer` (decimated read + reprojection) at about twice the
    camera's nadir resolution, capped by the raster's own, then warped by the homography.
    Pixels the raster does not cover, or that are pure black (no-data wedges of untagged
    rasters), count as not seen.
    """

    def __init__(self, path: str | os.PathLike, tree: CellTree, crs: str | None = None,
                 max_patch_px: int = 1536) -> None:
        from jzi_ros.maps.build import CellRenderer
        from jzi_ros.maps.sources import open_source

        self.path = Path(path)
        self.name = self.path.name
        self.max_patch_px = int(max_patch_px)
        self._stack = ExitStack()
        source = self._stack.enter_context(open_source(self.path, crs))
        self.sha256 = source.info["sha256"]
        self.renderer = CellRenderer(source, tree, tile_px=1)
        c0, r0, c1, r1 = self.renderer._source_window((-50.0, -50.0, 50.0, 50.0))
        self.gsd_m = 100.0 / max(c1 - c0, r1 - r0, 1e-9)  # source pixel size near the centre

    def close(self) -> None:
        self._stack.close()

    def view(self, camera: CameraModel, pose: CameraPose) -> tuple[np.ndarray, float]:
        corners = footprint(camera, pose)
        nadir_gsd = pose.altitude_m / camera.focal_px
        gsd = max(nadir_gsd / 2, self.gsd_m / 2)
        (west, south), (east, north) = corners.min(axis=0) - gsd, corners.max(axis=0) + gsd
        side = max(east - west, north - south)
        gsd = max(gsd, side / self.max_patch_px)
        width = max(2, math.ceil((east - west) / gsd))
        height = max(2, math.ceil((north - south) / gsd))
        east, south = west + width * gsd, north - height * gsd
        rgb, valid = self.renderer.render_box((west, south, east, north), width, height)
        valid &= (rgb[..., 0] | rgb[..., 1] | rgb[..., 2]) != 0  # pure black: no data
        to_local = np.array([[gsd, 0.0, west], [0.0, -gsd, north], [0.0, 0.0, 1.0]])
        image = render_view(rgb, to_local, camera, pose)
        seen = render_view(valid.astype(np.uint8) * 255, to_local, camera, pose)
        return image, float(np.mean(seen > 127))


@dataclass(frozen=True)
class RenderedView:
    """One rendered frame and its exact label (the camera's nadir)."""

    image: np.ndarray
    east_m: float
    north_m: float
    latitude: float
    longitude: float
    heading_deg: float
    pitch_deg: float
    altitude_m: float
    hfov_deg: float
    source: str


@dataclass(frozen=True)
class RenderSpec:
    """
    What to render training views from and how (the ``render:`` block of a training config).

    ``sources`` are rasters of the map's area (other years or seasons; the map's own raster as
    the fallback); never the test date's. ``photometric`` scales the "other day" colour shift,
    ``min_valid`` is the fraction of a frame that must see imagery (else the pose is redrawn).
    """

    sources: tuple[str, ...] = ()
    crs: str | None = None
    sampling: ViewSampling = field(default_factory=ViewSampling)
    photometric: float = 0.5
    min_valid: float = 0.9
    samples_per_epoch: int = 4096

    def __post_init__(self) -> None:
        if isinstance(self.sources, (str, os.PathLike)):
            object.__setattr__(self, "sources", (str(self.sources),))
        object.__setattr__(self, "sources", tuple(str(s) for s in self.sources))
        if not self.sources:
            raise JziError("render: 'sources' must name at least one raster of the map's area "
                           "(e.g. sources: [other_year.tif])")
        if isinstance(self.sampling, dict):
            try:
                object.__setattr__(self, "sampling", ViewSampling(**self.sampling))
            except TypeError as err:
                raise JziError(f"render.sampling: {err}") from None
        if not 0.0 <= self.min_valid <= 1.0:
            raise JziError(f"render: min_valid must be in [0, 1], got {self.min_valid}")
        if self.photometric < 0:
            raise JziError(f"render: photometric must be >= 0, got {self.photometric}")
        if not isinstance(self.samples_per_epoch, int) or self.samples_per_epoch < 1:
            raise JziError(f"render: samples_per_epoch must be an integer >= 1, got "
                           f"{self.samples_per_epoch!r}")

    @classmethod
    def from_dict(cls, data: dict) -> "RenderSpec":
        if not isinstance(data, dict):
            raise JziError(f"render: expected a mapping, got {data!r}")
        try:
            return cls(**data)
        except TypeError as err:
            raise JziError(f"render: {err}; expected keys sources, crs, sampling, "
                           f"photometric, min_valid, samples_per_epoch") from None

    def to_dict(self) -> dict:
        return {**asdict(self), "sources": list(self.sources)}


class ViewRenderer:
    """Draw random views above the map's root from one or more grounds (uniform choice)."""

    MAX_TRIES = 50

    def __init__(self, grounds: Sequence[Ground], tree: CellTree, spec: RenderSpec) -> None:
        if not grounds:
            raise JziError("view renderer: no ground imagery to render from")
        self.grounds = list(grounds)
        self.tree = tree
        self.spec = spec

    @classmethod
    def from_spec(cls, spec: RenderSpec, tree: CellTree) -> "ViewRenderer":
        return cls([RasterGround(s, tree, spec.crs) for s in spec.sources], tree, spec)

    def close(self) -> None:
        for ground in self.grounds:
            getattr(ground, "close", lambda: None)()

    def draw(self, rng: np.random.Generator) -> RenderedView:
        """Render one view whose nadir is uniform over the root square."""
        half = self.tree.size_m / 2
        sampling = self.spec.sampling
        for _ in range(self.MAX_TRIES):
            ground = self.grounds[int(rng.integers(len(self.grounds)))]
            east, north = (float(v) for v in rng.uniform(-half, half, 2))
            camera, pose = sample_pose(rng, sampling, east, north)
            image, seen = ground.view(camera, pose)
            if seen >= self.spec.min_valid:
                break
        else:
            raise JziError(f"view renderer: {self.MAX_TRIES} views in a row saw less than "
                           f"{self.spec.min_valid:.0%} imagery; do the sources "
                           f"{[g.name for g in self.grounds]} cover the map's root? (lower "
                           f"render.min_valid or the altitude range)")
        image = other_day(image, rng, self.spec.photometric)
        if sampling.degrade > 0:
            image = degrade_frame(image, rng, sampling.degrade)
        lat, lon = self.tree.to_latlon(east, north)
        return RenderedView(image, east, north, float(lat), float(lon), pose.heading_deg,
                            pose.pitch_deg, pose.altitude_m, camera.hfov_deg, ground.name)


def write_view_set(renderer: ViewRenderer, out_dir: str | os.PathLike, count: int,
                   split: str, seed: int, overwrite: bool = False, progress: bool = True,
                   jpeg_quality: int = 92) -> Path:
    """Render ``count`` views into ``out_dir/images`` with ``out_dir/manifest.csv``."""
    from tqdm import tqdm

    from jzi_ros.files import atomic_directory, write_json
    from jzi_ros.training.manifest import Sample, SPLITS, write_manifest

    if split not in SPLITS:
        raise JziError(f"views: split {split!r} is not one of {SPLITS}")
    if count < 1:
        raise JziError(f"views: count must be >= 1, got {count}")
    out_dir = Path(out_dir)
    start = time.perf_counter()
    samples = []
    with atomic_directory(out_dir, overwrite) as tmp:
        (tmp / "images").mkdir()
        for index in tqdm(range(count), desc=f"{split} views", unit="img",
                          disable=not progress):
            view = renderer.draw(np.random.default_rng([seed, index, 0x71e5]))
            name = f"images/{index:06d}.jpg"
            cv2.imwrite(str(tmp / name), cv2.cvtColor(view.image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            samples.append(Sample(image=tmp / name, latitude=view.latitude,
                                  longitude=view.longitude, heading=round(view.heading_deg, 3),
                                  split=split, pitch=round(view.pitch_deg, 3),
                                  altitude=round(view.altitude_m, 2), source=view.source,
                                  hfov=round(view.hfov_deg, 3)))
        write_manifest(tmp / MANIFEST, samples)
        write_json(tmp / "views.json", {
            "tree": renderer.tree.to_dict(), "render": renderer.spec.to_dict(),
            "sources_sha256": {g.name: getattr(g, "sha256", None) for g in renderer.grounds},
            "count": count, "split": split, "seed": seed,
            "seconds": round(time.perf_counter() - start, 1)})
    return out_dir


def check_not_test(spec: RenderSpec | None, samples: Sequence, manifest: str) -> None:
    """
    Refuse to train on a raster the manifest's test rows were rendered from.

    Test views written by ``jzi views`` record their raster's file name in ``source``;
    rendering training views from the same raster would score the model on its own
    training imagery.
    """
    if spec is None:
        return
    tested = {s.source for s in samples if s.split == "test" and s.source}
    clash = sorted(tested & {Path(source).name for source in spec.sources})
    if clash:
        raise JziError(f"training config: render.sources {clash} also rendered the test rows "
                       f"of {manifest}; train on other rasters (the test date must stay unseen)")
