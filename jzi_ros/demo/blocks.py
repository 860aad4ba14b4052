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
Urban districts: a rotated street grid with sidewalks, and blocks filled by district kind.

Core blocks get perimeter buildings around courtyards or towers, residential blocks rows of
houses with gardens, industrial blocks warehouses, yards and parking; a few blocks of any kind
become parks or parking lots, so that neighbouring blocks rarely look alike.
"""
from __future__ import annotations

import math

import numpy as np

from jzi_ros.demo.draw import building, Frame, Layers, parking_lot, thick_polyline
from jzi_ros.demo.world import BUILDING, GRASS, PAVED, ROAD, SOIL, TREE, WATER

# kind: (block length range m, block depth range m, street width range m, sidewalk m)
GRIDS = {
    "core": ((70, 110), (55, 90), (10, 14), 3.0),
    "residential": ((90, 150), (50, 75), (7, 9), 2.0),
    "industrial": ((120, 200), (90, 150), (10, 13), 0.0),
}


def district(rng: np.random.Generator, layers: Layers, bbox: tuple[slice, slice],
             mask: np.ndarray, kind: str) -> None:
    s = layers.s
    (lu, hu), (lv, hv), (lw, hw), sidewalk = GRIDS[kind]
    su, sv, w = rng.uniform(lu, hu), rng.uniform(lv, hv), rng.uniform(lw, hw)
    y0, x0 = bbox[0].start, bbox[1].start
    h, wd = mask.shape
    frame = Frame(x0 + rng.uniform(0, su * s), y0 + rng.uniform(0, sv * s),
                  rng.uniform(0, math.pi / 2), s)
    # Range of grid indices that covers the bbox in the rotated frame.
    corners = [frame.uv(x, y) for x, y in ((x0, y0), (x0 + wd, y0), (x0, y0 + h),
                                           (x0 + wd, y0 + h))]
    us, vs = [c[0] for c in corners], [c[1] for c in corners]
    i0, i1 = int(math.floor(min(us) / su)) - 1, int(math.ceil(max(us) / su)) + 1
    j0, j1 = int(math.floor(min(vs) / sv)) - 1, int(math.ceil(max(vs) / sv)) + 1

    # Streets (with sidewalks) drawn on a canvas of the bbox, then clipped to the district.
    canvas = np.zeros((h, wd), np.uint8)
    local = Frame(frame.ox - x0, frame.oy - y0, frame.theta, s)
    lines = ([local.px([[i * su, j0 * sv], [i * su, j1 * sv]]) for i in range(i0, i1 + 1)]
             + [local.px([[i0 * su, j * sv], [i1 * su, j * sv]]) for j in range(j0, j1 + 1)])
    for value, width in ((1, w + 2 * sidewalk), (2, w)):
        for pts in lines:
            thick_polyline(canvas, pts, value, width * s)
    free = mask & (layers.blocked[bbox] == 0)
    labels = layers.labels[bbox]
    labels[free & (canvas == 1)] = PAVED
    labels[free & (canvas == 2)] = ROAD
    if kind == "residential":
        labels[free & (canvas == 0)] = GRASS
    elif kind == "core":
        labels[free & (canvas == 0)] = PAVED
    else:
        labels[free & (canvas == 0)] = SOIL

    inset = w / 2 + sidewalk
    for i in range(i0, i1):
        for j in range(j0, j1):
            ub, vb = i * su + inset, j * sv + inset
            ue, ve = (i + 1) * su - inset, (j + 1) * sv - inset
            cx, cy = frame.px([[(ub + ue) / 2, (vb + ve) / 2]])[0]
            if not (x0 <= cx < x0 + wd and y0 <= cy < y0 + h):
                continue
            if not mask[int(cy) - y0, int(cx) - x0] or not layers.is_free(
                    frame.rect(ub, vb, ue, ve)):
                continue
            _block(rng, layers, frame, ub, vb, ue, ve, kind)
            if kind == "residential":
                _street_trees(rng, layers, frame, ub, vb, ue, ve)


def _block(rng: np.random.Generator, layers: Layers, frame: Frame, u0: float, v0: float,
           u1: float, v1: float, kind: str) -> None:
    r = rng.random()
    if r < 0.07:
        _park(rng, layers, frame, u0, v0, u1, v1)
    elif r < 0.13 and kind != "residential":
        parking_lot(layers, frame, u0, v0, u1, v1)
    elif kind == "core":
        (_towers if rng.random() < 0.35 else _perimeter)(rng, layers, frame, u0, v0, u1, v1)
    elif kind == "residential":
        _houses(rng, layers, frame, u0, v0, u1, v1)
    else:
        _industrial(rng, layers, frame, u0, v0, u1, v1)


def _flat_tone(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 128))


def _pitched_tone(rng: np.random.Generator) -> int:
    return int(rng.integers(128, 256))


def _perimeter(rng, layers, frame, u0, v0, u1, v1) -> None:
    """Draw buildings around the block edge enclosing a courtyard, split into parcels."""
    depth = rng.uniform(11, 18)
    base_h = rng.uniform(12, 28)
    for side in range(4):
        if side in (0, 1):
            a0, a1 = (u0, u1)
            b0, b1 = (v0, v0 + depth) if side == 0 else (v1 - depth, v1)
        else:
            a0, a1 = (v0 + depth, v1 - depth)
            b0, b1 = (u0, u0 + depth) if side == 2 else (u1 - depth, u1)
        cuts = np.sort(rng.uniform(a0, a1, size=int(rng.integers(1, 4))))
        edges = np.concatenate([[a0], cuts, [a1]])
        for e0, e1 in zip(edges[:-1], edges[1:]):
            if e1 - e0 < 6:
                continue
            h = base_h * rng.uniform(0.7, 1.4)
            tone = _flat_tone(rng) if rng.random() < 0.6 else _pitched_tone(rng)
            roof = "flat" if tone < 128 else ("gable_u" if side < 2 else "gable_v")
            if side < 2:
                building(layers, frame, e0, b0, e1, b1, h, tone, roof)
            else:
                building(layers, frame, b0, e0, b1, e1, h, tone, roof)
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(1, 4))):
            x, y = frame.px([[rng.uniform(u0 + depth, u1 - depth),
                              rng.uniform(v0 + depth, v1 - depth)]])[0]
            layers.tree(rng, x, y, rng.uniform(2.5, 4.5), (PAVED, GRASS))


def _towers(rng, layers, frame, u0, v0, u1, v1) -> None:
    """One to three large flat-roofed buildings with rooftop plant."""
    n = int(rng.integers(1, 4))
    edges = np.linspace(u0, u1, n + 1)
    for e0, e1 in zip(edges[:-1], edges[1:]):
        m = rng.uniform(2, 6)
        a0, a1 = e0 + m, e1 - m
        b0, b1 = v0 + rng.uniform(2, 8), v1 - rng.uniform(2, 8)
        if a1 - a0 < 10 or b1 - b0 < 10:
            continue
        h = rng.uniform(25, 60)
        tone = _flat_tone(rng)
        if building(layers, frame, a0, b0, a1, b1, h, tone, "flat"):
            for _ in range(int(rng.integers(1, 4))):
                pu, pv = rng.uniform(a0 + 2, a1 - 6), rng.uniform(b0 + 2, b1 - 6)
                building(layers, frame, pu, pv, pu + rng.uniform(2, 5),
                         pv + rng.uniform(2, 5), h + 2, (tone + 64) % 128, "flat")


def _houses(rng, layers, frame, u0, v0, u1, v1) -> None:
    """Rows of detached houses along both long sides, gardens and trees behind."""
    mid = (v0 + v1) / 2
    for front, sign in ((v0, 1.0), (v1, -1.0)):
        u = u0 + rng.uniform(0, 4)
        while u < u1 - 10:
            lot = rng.uniform(14, 24)
            width, depth = rng.uniform(8, min(14, lot - 3)), rng.uniform(8, 12)
            setback = rng.uniform(3, 8)
            a0 = u + (lot - width) / 2
            b0 = front + sign * setback
            b1 = b0 + sign * depth
            if abs(b1 - front) > abs(mid - front) - 2:
                break
            roof = rng.choice(["gable_u", "gable_v", "hip", "hip"])
            building(layers, frame, a0, min(b0, b1), min(a0 + width, u1 - 1), max(b0, b1),
                     rng.uniform(5, 10), _pitched_tone(rng), str(roof))
            if rng.random() < 0.12:  # a pool in the back garden
                pu, pv = a0 + rng.uniform(0, 3), b1 + sign * rng.uniform(2, 4)
                poly = frame.rect(pu, pv, pu + 4, pv + sign * 7)
                if layers.is_free(poly):
                    layers.fill(poly, WATER, 250, 0)
            for _ in range(int(rng.integers(0, 3))):
                x, y = frame.px([[rng.uniform(u, u + lot),
                                  b1 + sign * rng.uniform(3, abs(mid - b1) + 1)]])[0]
                layers.tree(rng, x, y, rng.uniform(2, 4.5), (GRASS,))
            u += lot


def _industrial(rng, layers, frame, u0, v0, u1, v1) -> None:
    """Draw a warehouse or two, a parking lot, storage tanks on a bare yard."""
    split = rng.uniform(0.45, 0.75)
    us = u0 + split * (u1 - u0)
    building(layers, frame, u0 + 4, v0 + 4, us - 4, v1 - rng.uniform(4, 25),
             rng.uniform(8, 16), _flat_tone(rng), "flat")
    if rng.random() < 0.5:
        parking_lot(layers, frame, us, v0 + 2, u1 - 2, (v0 + v1) / 2)
    else:
        building(layers, frame, us + 3, v0 + 3, u1 - 3, (v0 + v1) / 2 - 2,
                 rng.uniform(6, 12), _flat_tone(rng), "flat")
    for _ in range(int(rng.integers(0, 4))):
        yard = [[rng.uniform(us + 8, u1 - 8), rng.uniform((v0 + v1) / 2 + 8, v1 - 8)]]
        x, y = frame.px(yard)[0]
        if layers.inside(x, y) and not layers.blocked[int(y), int(x)]:
            layers.disc(x, y, rng.uniform(4, 8) * layers.s, BUILDING, int(rng.integers(0, 40)),
                        int(rng.integers(8, 15)))


def _park(rng, layers, frame, u0, v0, u1, v1) -> None:
    """Lawn, paths, trees and sometimes a pond."""
    poly = frame.rect(u0, v0, u1, v1)
    layers.fill(poly, GRASS, int(rng.integers(150, 230)), 0)
    path = np.zeros_like(layers.labels)
    a = frame.px([[u0, v0 + rng.uniform(0, v1 - v0)]])
    b = frame.px([[u1, v0 + rng.uniform(0, v1 - v0)]])
    thick_polyline(path, np.vstack([a, b]), 1, 3 * layers.s)
    inside = (path > 0) & (layers.labels == GRASS)
    layers.labels[inside] = PAVED
    if rng.random() < 0.4:
        cu, cv = (u0 + u1) / 2, (v0 + v1) / 2
        pond = frame.rect(cu - 8, cv - 6, cu + 10, cv + 7)
        layers.fill(pond, WATER, 128, 0)
    for _ in range(int((u1 - u0) * (v1 - v0) / 120)):
        x, y = frame.px([[rng.uniform(u0, u1), rng.uniform(v0, v1)]])[0]
        layers.tree(rng, x, y, rng.uniform(2.5, 5.5), (GRASS,))


def _street_trees(rng, layers, frame, u0, v0, u1, v1) -> None:
    spacing = rng.uniform(9, 16)
    for v in (v0 + 1.5, v1 - 1.5):
        u = u0 + rng.uniform(0, spacing)
        while u < u1:
            if rng.random() < 0.8:
                x, y = frame.px([[u, v]])[0]
                layers.tree(rng, x, y, rng.uniform(2, 3.5), (GRASS, TREE))
            u += spacing
