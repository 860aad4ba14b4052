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
The prior-seeded zoom: which cells the temporal filter's prior supports for the next frame.

The zoom (:class:`~jzi_ros.inference.decode.BeamSearch` with ``seeds``) then also follows those
cells, so a wrong first step is no longer fatal once the filter is confident (docs/fusion.md).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from jzi_ros.inference.decode import Seeds
from jzi_ros.inference.measurement import terminal_indices_local


SEED_COUNT = 9  # the prior's heaviest cell and its 8 neighbours: fixed, so graphs keep shapes


def seed_level(tree: Any, fix_sigma_m: float) -> int:
    """Return the level seeds sit at: the finest below the terminal one with cells >= sigma."""
    level = 1
    while level + 1 < tree.depth and tree.cell_side(level + 1) >= fix_sigma_m:
        level += 1
    return level


def seed_cells(cell_filter: Any, stamp_ns: int, displacement_en: np.ndarray | None = None,
               min_mass: float | None = None) -> Seeds | None:
    """
    Return the cells the prior supports, to seed the zoom of the frame at ``stamp_ns``.

    The prior is the particle cloud moved to ``stamp_ns`` without noise (by the odometry
    displacement, else by each particle's own velocity); the level is the finest whose
    cells are at least ``fix_sigma_m`` wide (the filter's "confident" spread), below the
    terminal level. The seeds are the prior's heaviest cell at that level and its 8
    neighbours (off-map slots -1), heaviest first. None (no seeding) before the filter has
    started, when this frame will restart it (stamp going back, a gap over
    ``max_gap_s``), or while those 9 cells hold less than ``min_mass`` of the belief
    (default ``fix_mode_mass``: as confident as a FIX needs; 0.5 seeded more often and
    made the random-walk filter lock onto wrong cells on the demo flight, docs/fusion.md).
    Reads the filter's state, never changes it (no random draws either).
    """
    tree = cell_filter.tree
    if not cell_filter.initialised or tree.depth < 2 or not len(cell_filter.particles):
        return None
    dt = (int(stamp_ns) - cell_filter.last_stamp_ns) / 1e9
    if dt < 0 or dt > cell_filter.config.max_gap_s:
        return None
    level = seed_level(tree, cell_filter.config.fix_sigma_m)
    step = (cell_filter.velocity * dt if displacement_en is None
            else np.asarray(displacement_en, np.float64).reshape(1, 2))
    points = np.clip(cell_filter.particles + step, -cell_filter.half, cell_filter.half)
    n = tree.grid ** level
    side = tree.size_m / n
    col = np.clip(((points[:, 0] + cell_filter.half) / side).astype(np.int64), 0, n - 1)
    row = np.clip(((cell_filter.half - points[:, 1]) / side).astype(np.int64), 0, n - 1)
    mass = np.bincount(row * n + col, weights=cell_filter.weights, minlength=n * n).reshape(n, n)
    top_row, top_col = np.unravel_index(int(np.argmax(mass)), mass.shape)
    rows, cols = np.meshgrid(np.arange(top_row - 1, top_row + 2),
                             np.arange(top_col - 1, top_col + 2), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    inside = (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
    rows, cols = rows[inside], cols[inside]
    block = mass[rows, cols]
    if block.sum() < (cell_filter.config.fix_mode_mass if min_mass is None else min_mass) * (
            mass.sum()):
        return None
    # the level index of a cell: the terminal index of its centre, without the finer digits
    east = -cell_filter.half + (cols + 0.5) * side
    north = cell_filter.half - (rows + 0.5) * side
    index = terminal_indices_local(tree, east, north) // tree.num_actions ** (
        tree.depth - level)
    cells = np.full(SEED_COUNT, -1, np.int64)
    cells[:len(index)] = index[np.argsort(-block, kind="stable")]
    return Seeds(level, cells)
