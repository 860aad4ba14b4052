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
The world's layout: districts, water, arterial roads, then urban and rural content.

Order matters: water and arterials are planned first (as a *blocked* mask) so that blocks and
fields never end up under them; they are painted last, which also makes bridges.
"""
from __future__ import annotations

import math
import time

import cv2
import numpy as np

from jzi_ros.demo import blocks, rural
from jzi_ros.demo.draw import dashed_polyline, Layers, thick_polyline
from jzi_ros.demo.noise import fbm
from jzi_ros.demo.world import GRASS, MAJOR_ROAD, SAND, SOIL, WATER, World, WorldSpec

# District kinds.
CORE, RESIDENTIAL, INDUSTRIAL, FIELDS, FOREST_LAND = range(5)
DISTRICT_M = 330.0  # typical district diameter
LOWRES = 4          # district map is computed at 1/LOWRES resolution, then upsampled


def generate_world(spec: WorldSpec) -> World:
    """Generate the layers of a world; deterministic in ``spec`` (same spec, same bytes)."""
    start = time.perf_counter()
    world = build(spec)
    world.seconds = time.perf_counter() - start
    return world


def build(spec: WorldSpec) -> World:
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x6a7a69]))
    n, s = spec.pixels, 1.0 / spec.gsd_m
    layers = Layers(n, s)
    districts, kinds = _districts(rng, n, s, spec)

    water = _water(rng, n, s, kinds, districts)
    roads = _arterials(rng, n, s, spec)
    layers.blocked[water > 0] = 1
    for pts, width in roads:
        thick_polyline(layers.blocked, pts, 1, (width + 6) * s)

    _ground(rng, layers)
    urban_kinds = {CORE: "core", RESIDENTIAL: "residential", INDUSTRIAL: "industrial"}
    for d, kind in enumerate(kinds):
        bbox = _bbox(districts, d)
        if bbox is None:
            continue
        mask = districts[bbox] == d
        if kind in urban_kinds:
            blocks.district(rng, layers, bbox, mask, urban_kinds[kind])
        elif kind == FIELDS:
            rural.fields(rng, layers, bbox, mask)
        else:
            rural.forest(rng, layers, bbox, mask)

    _paint_water(layers, water)
    for pts, width in roads:
        _paint_arterial(layers, pts, width)
    rural.scatter_trees(rng, layers)
    car_slots = np.array(layers.car_slots, np.float32).reshape(-1, 3)
    world = World(spec, layers.labels, layers.tone, layers.height, layers.pattern,
                  layers.aspect)
    if len(car_slots):
        east, north = _pixels_to_local(world, car_slots[:, 0], car_slots[:, 1])
        # pixel angle (y down) -> angle in the east/north frame (y up)
        car_slots = np.stack([east, north, -car_slots[:, 2]], axis=1).astype(np.float32)
    world.car_slots = car_slots
    return world


def _pixels_to_local(world: World, x: np.ndarray, y: np.ndarray):
    a = world.pixel_to_local()
    return a[0, 0] * x + a[0, 2], a[1, 1] * y + a[1, 2]


def _districts(rng: np.random.Generator, n: int, s: float,
               spec: WorldSpec) -> tuple[np.ndarray, list[int]]:
    """Warped Voronoi districts and their kinds (urban near two town centres, rural away)."""
    m = max(8, n // LOWRES)
    count = max(4, int(round((n / (DISTRICT_M * s)) ** 2)))
    seeds = rng.uniform(0, m, size=(count, 2))
    yy, xx = np.mgrid[0:m, 0:m].astype(np.float32)
    warp = 0.12 * DISTRICT_M * s / LOWRES
    xx = xx + warp * fbm(rng, (m, m), [m / 6, m / 14])
    yy = yy + warp * fbm(rng, (m, m), [m / 6, m / 14])
    best = np.full((m, m), np.inf, np.float32)
    ids = np.zeros((m, m), np.int32)
    for i, (sx, sy) in enumerate(seeds):
        d = (xx - sx) ** 2 + (yy - sy) ** 2
        closer = d < best
        best[closer] = d[closer]
        ids[closer] = i
    full = cv2.resize(ids.astype(np.float32), (n, n), interpolation=cv2.INTER_NEAREST)
    districts = full.astype(np.int32)

    # Two towns inside the root: a big one and a smaller one; urbanity decays with distance.
    root_px = spec.size_m * s / LOWRES
    lo, hi = (m - root_px) / 2 + 0.15 * root_px, (m + root_px) / 2 - 0.15 * root_px
    towns = rng.uniform(lo, hi, size=(2, 2))
    radii = np.array([0.28, 0.17]) * root_px
    kinds = []
    for sx, sy in seeds:
        dist = np.hypot(towns[:, 0] - sx, towns[:, 1] - sy)
        urban = float(np.max(np.exp(-dist / radii))) + rng.normal(0, 0.08)
        if urban > 0.62:
            kinds.append(CORE)
        elif urban > 0.33:
            kinds.append(INDUSTRIAL if rng.random() < 0.25 else RESIDENTIAL)
        else:
            r = rng.random()
            kinds.append(RESIDENTIAL if r < 0.08 else FOREST_LAND if r < 0.36 else FIELDS)
    return districts, kinds


def _bbox(districts: np.ndarray, d: int) -> tuple[slice, slice] | None:
    # Subsampled search keeps this cheap; pad by the subsampling step.
    step = LOWRES
    ys, xs = np.nonzero(districts[::step, ::step] == d)
    if ys.size == 0:
        return None
    n = districts.shape[0]
    y0, y1 = max(0, ys.min() * step - step), min(n, ys.max() * step + 2 * step)
    x0, x1 = max(0, xs.min() * step - step), min(n, xs.max() * step + 2 * step)
    return slice(y0, y1), slice(x0, x1)


def _wander(rng: np.random.Generator, n: int, start: np.ndarray, heading: float,
            step: float, turn: float) -> np.ndarray:
    """Return a smooth random walk from ``start`` until it leaves the raster (with some slack)."""
    pts, pos, dh = [start.copy()], start.astype(np.float64), 0.0
    for _ in range(int(6 * n / step)):
        dh = 0.8 * dh + rng.normal(0, turn)
        heading += dh
        pos = pos + step * np.array([math.cos(heading), math.sin(heading)])
        pts.append(pos.copy())
        if not (-0.1 * n <= pos[0] <= 1.1 * n and -0.1 * n <= pos[1] <= 1.1 * n):
            break
    return np.array(pts)


def _edge_start(rng: np.random.Generator, n: int) -> tuple[np.ndarray, float]:
    """Return a point on a random edge of the raster and a heading pointing inwards."""
    side = int(rng.integers(0, 4))
    t = rng.uniform(0.2, 0.8) * n
    start = [np.array([t, -5.0]), np.array([n + 5.0, t]), np.array([t, n + 5.0]),
             np.array([-5.0, t])][side]
    heading = [math.pi / 2, math.pi, -math.pi / 2, 0.0][side] + rng.normal(0, 0.3)
    return start, heading


def _water(rng: np.random.Generator, n: int, s: float, kinds: list[int],
           districts: np.ndarray) -> np.ndarray:
    """Return a river crossing the world and one or two lakes in rural districts."""
    water = np.zeros((n, n), np.uint8)
    start, heading = _edge_start(rng, n)
    river = _wander(rng, n, start, heading, 25 * s, 0.05)
    width = rng.uniform(22, 40) * s
    widths = width * (1 + 0.35 * np.sin(np.linspace(0, rng.uniform(4, 9), len(river))))
    for a, b, w in zip(river[:-1], river[1:], widths):
        thick_polyline(water, np.array([a, b]), 1, w)
    rural_ids = [i for i, k in enumerate(kinds) if k in (FIELDS, FOREST_LAND)]
    for _ in range(int(rng.integers(1, 3))):
        if not rural_ids:
            break
        ys, xs = np.nonzero(districts[::16, ::16] == rng.choice(rural_ids))
        if ys.size == 0:
            continue
        k = int(rng.integers(0, ys.size))
        cx, cy, r = xs[k] * 16.0, ys[k] * 16.0, rng.uniform(50, 130) * s
        half = int(2 * r)
        y0, y1 = max(0, int(cy) - half), min(n, int(cy) + half)
        x0, x1 = max(0, int(cx) - half), min(n, int(cx) + half)
        if y1 - y0 < 8 or x1 - x0 < 8:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dist = np.hypot((xx - cx) / rng.uniform(0.6, 1.4), yy - cy) / r
        blob = dist + 0.35 * fbm(rng, dist.shape, [r / 1.5, r / 4])
        water[y0:y1, x0:x1][blob < 1.0] = 1
    return water


def _arterials(rng: np.random.Generator, n: int, s: float,
               spec: WorldSpec) -> list[tuple[np.ndarray, float]]:
    """Three to five long, gently curving main roads that cross the world."""
    roads = []
    for _ in range(int(rng.integers(3, 6))):
        start, heading = _edge_start(rng, n)
        pts = _wander(rng, n, start, heading, 30 * s, 0.015)
        roads.append((pts, rng.uniform(13, 22)))
    return roads


def _ground(rng: np.random.Generator, layers: Layers) -> None:
    """Draw base cover: grass with patches of bare soil, and a smooth tone for colour variation."""
    n = layers.size
    noise = fbm(rng, (n, n), [220 * layers.s, 70 * layers.s, 20 * layers.s])
    layers.labels[:] = np.where(noise > 1.1, SOIL, GRASS)
    tone = fbm(rng, (n, n), [150 * layers.s, 40 * layers.s])
    layers.tone[:] = np.clip(128 + 50 * tone, 0, 255).astype(np.uint8)


def _paint_water(layers: Layers, water: np.ndarray) -> None:
    shore = cv2.dilate(water, np.ones((5, 5), np.uint8)) & (water == 0)
    sandy = shore.astype(bool) & np.isin(layers.labels, [GRASS, SOIL])
    layers.labels[sandy] = SAND
    wet = water > 0
    for layer, value in ((layers.labels, WATER), (layers.height, 0), (layers.tone, 128),
                         (layers.aspect, 255)):
        layer[wet] = value


def _paint_arterial(layers: Layers, pts: np.ndarray, width_m: float) -> None:
    s = layers.s
    road = np.zeros_like(layers.labels)
    thick_polyline(road, pts, 1, width_m * s)
    on = road > 0
    layers.labels[on] = MAJOR_ROAD
    layers.height[on] = 0
    layers.aspect[on] = 255
    dashed_polyline(layers, pts, 6 * s, 9 * s)
