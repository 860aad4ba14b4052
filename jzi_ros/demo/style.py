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
Rendering a world's layers into an RGB aerial image in a given style.

The map is rendered in the fixed :meth:`Style.map` style (midsummer, sun high in the south);
camera views come from :meth:`Style.random` styles: another season (crops, grass, foliage),
another sun (shadow direction and length), colour temperature, haze, cloud shadows, other
parked cars and other fine texture. Same geometry, different pixels.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import math

import cv2
import numpy as np

from jzi_ros.demo.noise import fbm, value_noise
from jzi_ros.demo.world import (BUILDING, CLASS_NAMES, FIELD, FLAT, FOREST, GRASS, MAJOR_ROAD,
                                MARKING, PARKING, PAVED, ROAD, SAND, SOIL, TREE, WATER, World)

SEASONS = ("summer", "spring", "autumn", "dry")

# Crop colours per season (columns: wheat, maize, ploughed, rapeseed, grassland, sugar beet).
CROPS = {
    "summer": [(196, 172, 104), (92, 132, 58), (122, 98, 74), (150, 160, 82), (120, 150, 70),
               (70, 110, 52)],
    "spring": [(110, 150, 70), (128, 104, 80), (118, 94, 70), (214, 200, 70), (105, 150, 65),
               (126, 100, 76)],
    "autumn": [(170, 150, 110), (176, 156, 92), (104, 82, 62), (120, 100, 74), (128, 136, 72),
               (96, 120, 60)],
    "dry": [(206, 186, 128), (150, 142, 80), (140, 114, 86), (180, 166, 110), (172, 160, 100),
            (110, 116, 66)],
}
GRASS_RGB = {"summer": (96, 128, 62), "spring": (104, 146, 66), "autumn": (118, 122, 66),
             "dry": (158, 146, 96)}
FOLIAGE = {"summer": [(48, 78, 38), (60, 90, 44)], "spring": [(78, 118, 52), (96, 132, 60)],
           "autumn": [(150, 96, 40), (120, 110, 44), (160, 70, 40), (70, 84, 42)],
           "dry": [(58, 76, 40), (76, 86, 48)]}
FLAT_ROOFS = [(182, 182, 178), (142, 142, 140), (84, 84, 90), (214, 214, 208), (176, 164, 140),
              (120, 132, 142), (104, 100, 96), (196, 190, 176)]
PITCHED_ROOFS = [(162, 82, 62), (124, 62, 52), (112, 88, 72), (86, 90, 98), (136, 130, 124),
                 (84, 104, 84), (150, 100, 76), (70, 70, 76)]
CAR_COLOURS = [(230, 230, 228), (30, 30, 34), (120, 122, 126), (180, 182, 186), (160, 30, 30),
               (40, 60, 120), (200, 200, 200), (60, 60, 60)]


@dataclass(frozen=True)
class Style:
    """How a world looks: season, sun, photometry, clouds, cars, texture seed."""

    name: str = "map"
    season: str = "summer"
    sun_azimuth_deg: float = 165.0
    sun_elevation_deg: float = 55.0
    exposure: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    temperature: float = 0.0     # > 0 warmer (more red, less blue)
    haze: float = 0.0            # 0..1 blend towards a bluish grey
    clouds: float = 0.0          # fraction of the ground under cloud shadow
    car_density: float = 0.6     # fraction of parking slots with a car
    palette_jitter: float = 0.0  # random per-class colour shift (fraction)
    seed: int = 0

    @classmethod
    def map(cls) -> "Style":  # noqa: A003
        """Return the orthophoto's style: a clear midsummer day around noon."""
        return cls()

    @classmethod
    def random(cls, rng: np.random.Generator, name: str = "query") -> "Style":
        """Return a different day: any season, sun from any side, other light and colours."""
        return cls(name=name, season=str(rng.choice(SEASONS)),
                   sun_azimuth_deg=float(rng.uniform(0, 360)),
                   sun_elevation_deg=float(rng.uniform(25, 70)),
                   exposure=float(rng.uniform(0.75, 1.25)),
                   contrast=float(rng.uniform(0.8, 1.2)),
                   saturation=float(rng.uniform(0.6, 1.3)),
                   temperature=float(rng.uniform(-0.12, 0.12)),
                   haze=float(rng.uniform(0.0, 0.3)),
                   clouds=float(rng.uniform(0.0, 0.35)),
                   car_density=float(rng.uniform(0.2, 0.9)),
                   palette_jitter=float(rng.uniform(0.03, 0.12)),
                   seed=int(rng.integers(0, 2 ** 31)))

    def to_dict(self) -> dict:
        return asdict(self)


def _lut(style: Style, rng: np.random.Generator) -> np.ndarray:
    """Colour of every (class, tone) pair: float32 [classes, 256, 3]."""
    lut = np.zeros((len(CLASS_NAMES), 256, 3), np.float32)
    t = np.linspace(-1, 1, 256, dtype=np.float32)[:, None]
    season = style.season
    grass = np.array(GRASS_RGB[season], np.float32)
    lut[GRASS] = grass * (1 + 0.12 * t) + np.array([14, 8, -4]) * t
    lut[SOIL] = np.array([138, 118, 92], np.float32) * (1 + 0.1 * t)
    crops = np.array(CROPS[season], np.float32)
    lut[FIELD] = crops[(np.arange(256) * len(crops)) // 256]
    foliage = np.array(FOLIAGE[season], np.float32)
    mix = (np.arange(256) * len(foliage)) // 256
    lut[FOREST] = foliage[mix] * (1 + 0.15 * t)
    lut[TREE] = foliage[mix[::-1]] * (1 + 0.12 * t)
    lut[WATER] = np.array([46, 70, 78], np.float32) * (1 + 0.08 * t)
    lut[WATER, 250] = (96, 170, 196)  # swimming pools
    lut[ROAD] = (96, 96, 98)
    lut[MAJOR_ROAD] = (74, 74, 78)
    lut[MARKING] = (170, 170, 166)    # a thin white line averaged over a 1 m pixel
    lut[PARKING] = (112, 112, 114)
    lut[PAVED] = np.array([166, 160, 150], np.float32) * (1 + 0.05 * t)
    lut[SAND] = (194, 180, 142)
    roofs = np.concatenate([np.array(FLAT_ROOFS, np.float32)[(np.arange(128) * 8) // 128],
                            np.array(PITCHED_ROOFS, np.float32)[(np.arange(128) * 8) // 128]])
    lut[BUILDING] = roofs
    if style.palette_jitter > 0:
        lut *= 1 + style.palette_jitter * rng.standard_normal((len(CLASS_NAMES), 1, 3))
    return lut


def shadow_mask(height: np.ndarray, azimuth_deg: float, elevation_deg: float,
                gsd_m: float = 1.0) -> np.ndarray:
    """
    Where objects of ``height`` (metres) cast shadows for a sun at azimuth/elevation.

    A pixel p is shadowed if some q = p + k * u (u: unit step towards the sun) is higher than
    height(p) + k * gsd * tan(elevation). The running maximum over k is built by doubling
    (k = 1, 2, 4, ...), so the cost is logarithmic in the longest shadow.
    """
    h = height.astype(np.float32)
    rows, cols = h.shape
    az = math.radians(azimuth_deg)
    ux, uy = math.sin(az), -math.cos(az)          # towards the sun, pixel frame (y south)
    drop = gsd_m * math.tan(math.radians(max(elevation_deg, 5.0)))
    reach = float(h.max()) / drop if h.size else 0.0
    best = h.copy()
    k = 1
    while k <= 2 * reach + 1:
        m = np.float32([[1, 0, k * ux], [0, 1, k * uy]])
        shifted = cv2.warpAffine(best, m, (cols, rows), flags=cv2.INTER_LINEAR
                                 | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        np.maximum(best, shifted - k * drop, out=best)
        k *= 2
    return best > h + 0.5


def render(world: World, style: Style) -> np.ndarray:
    """RGB uint8 [H, W, 3] image of ``world`` in ``style``."""
    rng = np.random.default_rng(np.random.SeedSequence([style.seed, world.spec.seed, 7]))
    shape, s = world.shape, 1.0 / world.spec.gsd_m
    labels = world.labels
    rgb = _lut(style, rng)[labels, world.tone]

    # Texture: fine brightness noise, strongest on vegetation (crowns) and soil.
    fine = fbm(rng, shape, [6 * s, 2.5 * s])
    amount = np.array([0.10, 0.10, 0.05, 0.30, 0.03, 0.03, 0.03, 0.0, 0.03, 0.02, 0.22, 0.04,
                       0.06], np.float32)[labels]
    shade = 1 + amount * fine
    shade *= np.where(labels == FIELD, 1 + 0.09 * (world.pattern.astype(np.float32) / 127.5
                                                   - 1), 1).astype(np.float32)
    # Pitched roof facets: brighter when facing the sun.
    pitched = world.aspect != FLAT
    if np.any(pitched):
        facet = world.aspect[pitched].astype(np.float32) * (2 * np.pi / 254)
        sun_az = math.radians(style.sun_azimuth_deg)
        shade[pitched] *= 1 + 0.28 * np.cos(facet - sun_az) * math.cos(
            math.radians(style.sun_elevation_deg))
    shadow = shadow_mask(world.height, style.sun_azimuth_deg, style.sun_elevation_deg,
                         world.spec.gsd_m).astype(np.float32)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.7)
    shade *= 1 - 0.55 * shadow
    if style.clouds > 0:
        cloud = value_noise(rng, shape, 260 * s) + 0.4 * value_noise(rng, shape, 70 * s)
        threshold = np.quantile(cloud[::16, ::16], 1 - style.clouds)
        shade *= 1 - 0.35 * np.clip((cloud - threshold) * 3, 0, 1)
    rgb *= shade[..., None]
    rgb[..., 2] += 18 * shadow  # shadows are lit by the blue sky
    _draw_cars(world, style, rng, rgb)
    return _photometric(rgb, style)


def _draw_cars(world: World, style: Style, rng: np.random.Generator, rgb: np.ndarray) -> None:
    slots = world.car_slots
    if len(slots) == 0:
        return
    taken = slots[rng.random(len(slots)) < style.car_density]
    x, y = world.to_pixels(taken[:, 0], taken[:, 1])
    s = 1.0 / world.spec.gsd_m
    colours = np.array(CAR_COLOURS, np.float32)[rng.integers(0, len(CAR_COLOURS), len(taken))]
    for cx, cy, angle, colour in zip(x, y, taken[:, 2], colours):
        a = -float(angle)  # back to the pixel frame (y south)
        along = np.array([math.cos(a), math.sin(a)]) * 2.2 * s
        across = np.array([-math.sin(a), math.cos(a)]) * 0.9 * s
        c = np.array([cx, cy])
        poly = np.array([c - along - across, c + along - across, c + along + across,
                         c - along + across])
        cv2.fillPoly(rgb, [np.round(poly * 16).astype(np.int32)], colour.tolist(),
                     cv2.LINE_AA, 4)


def _photometric(rgb: np.ndarray, style: Style) -> np.ndarray:
    rgb *= style.exposure
    mean = rgb.mean(axis=(0, 1), keepdims=True)
    rgb -= mean
    rgb *= style.contrast
    rgb += mean
    if style.saturation != 1.0:
        grey = rgb.mean(axis=2, keepdims=True)
        rgb -= grey
        rgb *= style.saturation
        rgb += grey
    rgb[..., 0] *= 1 + style.temperature
    rgb[..., 2] *= 1 - style.temperature
    if style.haze > 0:
        rgb *= 1 - style.haze
        rgb += style.haze * np.array([176, 186, 200], np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)
