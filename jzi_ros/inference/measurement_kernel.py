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
``Measurement.from_steps`` compiled with Numba: the zoom's beam steps -> the sorted runs.

Three calls instead of about 35 numpy ones per frame, the same numbers (bit-identical: the
keys, sort and pairwise normalisation are numpy's; ``exp`` stays in numpy, between the two
kernels; the sort is Numba's, or numpy's argsort when two pieces have the same key, where
sorts may order them differently). Used by :mod:`jzi_ros.inference.measurement` once a
filter has loaded the kernels (:func:`jzi_ros.inference.fusion_kernel.load` compiles these
too).
"""
from __future__ import annotations

import numpy as np

from jzi_ros.inference.numba_numpy import jit, pairwise_sum


@jit
def steps_keys(root_lp: np.ndarray, prefix_index: np.ndarray, prefix_lp: np.ndarray,
               step_lp: np.ndarray, key_span: np.ndarray, level: np.ndarray, pad: float,
               ints: np.ndarray, reals: np.ndarray) -> int:
    """
    Measurement.from_steps's sort keys and log masses of the valid beams' pieces: how many.

    Pieces: the root's K children, then each step's valid prefixes' K children; key
    (``ints[0]``): the piece's first terminal cell times ``D + 1`` plus its level
    (``key_span``, ``level``: the template of a full BeamSteps); log mass: ``reals[0]``. A
    prefix at or below ``pad`` is a padding beam. ``ints`` ``[5, .]``, ``reals`` ``[3, .]``:
    room for every piece of a full BeamSteps (:func:`steps_measurement` fills the rest).
    """
    k = root_lp.shape[0]
    steps, beams = prefix_lp.shape
    keys, log_mass = ints[0], reals[0]
    for a in range(k):
        keys[a] = a * key_span[a] + level[a]
        log_mass[a] = root_lp[a]
    j = k
    for s in range(steps):
        for b in range(beams):
            if prefix_lp[s, b] > pad:
                for a in range(k):
                    piece = k + (s * beams + b) * k + a
                    keys[j] = (np.int64(prefix_index[s, b]) * k + a) * key_span[piece] \
                        + level[piece]
                    log_mass[j] = prefix_lp[s, b] + step_lp[s, b, a]  # (in their precision)
                    j += 1
    return j


@jit
def steps_measurement(ints: np.ndarray, reals: np.ndarray, order: np.ndarray, depth: int,
                      level_spans: np.ndarray, area: float) -> int:
    """
    Measurement.from_steps's partition and leaves from :func:`steps_keys`: how many leaves.

    ``reals[0]``: the pieces' masses (exp'd), ``order``: their keys' sort. A piece followed
    by one with the same start was expanded: its mass goes to 0 (it stays in the partition
    with no cells). Fills the partition's starts and cells (``ints[1]``, ``ints[2]``) and
    densities (``reals[1]``), the leaves' levels, indices (``ints[3]``, ``ints[4]``) and mass
    (``reals[2]``).
    """
    count = order.shape[0]
    keys, mass = ints[0], reals[0]
    starts, cells, leaf_levels, leaf_indices = ints[1], ints[2], ints[3], ints[4]
    density, leaf_mass = reals[1], reals[2]
    levels, sorted_mass = np.empty(count, np.int64), np.empty(count)
    for i in range(count):
        key = keys[order[i]]
        starts[i], levels[i] = key // (depth + 1), key % (depth + 1)
        sorted_mass[i] = mass[order[i]]
    for i in range(count - 1):
        if starts[i + 1] == starts[i]:
            sorted_mass[i] = sorted_mass[i] * 0.0
    norm = pairwise_sum(sorted_mass)
    j = 0
    for i in range(count):
        sorted_mass[i] /= norm
        span = level_spans[levels[i]]
        density[i] = sorted_mass[i] / (np.float64(span) * area)
        if i == count - 1 or starts[i + 1] != starts[i]:
            cells[i] = span
            leaf_levels[j], leaf_indices[j] = levels[i], starts[i] // span
            leaf_mass[j] = sorted_mass[i]
            j += 1
        else:
            cells[i] = 0
    return j


@jit
def steps_measurement_sorted(ints: np.ndarray, reals: np.ndarray, count: int, depth: int,
                             level_spans: np.ndarray, area: float) -> int:
    """
    :func:`steps_measurement` on the first ``count`` keys sorted here: how many leaves.

    -1, with nothing written, when two keys are equal (a repeated beam prefix): their order
    is then numpy's argsort's to give (the caller sorts with it and calls
    :func:`steps_measurement`); distinct keys have one sorted order whatever the sort.
    """
    keys = ints[0, :count]
    order = np.argsort(keys)
    for i in range(count - 1):
        if keys[order[i]] == keys[order[i + 1]]:
            return -1
    return steps_measurement(ints, reals, order, depth, level_spans, area)
