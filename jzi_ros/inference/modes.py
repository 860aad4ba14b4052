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
The filter's belief as modes: clusters of particle mass, and what the filter reports.

A mode is the particles within ``mode_radius_m`` of a density peak; the heaviest gives the
published position, the others widen its covariance and are the fix's hypotheses. Found from
the coarse cells' weighted moments in a fixed number of numpy calls (:class:`ModeFinder`).
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

import numpy as np

from jzi_ros.inference.fix import Hypothesis

MIN_MODE_MASS = 0.05  # lighter clusters are not reported as modes
MAX_MODES = 8
SEED_CELLS = 64  # modes are seeded among this many heaviest coarse cells
# rows [w x, w x, w y] times state rows [x, y, y]: the second moments
_WXY, _XYY = [0, 0, 1], [0, 1, 1]
_EAST_NORTH = np.array([1.0, 1.0j])  # (east, north) @ it: east + i north
_MODE_ROWS = np.arange(MAX_MODES)[:, None]
# the compiled modes' summary in one buffer: masses [M], means [M, 2], covariances [M, 2, 2],
# the spread [2, 2] (fusion_kernel.summarise's outputs)
SUMMARY_SIZE = MAX_MODES * 7 + 4


@dataclass(frozen=True)
class Mode:
    """One cluster of the belief: its share, mean and covariance (East/North metres)."""

    mass: float
    mean_en: np.ndarray
    cov_en: np.ndarray


@dataclass(frozen=True)
class FilterEstimate:
    """What the filter believes after a frame."""

    converged: bool
    modes: tuple[Mode, ...]  # heaviest first
    mean_en: np.ndarray  # the published position: the heaviest mode's mean
    cov_en: np.ndarray  # the modes' second moment about it
    event: str = ""  # "init", "reset: ...", "kidnap" on the frame that restarted the filter
    llr_cusum: float = 0.0
    odometry: bool = False  # the last prediction moved the particles by odometry
    # the last frame brought a refined fix (PointMeasurement) within mode_radius_m of mean_en
    refined: bool = False

    @property
    def spread_m(self) -> float:
        """Largest distance between two reported modes (0 for one mode)."""
        centers = np.array([m.mean_en for m in self.modes]).reshape(-1, 2)
        if len(centers) < 2:
            return 0.0
        return float(np.hypot(*(centers[:, None] - centers[None]).transpose(2, 0, 1)).max())


class ModeFinder:
    """Modes of a weighted particle state over ``cells`` coarse cells (``radius`` metres)."""

    def __init__(self, cells: int, radius_m: float, kernel: Any = None) -> None:
        self.cells = int(cells)
        self.radius = float(radius_m)
        self.cell_index = np.arange(self.cells)
        self.kernel = kernel  # jzi_ros.inference.fusion_kernel, or None: numpy
        # the kernel's buffers: per cell moments and "occupied" flags (zeroed scratch), the
        # occupied cells' moments and minus their mass, the modes' moments
        self.scratch = () if kernel is None else (
            np.zeros((self.cells, 6)), np.zeros(self.cells, np.uint8),
            np.zeros((self.cells, 6)), np.zeros(self.cells))
        self.moments = np.zeros((MAX_MODES, 6))

    def __call__(self, state: np.ndarray, weights: np.ndarray, keys: np.ndarray
                 ) -> tuple[Mode, ...]:
        """
        Cluster the coarse cells' weighted moments into modes, all modes at once.

        Seeds: among the ``SEED_CELLS`` heaviest coarse cells, heaviest first, each cell not
        within ``mode_radius_m`` of an earlier seed (a 64 x 64 table, two calls a seed). Then
        twice: every occupied cell joins the first (heaviest) seed within the radius of its
        centre of mass, and each seed moves to its members' mean. A fixed number of numpy
        calls whatever the number of modes (the greedy one-mode-at-a-time loop this replaced
        cost ten calls per mode). Modes under ``MIN_MODE_MASS`` are the diffuse tail (the
        heaviest is always kept). With ``kernel``, the same in compiled calls
        (:meth:`summary`) around numpy's argsort (so that ties are ordered alike).
        """
        if self.kernel is not None and state.flags.c_contiguous:
            return self.summary(self.kernel.cell_moments(state, weights, keys,
                                                         *self.scratch))[0]
        radius, w, cells = self.radius, weights, self.cells
        weighted = state[:2] * w  # w x, w y
        second = weighted.take(_WXY, axis=0)
        second *= state.take(_XYY, axis=0)  # w x x, w x y, w y y
        mass = np.bincount(keys, w, cells)
        occupied = self.cell_index.compress(mass > 0)  # (np.flatnonzero: 3x slower)
        sums = np.stack([mass.take(occupied)] + [  # [6, occupied cells]
            np.bincount(keys, v, cells).take(occupied) for v in (*weighted, *second)])
        # positions as complex numbers east + i north: a distance is one abs()
        centre = sums[1:3].T @ _EAST_NORTH / sums[0]
        seeds = centre.take((-sums[0]).argsort()[:SEED_CELLS])  # heaviest first
        free = np.abs(seeds[:, None] - seeds) > radius  # [candidate, candidate]: far apart
        chosen, left = [0], free[0].copy()  # the heaviest cell seeds the first mode
        while len(chosen) < MAX_MODES:
            first = int(left.argmax())  # the heaviest candidate far from every seed so far
            if not left[first]:
                break
            chosen.append(first)
            left &= free[first]
        seeds = seeds.take(chosen)
        for again in (True, False):  # members around the seeds, then around their mean
            near = np.abs(centre - seeds[:, None]) <= radius  # [modes, cells]
            member = near & (near.argmax(axis=0) == _MODE_ROWS[:len(near)])  # a cell
            # joins the first (heaviest) seed it is near
            moments = member @ sums.T  # [modes, 6]
            if again:  # (each seed's own cell is its member here: no empty mode)
                seeds = moments[:, 1:3] @ _EAST_NORTH / moments[:, 0]
        modes = []
        for total, se, sn, xx, xy, yy in moments.tolist():
            if total <= 0 or (total < MIN_MODE_MASS and modes):
                continue  # the diffuse tail (or a seed its heavier neighbours took over)
            se, sn = se / total, sn / total
            xx, xy, yy = xx / total - se * se, xy / total - se * sn, yy / total - sn * sn
            modes.append(Mode(total, np.array([se, sn]), np.array([[xx, xy], [xy, yy]])))
        modes.sort(key=lambda mode: -mode.mass)
        return tuple(modes)

    def summary(self, occupied: int, found: int = -1
                ) -> tuple[tuple[Mode, ...], np.ndarray, float]:
        """
        Return the kernel's modes, their spread about the heaviest and its major-axis sigma.

        From the ``occupied`` cell moments in ``scratch`` (``found``: the modes the kernel
        already put in ``moments``, -1: none yet); the spread is the filter's estimate
        covariance (``fusion_kernel.summarise``).
        """
        if found < 0:
            sums, minus_mass = self.scratch[2:]
            found = self.kernel.cluster(sums, occupied, minus_mass[:occupied].argsort(),
                                        self.radius, SEED_CELLS, self.moments)
        summary = np.empty(SUMMARY_SIZE)
        count, sigma = self.kernel.summarise(self.moments, found, MIN_MODE_MASS,
                                             *summary_views(summary))
        return self.modes_of(summary, count) + (sigma,)

    @staticmethod
    def modes_of(summary: np.ndarray, count: int) -> tuple[tuple[Mode, ...], np.ndarray]:
        """Return the ``count`` modes and the spread in a summary buffer (views of it)."""
        _, means, covs, spread = summary_views(summary)
        return tuple(Mode(mass, means[i], covs[i])
                     for i, mass in enumerate(summary[:count].tolist())), spread


def summary_views(summary: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return the masses, means, covariances and spread in a ``SUMMARY_SIZE`` buffer."""
    m = MAX_MODES
    return (summary[:m], summary[m:3 * m].reshape(m, 2), summary[3 * m:7 * m].reshape(m, 2, 2),
            summary[7 * m:].reshape(2, 2))


def mode_hypotheses(tree, to_terminal: tuple, modes: tuple[Mode, ...]) -> tuple[Hypothesis, ...]:
    """
    Return the modes as a fix's hypotheses: each mode's terminal cell, mass, centre, lat/lon.

    ``to_terminal``: ``CellFilter._to_terminal`` (scale, offset, last index and the code
    tables of ``terminal_indices_en``, computed here in Python floats for these few points,
    clipped to the root as ``path_of_local``'s edges). One projection call for all modes.
    """
    east_north = [m.mean_en.tolist() for m in modes]
    if len(east_north) == 1:  # (floats: a third of the time of a one-point list)
        lat, lon = tree.to_latlon(*east_north[0])
        lats, lons = [lat], [lon]
    else:
        lats, lons = tree.to_latlon(*map(list, zip(*east_north)))
    s0, s1, o0, o1, last, row_code, col_code = to_terminal
    terminal = [int(row_code[max(min(int(n * s1 + o1), last), 0)]
                    + col_code[max(min(int(e * s0 + o0), last), 0)])
                for e, n in east_north]
    return tuple(
        Hypothesis(tree._path_from_level_index(t, tree.depth), m.mass,
                   math.log(max(m.mass, 1e-300)), e, n, la, lo)
        for m, t, (e, n), la, lo in zip(modes, terminal, east_north, lats, lons))
