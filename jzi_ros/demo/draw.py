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
Drawing primitives on the world's layers: rotated frames, buildings, parking lots, trees.

All geometry here is in world pixels (x east, y south). A :class:`Frame` is a rotated local
coordinate system (u, v) in metres, used for street grids, blocks and field parcels.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import cv2
import numpy as np

from jzi_ros.demo.world import BUILDING, FLAT, MARKING, PARKING, TREE

SHIFT = 4  # fixed-point bits for cv2 polygon/circle coordinates (sub-pixel precision)
ONE = 1 << SHIFT


class Layers:
    """The mutable layers of a world under construction plus the mask of forbidden ground."""

    def __init__(self, size: int, px_per_m: float) -> None:
        self.size = size
        self.s = px_per_m
        self.labels = np.zeros((size, size), np.uint8)
        self.tone = np.zeros((size, size), np.uint8)
        self.height = np.zeros((size, size), np.uint8)
        self.pattern = np.zeros((size, size), np.uint8)
        self.aspect = np.full((size, size), FLAT, np.uint8)
        # 1 where water or a major road will be painted: nothing is built there.
        self.blocked = np.zeros((size, size), np.uint8)
        self.car_slots: list[tuple[float, float, float]] = []

    def inside(self, x: float, y: float) -> bool:
        return 0 <= x < self.size and 0 <= y < self.size

    def is_free(self, points: np.ndarray) -> bool:
        """Return True when every point (pixel xy) is inside the raster and not blocked."""
        xi = np.floor(points[:, 0]).astype(int)
        yi = np.floor(points[:, 1]).astype(int)
        if np.any((xi < 0) | (yi < 0) | (xi >= self.size) | (yi >= self.size)):
            return False
        return not np.any(self.blocked[yi, xi])

    def fill(self, poly: np.ndarray, label: int, tone: int = 0, height: int = 0,
             aspect: int = FLAT) -> None:
        pts = [np.round(poly * ONE).astype(np.int32)]
        cv2.fillPoly(self.labels, pts, int(label), cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.tone, pts, int(tone), cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.height, pts, int(height), cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.aspect, pts, int(aspect), cv2.LINE_8, SHIFT)

    def disc(self, x: float, y: float, radius_px: float, label: int, tone: int,
             height: int) -> None:
        centre = (int(round(x * ONE)), int(round(y * ONE)))
        r = max(1, int(round(radius_px * ONE)))
        cv2.circle(self.labels, centre, r, int(label), -1, cv2.LINE_8, SHIFT)
        cv2.circle(self.tone, centre, r, int(tone), -1, cv2.LINE_8, SHIFT)
        cv2.circle(self.height, centre, r, int(height), -1, cv2.LINE_8, SHIFT)
        cv2.circle(self.aspect, centre, r, FLAT, -1, cv2.LINE_8, SHIFT)

    def tree(self, rng: np.random.Generator, x: float, y: float, radius_m: float,
             allowed: tuple[int, ...]) -> None:
        """Draw a single tree crown, only where the ground is one of ``allowed`` classes."""
        xi, yi = int(x), int(y)
        if not self.inside(x, y) or self.labels[yi, xi] not in allowed or self.blocked[yi, xi]:
            return
        self.disc(x, y, radius_m * self.s, TREE, int(rng.integers(0, 256)),
                  int(rng.integers(7, 19)))


def azimuth_code(dx: float, dy: float) -> int:
    """Compass azimuth (clockwise from north) of a pixel-space direction, coded 0..254."""
    azimuth = math.degrees(math.atan2(dx, -dy)) % 360.0
    return int(azimuth * 254 / 360) % 255


@dataclass(frozen=True)
class Frame:
    """Rotated coordinates: pixel = origin + (u * U + v * V) * px_per_m, U/V unit vectors."""

    ox: float
    oy: float
    theta: float
    s: float

    @property
    def U(self) -> np.ndarray:
        return np.array([math.cos(self.theta), math.sin(self.theta)])

    @property
    def V(self) -> np.ndarray:
        return np.array([-math.sin(self.theta), math.cos(self.theta)])

    def px(self, uv: np.ndarray) -> np.ndarray:
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        return (np.array([self.ox, self.oy]) + (uv[:, :1] * self.U + uv[:, 1:] * self.V)
                * self.s)

    def rect(self, u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
        return self.px([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])

    def uv(self, x: float, y: float) -> tuple[float, float]:
        d = (np.array([x, y]) - np.array([self.ox, self.oy])) / self.s
        return float(d @ self.U), float(d @ self.V)


def building(layers: Layers, frame: Frame, u0: float, v0: float, u1: float, v1: float,
             height_m: float, tone: int, roof: str = "flat") -> bool:
    """
    Draw a building footprint with a roof of type flat, gable_u, gable_v or hip.

    Returns False (and draws nothing) if any part would stand on blocked ground.
    """
    corners = frame.rect(u0, v0, u1, v1)
    um, vm = (u0 + u1) / 2, (v0 + v1) / 2
    if not layers.is_free(np.vstack([corners, frame.px([[um, vm]])])):
        return False
    h = int(np.clip(round(height_m), 2, 250))
    U, V = frame.U, frame.V
    if roof == "flat":
        layers.fill(corners, BUILDING, tone, h, FLAT)
        return True
    if roof == "gable_v" or (roof == "hip" and (u1 - u0) < (v1 - v0)):
        # ridge runs along v: the two facets face -U and +U
        halves = [frame.rect(u0, v0, um, v1), frame.rect(um, v0, u1, v1)]
        normals = [-U, U]
        ends = [(frame.rect(u0, v0, u1, v0), -V), (frame.rect(u0, v1, u1, v1), V)]
    else:
        halves = [frame.rect(u0, v0, u1, vm), frame.rect(u0, vm, u1, v1)]
        normals = [-V, V]
        ends = [(frame.rect(u0, v0, u0, v1), -U), (frame.rect(u1, v0, u1, v1), U)]
    for poly, normal in zip(halves, normals):
        layers.fill(poly, BUILDING, tone, h, azimuth_code(*normal))
    if roof == "hip":
        depth = min(u1 - u0, v1 - v0) / 2
        for edge, normal in ends:
            # triangle from the short edge to the ridge end: the hip facet
            a, b = edge[0], edge[2]
            tip = (a + b) / 2 - normal * depth * frame.s
            layers.fill(np.array([a, b, tip]), BUILDING, tone, h, azimuth_code(*normal))
    return True


def parking_lot(layers: Layers, frame: Frame, u0: float, v0: float, u1: float,
                v1: float) -> None:
    """Asphalt with painted stalls (double rows along u, aisles between); records car slots."""
    corners = frame.rect(u0, v0, u1, v1)
    if not layers.is_free(corners):
        return
    layers.fill(corners, PARKING, 0, 0)
    stall_w, stall_d, aisle = 2.6, 5.0, 6.5
    v = v0 + aisle / 2
    while v + 2 * stall_d <= v1:
        for row_v in (v, v + stall_d):
            u = u0 + 1.0
            while u + stall_w <= u1 - 1.0:
                line = frame.px([[u, row_v], [u, row_v + stall_d]])
                _line(layers, line, MARKING)
                centre = frame.px([[u + stall_w / 2, row_v + stall_d / 2]])[0]
                layers.car_slots.append((float(centre[0]), float(centre[1]),
                                         frame.theta + math.pi / 2))
                u += stall_w
        v += 2 * stall_d + aisle


def _line(layers: Layers, pts: np.ndarray, label: int, thickness: int = 1) -> None:
    p = np.round(pts * ONE).astype(np.int32)
    cv2.line(layers.labels, tuple(p[0]), tuple(p[1]), int(label), thickness, cv2.LINE_8, SHIFT)


def thick_polyline(canvas: np.ndarray, pts: np.ndarray, value: int, width_px: float) -> None:
    """Polyline with round joins (cv2 thick lines have round caps) of a given width."""
    p = np.round(pts * ONE).astype(np.int32)
    t = max(1, int(round(width_px)))
    for a, b in zip(p[:-1], p[1:]):
        cv2.line(canvas, tuple(a), tuple(b), int(value), t, cv2.LINE_8, SHIFT)


def dashed_polyline(layers: Layers, pts: np.ndarray, dash_px: float, gap_px: float) -> None:
    """White dashes along a polyline (lane markings)."""
    seg = np.diff(pts, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    pos = 0.0
    while pos + dash_px < cum[-1]:
        a = _along(pts, cum, pos)
        b = _along(pts, cum, pos + dash_px)
        _line(layers, np.array([a, b]), MARKING)
        pos += dash_px + gap_px


def _along(pts: np.ndarray, cum: np.ndarray, dist: float) -> np.ndarray:
    i = int(np.clip(np.searchsorted(cum, dist) - 1, 0, len(pts) - 2))
    span = max(cum[i + 1] - cum[i], 1e-9)
    t = (dist - cum[i]) / span
    return pts[i] * (1 - t) + pts[i + 1] * t
