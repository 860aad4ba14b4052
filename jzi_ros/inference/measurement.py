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
One frame's zoom as a likelihood over the map's root square (the temporal filter's measurement).

At every step the zoom gives the 16 child probabilities of each beam prefix: a
piecewise-constant density over the root in which every child that was not expanded carries
its path probability spread uniformly over its cell and every expanded prefix hands its mass on
to its children (jzi_ros.inference.fusion explains how the filter tempers and uses it). Kept
apart from the filter: the cell arithmetic and the density are what a measurement is, the
particles are what the filter does with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from jzi_ros.geo import CellTree
from jzi_ros.inference.decode import BeamSteps, PAD_LOG_PROB


def terminal_indices_local(tree: CellTree, east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """
    Index among the terminal cells (view-table order) of the cells holding points.

    Points outside the root are clipped to its edge. The index of the level-l cell holding a
    point is this one floor-divided by ``K**(D - l)`` (actions are base-K digits, most
    significant first).
    """
    n = tree.grid ** tree.depth
    half = tree.size_m / 2
    col = ((np.asarray(east, np.float64) + half) * (n / tree.size_m)).astype(np.int64)
    row = ((half - np.asarray(north, np.float64)) * (n / tree.size_m)).astype(np.int64)
    np.clip(col, 0, n - 1, out=col)
    np.clip(row, 0, n - 1, out=row)
    index = np.zeros_like(col)
    for digit in range(tree.depth - 1, -1, -1):  # most significant action first
        scale = tree.grid ** digit
        action = (row // scale % tree.grid) * tree.grid + col // scale % tree.grid
        index = index * tree.num_actions + action
    return index


def cell_origin_local(tree: CellTree, levels: np.ndarray, indices: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(west, north, side) metres of cells given by level and index within the level."""
    levels = np.asarray(levels, np.int64)
    indices = np.asarray(indices, np.int64).copy()
    row = np.zeros_like(indices)
    col = np.zeros_like(indices)
    for digit in range(int(levels.max(initial=0))):
        active = digit < levels
        action = indices % tree.num_actions
        scale = tree.grid ** digit
        row = np.where(active, row + (action // tree.grid) * scale, row)
        col = np.where(active, col + (action % tree.grid) * scale, col)
        indices = np.where(active, indices // tree.num_actions, indices)
    side = tree.size_m / tree.grid ** levels.astype(np.float64)
    return -tree.size_m / 2 + col * side, tree.size_m / 2 - row * side, side


@dataclass(frozen=True)
class Measurement:
    """
    One frame's likelihood over the root square, piecewise constant.

    Disjoint cells (``levels`` 1..D, ``indices`` within the level) carry ``mass``; ``background``
    is mass spread uniformly over the whole root. ``mass.sum() + background == 1``.
    """

    levels: np.ndarray
    indices: np.ndarray
    mass: np.ndarray
    background: float = 0.0

    @classmethod
    def from_steps(cls, tree: CellTree, steps: BeamSteps) -> "Measurement":
        """Every step's children of every beam prefix; expanded children hand their mass on."""
        k, depth = tree.num_actions, tree.depth
        valid = steps.prefix_lp > PAD_LOG_PROB / 2
        # the beam's distinct prefixes at levels 1..D-1 (first occurrence of each)
        rows: list[np.ndarray] = []
        for t in range(1, depth):
            index = steps.prefix_index[t - 1]
            first = np.flatnonzero(valid[t - 1])
            _, unique = np.unique(index[first], return_index=True)
            rows.append(first[np.sort(unique)])
        expanded = [np.zeros(0, np.int64)] + [steps.prefix_index[t - 1][rows[t - 1]]
                                              for t in range(1, depth)] + [np.zeros(0, np.int64)]
        root = np.arange(k)
        keep = ~np.isin(root, expanded[1])
        levels, indices, log_mass = [np.ones(int(keep.sum()), np.int64)], [root[keep]], [
            steps.root_lp[keep]]
        for t in range(1, depth):
            beams = rows[t - 1]
            children = (steps.prefix_index[t - 1][beams][:, None] * k + root[None]).ravel()
            lp = (steps.prefix_lp[t - 1][beams][:, None] + steps.step_lp[t - 1][beams]).ravel()
            keep = ~np.isin(children, expanded[t + 1])
            levels.append(np.full(int(keep.sum()), t + 1, np.int64))
            indices.append(children[keep])
            log_mass.append(lp[keep])
        log_mass_all = np.concatenate(log_mass).astype(np.float64)
        mass = np.exp(log_mass_all - log_mass_all.max())
        return cls(np.concatenate(levels), np.concatenate(indices).astype(np.int64),
                   mass / mass.sum(), 0.0)

    @classmethod
    def from_beam(cls, tree: CellTree, paths: np.ndarray, log_probs: np.ndarray
                  ) -> "Measurement":
        """Only the final beam: its terminal cells, the rest of the mass uniform."""
        paths = np.asarray(paths, np.int64).reshape(-1, tree.depth)
        mass = np.exp(np.clip(np.asarray(log_probs, np.float64).reshape(-1), -700, 0))
        valid = np.asarray(log_probs).reshape(-1) > PAD_LOG_PROB / 2
        paths, mass = paths[valid], mass[valid]
        index = np.zeros(len(paths), np.int64)
        for step in range(tree.depth):
            index = index * tree.num_actions + paths[:, step]
        index, first = np.unique(index, return_index=True)
        mass = mass[first]
        if mass.sum() > 1.0:
            mass = mass / mass.sum()
        return cls(np.full(len(index), tree.depth, np.int64), index, mass,
                   float(max(0.0, 1.0 - mass.sum())))

    @cached_property
    def _tables(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Per level: sorted cell indices and their masses, for fast lookups."""
        tables = []
        for level in np.unique(self.levels):
            select = self.levels == level
            order = np.argsort(self.indices[select])
            tables.append((int(level), self.indices[select][order],
                           self.mass[select][order]))
        return tables

    def densities(self, tree: CellTree, east: np.ndarray, north: np.ndarray) -> np.ndarray:
        """Density (per m^2, integrating to 1 over the root) at points."""
        out = np.full(np.shape(east), self.background / tree.size_m ** 2, np.float64)
        terminal = terminal_indices_local(tree, east, north)
        for level, keys, mass in self._tables:
            at = terminal // tree.num_actions ** (tree.depth - level)
            pos = np.searchsorted(keys, at)
            np.minimum(pos, len(keys) - 1, out=pos)
            hit = keys[pos] == at
            out[hit] += mass[pos[hit]] / tree.cell_side(level) ** 2
        return out
