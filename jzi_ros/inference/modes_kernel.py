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
The filter's modes compiled with Numba: cell moments, seeds, clusters, the estimate's spread.

:class:`~jzi_ros.inference.modes.ModeFinder` (numpy) is the reference; these loops do its
floating-point operations in its order (docs/fusion.md "Filter cost" says where sums differ in
the last bits: numpy hands some to BLAS). Split from :mod:`jzi_ros.inference.fusion_kernel`,
which calls them from its per-frame step and re-exports them.
"""
from __future__ import annotations

import math

import numpy as np

from jzi_ros.inference.numba_numpy import jit


@jit
def cell_moments(state: np.ndarray, weights: np.ndarray, keys: np.ndarray, acc: np.ndarray,
                 flags: np.ndarray, sums: np.ndarray, minus_mass: np.ndarray) -> int:
    """
    Weighted moments of the occupied coarse cells (ModeFinder's ``sums``): how many.

    Fills ``sums[:occupied]`` (cells in index order: mass, sum of w x, w y, w x x, w x y,
    w y y) and ``minus_mass[:occupied]``. ``acc`` ``[cells, 6]`` and ``flags`` ``[cells]``:
    zeroed scratch, left zeroed.
    """
    for j in range(weights.shape[0]):
        key, w = keys[j], weights[j]
        x, y = state[0, j], state[1, j]
        wx, wy = x * w, y * w
        acc[key, 0] += w
        acc[key, 1] += wx
        acc[key, 2] += wy
        acc[key, 3] += wx * x
        acc[key, 4] += wx * y
        acc[key, 5] += wy * y
        flags[key] = 1
    k = 0
    for c in range(flags.shape[0]):
        if flags[c]:
            flags[c] = 0
            if acc[c, 0] > 0:  # (numpy: mass > 0; a weight of 0 occupies nothing)
                for row in range(6):
                    sums[k, row] = acc[c, row]
                minus_mass[k] = -acc[c, 0]
                k += 1
            acc[c] = 0.0
    return k


@jit
def heaviest(minus_mass: np.ndarray, count: int, order: np.ndarray) -> int:
    """
    Put the ``count`` heaviest cells in ``order``, heaviest first: how many (-1: a tie).

    What ``np.argsort(minus_mass)[:count]`` gives whenever no two neighbours in it have the
    same mass (the caller then orders them with numpy's argsort, as the numpy path does; the
    last may tie with an unselected cell: the caller uses all but the last). A selection by
    insertion: a few comparisons per cell, not a sort of all the occupied cells.
    """
    filled = 0
    for c in range(minus_mass.shape[0]):
        value = minus_mass[c]
        if filled == count and value >= minus_mass[order[filled - 1]]:
            continue
        i = filled if filled < count else count - 1
        while i > 0 and minus_mass[order[i - 1]] > value:
            order[i] = order[i - 1]
            i -= 1
        order[i] = c
        if filled < count:
            filled += 1
    for i in range(filled - 1):
        if minus_mass[order[i]] == minus_mass[order[i + 1]]:
            return -1
    return filled


@jit
def _within(dx: float, dy: float, radius: float) -> bool:
    """``hypot(dx, dy) <= radius``, the square root only where the squares are too close."""
    squared, limit = dx * dx + dy * dy, radius * radius
    if squared < limit * (1 - 1e-9):
        return True
    if squared > limit * (1 + 1e-9):
        return False
    return math.hypot(dx, dy) <= radius


@jit
def cluster(sums: np.ndarray, occupied: int, order: np.ndarray, radius: float,
            seed_cells: int, moments: np.ndarray) -> int:
    """
    Fill the modes' moments ``moments[:modes]`` (ModeFinder's seeds, two rounds): how many.

    ``sums[:occupied]``: :func:`cell_moments`; ``order``: the cells heaviest first (numpy's
    argsort of minus the mass, so that ties fall as in the numpy path); at most
    ``len(moments)`` modes.
    """
    max_modes = moments.shape[0]
    cx, cy = np.empty(occupied), np.empty(occupied)
    for c in range(occupied):  # numpy's complex division: x * (1 / mass)
        inv = 1.0 / sums[c, 0]
        cx[c], cy[c] = sums[c, 1] * inv, sums[c, 2] * inv
    count = min(seed_cells, occupied)
    candidates = order[:count]
    chosen = np.empty(max_modes, np.intp)
    chosen[0], modes = 0, 1
    left = np.empty(count, np.bool_)
    cf = candidates[0]
    for a in range(count):
        ca = candidates[a]
        left[a] = not _within(cx[ca] - cx[cf], cy[ca] - cy[cf], radius)
    while modes < max_modes:
        first = -1
        for a in range(count):
            if left[a]:
                first = a
                break
        if first < 0:
            break
        chosen[modes] = first
        modes += 1
        cf = candidates[first]
        for a in range(count):
            if left[a]:
                ca = candidates[a]
                left[a] = not _within(cx[ca] - cx[cf], cy[ca] - cy[cf], radius)
    sx, sy = np.empty(modes), np.empty(modes)
    for i in range(modes):
        c = candidates[chosen[i]]
        sx[i], sy[i] = cx[c], cy[c]
    for again in range(2):
        moments[:modes] = 0.0
        for c in range(occupied):  # a cell joins the first (heaviest) seed it is near
            for i in range(modes):
                if _within(cx[c] - sx[i], cy[c] - sy[i], radius):
                    for row in range(6):
                        moments[i, row] += sums[c, row]
                    break
        if again == 0:
            for i in range(modes):
                inv = 1.0 / moments[i, 0]
                sx[i], sy[i] = moments[i, 1] * inv, moments[i, 2] * inv
    return modes


@jit
def summarise(moments: np.ndarray, found: int, min_mass: float, masses: np.ndarray,
              means: np.ndarray, covs: np.ndarray, spread: np.ndarray) -> tuple[int, float]:
    """
    Make the modes of their moments and the estimate's spread (as ModeFinder, _estimate).

    Fills ``masses``, ``means`` ``[., 2]``, ``covs`` ``[., 2, 2]`` heaviest first (the tail
    under ``min_mass`` left out, the heaviest always kept; a stable sort) and ``spread``: the
    modes' second moment about the heaviest's mean. Returns the number of modes and the
    spread's major-axis sigma.
    """
    count = 0
    for i in range(found):
        total = moments[i, 0]
        if total <= 0 or (total < min_mass and count > 0):
            continue  # the diffuse tail (or a seed its heavier neighbours took over)
        se, sn = moments[i, 1] / total, moments[i, 2] / total
        xx = moments[i, 3] / total - se * se
        xy = moments[i, 4] / total - se * sn
        yy = moments[i, 5] / total - sn * sn
        j = count  # insertion, after every mode at least as heavy (Python's stable sort)
        while j > 0 and masses[j - 1] < total:
            masses[j], means[j], covs[j] = masses[j - 1], means[j - 1], covs[j - 1]
            j -= 1
        masses[j], means[j, 0], means[j, 1] = total, se, sn
        covs[j, 0, 0], covs[j, 0, 1], covs[j, 1, 0], covs[j, 1, 1] = xx, xy, xy, yy
        count += 1
    a = b = c = total = 0.0
    east, north = means[0, 0], means[0, 1]
    for i in range(count):
        de, dn = means[i, 0] - east, means[i, 1] - north
        a += masses[i] * (covs[i, 0, 0] + de * de)
        b += masses[i] * (covs[i, 0, 1] + de * dn)
        c += masses[i] * (covs[i, 1, 1] + dn * dn)
        total += masses[i]
    a, b, c = a / total, b / total, c / total
    spread[0, 0], spread[0, 1], spread[1, 0], spread[1, 1] = a, b, b, c
    return count, math.sqrt(max(0.0, 0.5 * (a + c) + math.hypot(0.5 * (a - c), b)))
