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

"""Rural districts: field parcels with plough stripes, hedgerows, tracks, farmsteads, forest."""
from __future__ import annotations

import math

import cv2
import numpy as np

from jzi_ros.demo.draw import building, Frame, Layers, thick_polyline
from jzi_ros.demo.noise import fbm
from jzi_ros.demo.world import BUILDING, FIELD, FOREST, GRASS, SOIL, TREE


def fields(rng: np.random.Generator, layers: Layers, bbox: tuple[slice, slice],
           mask: np.ndarray) -> None:
    """Irregular strips of parcels, each with its own crop (tone) and stripe direction."""
    s = layers.s
    y0, x0 = bbox[0].start, bbox[1].start
    h, w = mask.shape
    local = Frame(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, math.pi), s)
    span = math.hypot(h, w) / s
    ids = np.zeros((h, w), np.int32)
    parcels: list[tuple[float, float, int]] = []  # (stripe angle, period m, tone)
    tracks: list[np.ndarray] = []
    u = -span
    while u < span:
        du = rng.uniform(70, 220)
        v = -span
        while v < span:
            dv = rng.uniform(80, 300)
            parcels.append((local.theta + (0 if rng.random() < 0.6 else math.pi / 2),
                            rng.uniform(3, 9), int(rng.integers(0, 256))))
            poly = local.rect(u + 1.5, v + 1.5, u + du - 1.5, v + dv - 1.5)
            cv2.fillPoly(ids, [np.round(poly).astype(np.int32)], len(parcels))
            if rng.random() < 0.35:
                tracks.append(local.px([[u, v], [u + du, v]]))
            v += dv
        u += du
    free = mask & (layers.blocked[bbox] == 0)
    inside = free & (ids > 0)
    table = np.array([(0.0, 1.0, 0)] + parcels, dtype=np.float64)
    yy, xx = np.nonzero(inside)
    k = ids[yy, xx]
    angle, period = table[k, 0], table[k, 1]
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) / (period * s)
    labels, tone, pattern = layers.labels[bbox], layers.tone[bbox], layers.pattern[bbox]
    crop = table[k, 2].astype(np.uint8)
    # A fifth of the parcels are pasture: plain grass in the parcel's own tone.
    pasture = crop < 50
    labels[yy, xx] = np.where(pasture, GRASS, FIELD)
    tone[yy, xx] = np.where(pasture, 100 + crop, crop)
    pattern[yy, xx] = (127.5 + 127.5 * np.sin(2 * np.pi * phase)).astype(np.uint8)
    labels[free & (ids == 0)] = GRASS  # field margins

    track_canvas = np.zeros((h, w), np.uint8)
    for pts in tracks:
        thick_polyline(track_canvas, pts, 1, 3.5 * s)
    labels[free & (track_canvas > 0)] = SOIL
    _hedges(rng, layers, mask, x0, y0, tracks)
    for _ in range(max(1, int(mask.sum() / (s * s) / 250_000 * rng.uniform(1, 3)))):
        ys, xs = np.nonzero(mask[::8, ::8])
        if ys.size:
            i = int(rng.integers(0, ys.size))
            _farmstead(rng, layers, x0 + xs[i] * 8.0, y0 + ys[i] * 8.0)
    # Small woods scattered over the farmland.
    woods = fbm(rng, (h, w), [120 * s, 40 * s]) > 1.5
    _forest_fill(rng, layers, bbox, free & woods)


def _hedges(rng, layers, mask, x0, y0, tracks) -> None:
    """Rows of trees beside half of the tracks, only inside this district."""
    h, w = mask.shape
    for pts in tracks:
        if rng.random() < 0.5:
            continue
        a, b = pts[0] + (x0, y0), pts[-1] + (x0, y0)
        length = float(np.hypot(*(b - a)))
        step = rng.uniform(5, 9) * layers.s
        side = (b - a)[::-1] * np.array([-1, 1]) / max(length, 1e-9) * 3 * layers.s
        for t in np.arange(0, length, step):
            p = a + (b - a) * t / length + side
            lx, ly = int(p[0]) - x0, int(p[1]) - y0
            if not (0 <= lx < w and 0 <= ly < h and mask[ly, lx]):
                continue
            layers.tree(rng, p[0], p[1], rng.uniform(2, 4), (GRASS, FIELD, SOIL))


def _farmstead(rng, layers, x: float, y: float) -> None:
    s = layers.s
    frame = Frame(x, y, rng.uniform(0, math.pi), s)
    yard = frame.rect(-25, -20, 25, 20)
    if not layers.is_free(yard):
        return
    layers.fill(yard, SOIL, int(rng.integers(0, 256)), 0)
    building(layers, frame, -22, -17, 8, -5, rng.uniform(7, 11), int(rng.integers(128, 256)),
             "gable_u")
    building(layers, frame, 8, 2, 19, 14, rng.uniform(6, 9), int(rng.integers(128, 256)),
             "hip")
    if rng.random() < 0.6:
        cx, cy = frame.px([[-15, 10]])[0]
        layers.disc(cx, cy, 3.5 * s, BUILDING, int(rng.integers(0, 60)), 14)
    for _ in range(int(rng.integers(3, 9))):
        px, py = frame.px([[rng.uniform(-35, 35), rng.uniform(-30, 30)]])[0]
        layers.tree(rng, px, py, rng.uniform(2.5, 5), (GRASS, FIELD, SOIL))


def forest(rng: np.random.Generator, layers: Layers, bbox: tuple[slice, slice],
           mask: np.ndarray) -> None:
    """Woodland with clearings (meadows) and a track."""
    s = layers.s
    h, w = mask.shape
    free = mask & (layers.blocked[bbox] == 0)
    layers.labels[bbox][free] = GRASS
    clearings = fbm(rng, (h, w), [150 * s, 50 * s]) < -0.6
    _forest_fill(rng, layers, bbox, free & ~clearings)
    a = np.array([rng.uniform(0, w), 0.0])
    b = np.array([rng.uniform(0, w), float(h)])
    track = np.zeros((h, w), np.uint8)
    thick_polyline(track, np.vstack([a, (a + b) / 2 + rng.normal(0, 40, 2), b]), 1, 4 * s)
    layers.labels[bbox][free & (track > 0)] = SOIL
    layers.height[bbox][free & (track > 0)] = 0


def _forest_fill(rng, layers, bbox, where: np.ndarray) -> None:
    labels, height, tone = layers.labels[bbox], layers.height[bbox], layers.tone[bbox]
    labels[where] = FOREST
    height[where] = 16
    # Tone: broad patches of different stands (conifer / deciduous mixes).
    stands = fbm(rng, where.shape, [90 * layers.s, 30 * layers.s])
    tone[where] = np.clip(128 + 60 * stands[where], 0, 255).astype(np.uint8)


def scatter_trees(rng: np.random.Generator, layers: Layers) -> None:
    """Lone trees and copses on open grass, denser where a smooth noise field says so."""
    n = layers.size
    density = fbm(rng, (n // 16 + 1, n // 16 + 1), [12, 4])
    count = int(n * n / (layers.s ** 2) / 900)
    xs, ys = rng.uniform(0, n, count), rng.uniform(0, n, count)
    keep = density[(ys / 16).astype(int), (xs / 16).astype(int)] > rng.normal(0.6, 0.4, count)
    for x, y in zip(xs[keep], ys[keep]):
        layers.tree(rng, x, y, rng.uniform(2, 5), (GRASS, SOIL, TREE))
