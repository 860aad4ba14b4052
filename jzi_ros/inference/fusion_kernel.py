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
The temporal filter's per-frame step compiled with Numba (optional: ``pip install numba``).

Why: at a few thousand particles the numpy filter's cost is its ~130 calls of a few
microseconds each, not arithmetic. Here one call per frame (:func:`frame`) draws the frame's
random numbers, predicts, draws from the measurement, looks up the likelihoods, runs the
kidnap test, resamples, weights and finds the modes; ``Measurement.from_steps`` is compiled
in :mod:`jzi_ros.inference.measurement_kernel`.

The numpy code in :mod:`jzi_ros.inference.fusion` and :mod:`jzi_ros.inference.modes` stays the
reference (and the fallback without Numba): these loops do the same floating-point operations
in the same order on the same random numbers, so the particles and weights are bit-identical,
numpy's pairwise summation included. The random numbers come from the filter's own numpy
Generator: the kernels call its BitGenerator's C functions with numpy's algorithms on top
(:mod:`jzi_ros.inference.numba_numpy`), so its stream moves exactly as the numpy path's
calls move it. Where numpy hands a sum to BLAS (the
filter's evidence ``weights @ likelihood``, the modes' ``member @ sums``) or uses a SIMD
``hypot`` (the modes' distances), the loops sum in index order and call libm's ``hypot``:
those numbers agree to the last few bits (docs/fusion.md "Filter cost"), not bitwise. Left to
numpy (its SIMD versions differ from libm's): the tempered measurement's ``** exponent``, the
measurement's ``exp``; and its argsort where orders could differ (ties).

Compiled once per machine with ``cache=True`` (Numba writes the cache next to this file, else
in a user cache directory); where neither is writable the functions are compiled without a
cache at each start. :func:`load` compiles or loads them and runs each once, so a node pays it
when the filter is built, not on its first frame.
"""
from __future__ import annotations

import math
import time

import numpy as np

from jzi_ros.inference.measurement_kernel import (steps_keys, steps_measurement,
                                                  steps_measurement_sorted)
from jzi_ros.inference.modes import MAX_MODES, MIN_MODE_MASS, SEED_CELLS
from jzi_ros.inference.modes_kernel import cell_moments, cluster, heaviest, summarise
from jzi_ros.inference.numba_numpy import (generator_handle, integers, jit, next_double,
                                           pairwise_sum)

# generator_handle: fusion.py's handle; steps_*: measurement.py reads them off this module,
# the modes' kernels modes.py and fusion.py
__all__ = ["cell_moments", "cluster", "generator_handle", "load", "load_seconds",
           "steps_keys", "steps_measurement", "steps_measurement_sorted", "summarise"]
_LOAD_SECONDS: float | None = None  # how long load() took, once it has run


@jit
def _predict(state: np.ndarray, bank: np.ndarray, start: int, walk: bool, a: float, b: float,
             c: float, d: float, e: float, half: float) -> None:
    """
    CellFilter.predict on the state ``[4 or 5, n]``, in place, normals from ``bank[:, start:]``.

    Random walk (``walk``; a, b, c, d: accel_sigma x dt, max_speed, max_speed^2, dt): each
    velocity plus noise, scaled back to the speed bound, moves its particle. Odometry (a, b,
    c, d: the noise sigma, the East and North displacement, 1 / dt or 0 to keep velocities;
    with a fifth row, each particle's odometry scale multiplies the displacement and then
    changes by ``e`` times the bank's first row read backwards, bounded to [0.5, 2]).
    One branch-free loop per case (the compiler vectorises them; square roots and divisions
    are correctly rounded either way).
    """
    n = state.shape[1]
    east, north, v_east, v_north = state[0], state[1], state[2], state[3]
    noise_east, noise_north = bank[0, start:start + n], bank[1, start:start + n]
    if walk:
        for j in range(n):
            vx = v_east[j] + noise_east[j] * a
            vy = v_north[j] + noise_north[j] * a
            speed = vx * vx + vy * vy
            speed = c if speed < c else speed
            speed = b / math.sqrt(speed)  # 1 below the speed bound
            vx *= speed
            vy *= speed
            v_east[j] = vx
            v_north[j] = vy
            east[j] = max(min(east[j] + vx * d, half), -half)
            north[j] = max(min(north[j] + vy * d, half), -half)
    elif state.shape[0] == 4:
        for j in range(n):
            se = noise_east[j] * a + b
            sn = noise_north[j] * a + c
            east[j] = max(min(east[j] + se, half), -half)
            north[j] = max(min(north[j] + sn, half), -half)
            if d > 0:
                v_east[j] = se * d
                v_north[j] = sn * d
    else:  # the odometry scale state (CellFilter.predict's numpy twin: the same operations)
        scale = state[4]
        for j in range(n):
            se = noise_east[j] * a + scale[j] * b
            sn = noise_north[j] * a + scale[j] * c
            east[j] = max(min(east[j] + se, half), -half)
            north[j] = max(min(north[j] + sn, half), -half)
            if d > 0:
                v_east[j] = se * d
                v_north[j] = sn * d
            scale[j] = max(min(scale[j] * (1.0 + e * noise_east[n - 1 - j]), 2.0), 0.5)


@jit
def predict(state: np.ndarray, bank: np.ndarray, start: int, walk: bool, a: float, b: float,
            c: float, d: float, e: float, half: float) -> None:
    """Move the particles as CellFilter.predict does (a frame without a measurement)."""
    _predict(state, bank, start, walk, a, b, c, d, e, half)


@jit
def _search_right(sorted_values: np.ndarray, value: float) -> int:
    """``np.searchsorted(sorted_values, value, "right")``: the count of entries <= value."""
    lo, hi = 0, sorted_values.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_values[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@jit
def _terminal(east: float, north: float, geometry: np.ndarray, codes: np.ndarray) -> int:
    """terminal_indices_en of one point inside the root."""
    col = np.intp(east * geometry[2] + geometry[4])
    row = np.intp(north * geometry[3] + geometry[5])
    return codes[0, row] + codes[1, col]


@jit
def advance(state: np.ndarray, weights: np.ndarray, bank: np.ndarray, start: int, walk: bool,
            a: float, b: float, c: float, d: float, e: float, uniforms: np.ndarray,
            disc: np.ndarray,
            disc_start: int, bounds: np.ndarray, cells: np.ndarray, density: np.ndarray,
            cumulative: np.ndarray, high_corner: np.ndarray, low_corner: np.ndarray,
            geometry: np.ndarray, codes: np.ndarray, drawn: np.ndarray,
            likelihood: np.ndarray, coarse: np.ndarray) -> float:
    """
    Predict, draw from the measurement, look up every state's likelihood and coarse cell.

    ``geometry``: terminal cell side (East, North signs), metres -> terminal (col, row) scale
    and offset, the root's half side, max_speed, low_span, coarse_span. ``drawn`` ``[4, m]``
    (a fifth row: odometry scale 1): the states drawn with ``uniforms`` ``[4, m]``
    (CellFilter._draw). ``likelihood`` and
    ``coarse`` ``[n + m]``: the cloud's, then the draws'. Returns the evidence
    ``weights @ likelihood[:n]`` (summed in index order).
    """
    n, m = state.shape[1], uniforms.shape[1]
    half, max_speed = geometry[6], geometry[7]
    low_span, coarse_span = np.intp(geometry[8]), np.intp(geometry[9])
    _predict(state, bank, start, walk, a, b, c, d, e, half)
    total, last = cumulative[cumulative.shape[0] - 1], cumulative.shape[0] - 1
    for j in range(m):
        run = min(_search_right(cumulative, uniforms[0, j] * total), last)
        cell = bounds[run] + np.intp(uniforms[1, j] * np.float64(cells[run]))
        high, low = cell // low_span, cell % low_span  # a cell of the run, a point in it
        drawn[0, j] = (high_corner[0, high] + low_corner[0, low]
                       + uniforms[2, j] * geometry[0])
        drawn[1, j] = (high_corner[1, high] + low_corner[1, low]
                       + uniforms[3, j] * geometry[1])
        drawn[2, j] = disc[0, disc_start + j] * max_speed
        drawn[3, j] = disc[1, disc_start + j] * max_speed
    for row in range(4, drawn.shape[0]):
        for j in range(m):
            drawn[row, j] = 1.0
    evidence = 0.0
    for j in range(n):
        terminal = _terminal(state[0, j], state[1, j], geometry, codes)
        likelihood[j] = density[_search_right(bounds, terminal) - 1]
        coarse[j] = terminal // coarse_span
        evidence += weights[j] * likelihood[j]
    for j in range(m):
        terminal = _terminal(drawn[0, j], drawn[1, j], geometry, codes)
        likelihood[n + j] = density[_search_right(bounds, terminal) - 1]
        coarse[n + j] = terminal // coarse_span
    return evidence


@jit
def frame(state: np.ndarray, weights: np.ndarray, walk: bool, a: float, b: float, c: float,
          d: float, e: float, bounds: np.ndarray, cells: np.ndarray, density: np.ndarray,
          out_state: np.ndarray, out_weights: np.ndarray, out_coarse: np.ndarray,
          summary: np.ndarray, cumulative: np.ndarray, generator: np.ndarray, bank: np.ndarray,
          uniforms: np.ndarray, disc: np.ndarray, high_corner: np.ndarray,
          low_corner: np.ndarray, geometry: np.ndarray, codes: np.ndarray, drawn: np.ndarray,
          likelihood: np.ndarray, coarse: np.ndarray, params: np.ndarray, hist: np.ndarray,
          acc: np.ndarray, flags: np.ndarray, sums: np.ndarray, minus_mass: np.ndarray,
          moments: np.ndarray) -> tuple[float, int, int, int, float]:
    """
    One whole frame of CellFilter.step without a refined fix, drawing from ``generator``.

    The arguments that change from frame to frame first, the filter's fixed buffers from
    ``generator`` on (CompiledStep keeps them in one tuple).

    The draws in numpy's order (the prediction's bank offset, the proposal's ``[4, m]``
    uniforms, the velocities' offset; the resampling's uniform only when there is no kidnap),
    then :func:`advance`, the kidnap test, :func:`update` and the modes (:func:`cluster`)
    when the heaviest cells' order has no tie. ``tempered`` (``[runs]``, numpy's
    ``** likelihood_exponent``) times ``cells`` is summed into ``cumulative`` (its first
    ``runs``). ``params``: terminal cells, likelihood_exponent, the CUSUM so far, reset_nats,
    anywhere_prob, the root's area, the coarse cells' area, proposal_fraction, mode radius.
    Returns the new CUSUM, the occupied coarse cells (-1 on a kidnap: the caller
    re-initialises; nothing else changed but the state's prediction and the draws so far),
    the modes in ``moments`` (-1: a tie, the caller orders the cells as numpy does) and,
    when found, :func:`summarise`'s number of modes and sigma, its outputs in ``summary``
    (modes.SUMMARY_SIZE: masses, means, covariances, spread).
    """
    n, m, runs = state.shape[1], uniforms.shape[1], density.shape[0]
    total = 0.0
    for i in range(runs):  # np.cumsum(tempered * cells)
        total += density[i] * np.float64(cells[i])
        cumulative[i] = total
    cumulative = cumulative[:runs]
    start = integers(generator, bank.shape[1] - n + 1)
    for row in range(4):
        for j in range(m):
            uniforms[row, j] = next_double(generator[1], generator[2])
    disc_start = integers(generator, disc.shape[1] - m + 1)
    z_filter = advance(state, weights, bank, start, walk, a, b, c, d, e, uniforms, disc,
                       disc_start, bounds, cells, density, cumulative, high_corner, low_corner,
                       geometry, codes, drawn, likelihood, coarse)
    z_uniform = cumulative[cumulative.shape[0] - 1] / params[0]
    llr = math.log(z_uniform) - math.log(max(z_filter, 1e-300))
    cusum = max(0.0, params[2] + llr / params[1])
    if cusum > params[3]:
        return cusum, -1, -1, 0, 0.0
    anywhere, area, coarse_area, fraction = params[4], params[5], params[6], params[7]
    occupied = update(state, drawn, coarse, likelihood, weights,
                      next_double(generator[1], generator[2]),
                      (1 - anywhere) / coarse_area, anywhere / area,
                      (1 - fraction) / coarse_area, fraction / (z_uniform * area), hist,
                      out_state, out_weights, out_coarse, acc, flags, sums, minus_mass)
    order = np.empty(SEED_CELLS + 1, np.intp)  # the heaviest cells (and the next: ties)
    if heaviest(minus_mass[:occupied], min(occupied, SEED_CELLS + 1), order) < 0:
        return cusum, occupied, -1, 0, 0.0  # a tie: numpy's argsort orders them
    found = cluster(sums, occupied, order, params[8], SEED_CELLS, moments)
    m = MAX_MODES
    count, sigma = summarise(moments, found, MIN_MODE_MASS, summary[:m],
                             summary[m:3 * m].reshape((m, 2)),
                             summary[3 * m:7 * m].reshape((m, 2, 2)),
                             summary[7 * m:].reshape((2, 2)))
    return cusum, occupied, found, count, sigma


@jit
def update(state: np.ndarray, drawn: np.ndarray, coarse: np.ndarray, likelihood: np.ndarray,
           weights: np.ndarray, uniform: float, prior_scale: float, prior_floor: float,
           cloud_scale: float, measurement_scale: float, hist: np.ndarray,
           out_state: np.ndarray, out_weights: np.ndarray, out_coarse: np.ndarray,
           acc: np.ndarray, flags: np.ndarray, sums: np.ndarray, minus_mass: np.ndarray
           ) -> int:
    """
    Resample and weight (CellFilter._mixture_update without a point); the new cells' moments.

    Copies of cloud particle ``i``: the jumps of ``floor(cumsum(weights) x (n - m) + u)``;
    the ``m`` drawn states once each. Weight: likelihood x prior / proposal, normalised.
    Then :func:`cell_moments` of the new particles (their number of occupied cells).
    """
    n, m = weights.shape[0], drawn.shape[1]
    hist[:] = 0.0
    for j in range(n):
        hist[coarse[j]] += weights[j]
    kept = n - m
    total, previous, k = 0.0, 0, 0
    for i in range(n + m):
        if i < n:
            total += weights[i]
            edge = kept if i == n - 1 else np.intp(total * kept + uniform)
            copies = edge - previous
            previous = edge
        else:
            copies = 1
        for _ in range(copies):
            for row in range(state.shape[0]):
                out_state[row, k] = state[row, i] if i < n else drawn[row, i - n]
            lik, cell = likelihood[i], coarse[i]
            cloud = hist[cell]
            prior = cloud * prior_scale
            prior += prior_floor
            proposal = cloud * cloud_scale
            proposal += lik * measurement_scale
            weight = lik * prior
            out_weights[k] = weight / proposal
            out_coarse[k] = cell
            k += 1
    norm = pairwise_sum(out_weights)
    for j in range(n):
        out_weights[j] /= norm
    return cell_moments(out_state, out_weights, out_coarse, acc, flags, sums, minus_mass)


@jit
def coarse_cells(state: np.ndarray, geometry: np.ndarray, codes: np.ndarray,
                 out: np.ndarray) -> None:
    """Coarse cell of every particle (terminal_indices_en // coarse_span)."""
    coarse_span = np.intp(geometry[9])
    for j in range(state.shape[1]):
        out[j] = _terminal(state[0, j], state[1, j], geometry, codes) // coarse_span


def load() -> float:
    """
    Compile the kernels (or load them from Numba's cache) by running each once; idempotent.

    Returns the seconds the first call took (0 after).
    """
    global _LOAD_SECONDS
    if _LOAD_SECONDS is not None:
        return 0.0
    started = time.perf_counter()
    _warm_up()
    _LOAD_SECONDS = time.perf_counter() - started
    return _LOAD_SECONDS


def load_seconds() -> float | None:
    """Return how long :func:`load` took (compiling or loading from the cache), None before."""
    return _LOAD_SECONDS


def _warm_up() -> None:
    """Run every kernel once on tiny inputs of the filter's types (compiles them all)."""
    n, m = 8, 2
    state, weights = np.zeros((4, n)), np.full(n, 1.0 / n)
    bank = np.zeros((2, 64))
    random = np.random.default_rng(0)  # (alive while the kernels use its state's address)
    generator = generator_handle(random)
    predict(state, bank, 0, True, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0)
    predict(state, bank, 0, False, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0)
    geometry = np.array([1.0, -1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    codes = np.zeros((2, 3), np.int64)
    drawn = np.zeros((4, m))
    likelihood, coarse = np.zeros(n + m), np.zeros(n + m, np.int64)
    advance(state, weights, bank, 0, True, 1.0, 1.0, 1.0, 1.0, 0.0, np.zeros((4, m)), bank, 0,
            np.zeros(1, np.int64), np.ones(1, np.int64), np.ones(1), np.ones(1),
            np.zeros((2, 1)), np.zeros((2, 1)), geometry, codes, drawn, likelihood, coarse)
    scratch = (np.zeros((1, 6)), np.zeros(1, np.uint8), np.zeros((1, 6)), np.zeros(1))
    update(state, drawn, coarse, likelihood, weights, 0.5, 1.0, 1.0, 1.0, 1.0, np.zeros(1),
           np.zeros((4, n)), np.zeros(n), np.zeros(n, np.int64), *scratch)
    frame(state, weights, True, 1.0, 1.0, 1.0, 1.0, 0.0, np.zeros(1, np.int64),
          np.ones(1, np.int64),
          np.ones(1), np.zeros((4, n)), np.zeros(n), np.zeros(n, np.int64),
          np.zeros(MAX_MODES * 7 + 4), np.ones(1), generator, bank, np.zeros((4, m)), bank,
          np.zeros((2, 1)), np.zeros((2, 1)), geometry, codes, drawn, likelihood, coarse,
          np.ones(9), np.zeros(1), *scratch, np.zeros((MAX_MODES, 6)))
    keys = np.zeros(n, np.int64)
    coarse_cells(state, geometry, codes, keys)
    occupied = cell_moments(state, weights, keys, *scratch)
    found = cluster(scratch[2], occupied, scratch[3][:occupied].argsort(), 1.0, 64,
                    np.zeros((8, 6)))
    summarise(np.ones((8, 6)), found, 0.05, np.zeros(8), np.zeros((8, 2)), np.zeros((8, 2, 2)),
              np.zeros((2, 2)))
    spans = np.array([16, 1], np.int64)
    for real in (np.float32, np.float64):  # Measurement.from_steps: torch's and simulated
        ints, reals = np.zeros((5, 8), np.int64), np.zeros((3, 8))
        count = steps_keys(np.zeros(4, real), np.zeros((1, 1), np.int64),
                           np.zeros((1, 1), real), np.zeros((1, 1, 4), real),
                           np.ones(8, np.int64), np.ones(8, np.int64), -1.0, ints, reals)
        np.exp(reals[0, :count], out=reals[0, :count])
        steps_measurement(ints, reals, ints[0, :count].argsort(), 1, spans, 1.0)
        steps_measurement_sorted(ints, reals, count, 1, spans, 1.0)
