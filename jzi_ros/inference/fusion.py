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
Temporal fusion: a recursive Bayes filter over the map's root square, fed by every frame's zoom.

Why particles (and not a dense histogram over cells): the per-frame cost is
O(particles), whatever the map size (a depth-5 tree has a million terminal cells; a
dense grid would pay for all of them every frame); the belief can be multi-modal (a wrong
first zoom step leaves a second mode kilometres away, which one Gaussian cannot hold);
odometry displacements are continuous, not cell-sized; and re-initialising after a kidnap is
drawing particles from the current measurement.

Measurement (:class:`Measurement`): at every step the zoom gives the 16 child probabilities of
each beam prefix. That is a piecewise-constant density over the root: every child that was
not expanded further carries its path probability spread uniformly over its cell (so a
rejected 625 m cell keeps its share at 625 m resolution), every expanded prefix hands its mass
on to its children. A small ``uniform_weight`` of the mass is spread over the whole map (a
frame can be plain wrong), and the density is tempered by ``likelihood_exponent`` (consecutive
frames are not independent: the same scene fools the model twice). Backends whose fixed graph
returns only the final beam (ONNX, TensorRT) give a coarser measurement: the beam's terminal
cells with their path probabilities, the rest spread uniformly.

Motion: odometry displacements (East/North, :mod:`jzi_ros.heading` rotates them) plus noise
proportional to the distance, or a random walk of each particle's velocity bounded by
``max_speed_mps``.

Resets: a time jump backwards (a bag played again) or a gap over ``max_gap_s`` starts over
from the next measurement. Kidnapping is a sequential likelihood-ratio test (CUSUM): each frame
compares how well the filter's prior explains the measurement with how well a uniform prior
would; once the accumulated log-ratio in favour of "anywhere" exceeds ``reset_nats`` the
filter re-draws its particles from the measurement.

Refined fixes (:class:`PointMeasurement`, optional per frame): a Gaussian around the refined
position, its covariance inflated by ``refined_sigma_floor_m`` (so a few thousand particles
do not collapse onto one point) and mixed with ``refined_outlier_prob`` of "anywhere" (so one
wrong fix far from a confident belief does not drag it), multiplied into the zoom's
likelihood; ``refined_proposal_fraction`` of the particles are drawn from that Gaussian (else
none would land within metres of it). The kidnap test takes the point's evidence untempered,
after the zoom's.

Output: the heaviest mode (particles within ``mode_radius_m`` of a density peak): its mean and
covariance as a :class:`~jzi_ros.inference.fix.Fix`, NO_FIX until that mode holds
``fix_mode_mass`` of the belief with a 1-sigma below ``fix_sigma_m``; the modes are the fix's
hypotheses (their number and spread are in :class:`FilterEstimate`). The covariance is scaled
by ``covariance_scale`` after a random-walk step and by ``odom_covariance_scale`` after an
odometry step (fitted apart: the odometry belief is far tighter). The belief lives in the map's
frame (refined fixes enter without the map's georeferencing term, ``Fix.map_covariance_en``);
every FIX gets ``georef_sigma_m`` squared added once, as the offset is one bias of the map.

Cost: a small, fixed number of numpy calls per frame whatever the map size (CellFilter says
how), or one compiled call (``FusionConfig.kernel``, :mod:`jzi_ros.inference.fusion_compiled`)
with the same particles and weights; ``jzi bench`` times it next to the encoder.
"""
from __future__ import annotations

import math

import numpy as np

from jzi_ros.geo import CellTree
from jzi_ros.inference import seeding
from jzi_ros.inference.decode import Seeds
from jzi_ros.inference.fusion_compiled import (CompiledStep, kernel_module, motion_args,
                                               state_rows)
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.fusion_output import FilterOutput
from jzi_ros.inference.fusion_point import PointUpdate
from jzi_ros.inference.measurement import (cell_codes, Measurement, Partition,
                                           PointMeasurement, terminal_indices_en)
from jzi_ros.inference.modes import FilterEstimate, ModeFinder
from jzi_ros.maps.georef import check_georef_sigma_m

# the "no measurement" likelihood: a frame that brings only a refined fix multiplies it into this
UNIFORM = Measurement(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 1.0)


class CellFilter(PointUpdate, FilterOutput):
    """
    The particle filter. ``step`` once per frame, in stamp order; not thread-safe.

    Built for a small, fixed number of numpy calls per frame (at a few thousand particles the
    per-call overhead, not the arithmetic, is the cost): the state is one ``[4, N]`` array
    (East, North, and the random walk's velocity; a fifth row, each particle's odometry scale,
    when ``odom_scale_sigma`` > 0) so that resampling is one ``take``; every
    point's terminal cell index is computed once (:func:`terminal_indices_en`) and serves the
    likelihood (one lookup into the measurement's runs), the prior and the modes (both from
    the same coarse cells: tree cells of at most 64 x 64 over the root, so their number does
    not grow with the map). Gaussian motion noise and fresh velocities are read at a random
    offset from banks drawn once at construction (drawing thousands of normals per frame
    costs more than the rest of the update). ``kernel`` (``numpy`` or ``numba``) says which
    step runs (``FusionConfig.kernel``); the compiled one covers the prediction and the step
    without a refined fix, refined-fix frames and (re)initialisations take the numpy code.
    ``georef_sigma_m``: the map imagery's georeferencing 1-sigma (``georef_sigma_used``).
    """

    def __init__(self, tree: CellTree, config: FusionConfig | None = None,
                 georef_sigma_m: float = 0.0) -> None:
        self.tree = tree
        self.config = config or FusionConfig()
        self.georef_sigma_m = check_georef_sigma_m(float(georef_sigma_m), "CellFilter")
        self.rng = np.random.default_rng(self.config.seed)
        self.half = tree.size_m / 2
        codes = cell_codes(tree.grid, tree.depth)
        side = tree.size_m / tree.grid ** tree.depth
        self._metres = np.array([[side], [-side]])  # terminal (col, row) -> (east, north)
        # north-west corners of the high digits' cells, offsets of the low digits' cells
        self._high_corner = (codes.high_cr.T * tree.grid ** codes.low_digits * self._metres
                             + [[-self.half], [self.half]])
        self._low_corner = codes.low_cr.T * self._metres
        self._low_span = tree.num_actions ** codes.low_digits
        self._terminal_cells = tree.num_actions ** tree.depth
        level = tree.depth  # the coarse cells: the deepest level of at most 64 x 64 cells
        while level > 0 and tree.grid ** level > 64:
            level -= 1
        self._coarse_span = tree.num_actions ** (tree.depth - level)
        self._coarse_cells = tree.num_actions ** level
        self._coarse_area = tree.cell_side(level) ** 2
        scale, offset = codes.per_metre(tree.size_m)  # terminal_indices_en of a few points
        self._to_terminal = (float(scale[0, 0]), float(scale[1, 0]), float(offset[0, 0]),
                             float(offset[1, 0]), tree.grid ** tree.depth - 1, codes.row_code,
                             codes.col_code)
        n = self.config.particles
        self._rows = state_rows(self.config)  # East, North, velocity (+ odometry scale)
        self._kernel = kernel_module(self.config.kernel)  # None: the numpy path
        self.kernel = "numpy" if self._kernel is None else "numba"
        self._modes = ModeFinder(self._coarse_cells, self.config.mode_radius_m, self._kernel)
        self._drawn = int(round(self.config.proposal_fraction * n))
        self._drawn_point = max(1, int(round(self.config.refined_proposal_fraction * n)))
        most = n + self._drawn + self._drawn_point
        self._all_index = np.arange(most)
        self._edges = np.zeros(n + 1, np.intp)  # resampling: cumulative copies
        self._copies = np.ones(most, np.intp)  # copies of the states, drawn: 1
        bank = max(1 << 16, 8 * n)
        self._normal_bank = self.rng.standard_normal((2, bank))
        radius = np.sqrt(self.rng.uniform(0, 1, bank))
        angle = self.rng.uniform(0, 2 * np.pi, bank)
        self._disc_bank = np.stack([radius * np.cos(angle), radius * np.sin(angle)])
        self._compiled = (None if self._kernel is None  # the compiled kernels' inputs
                          else CompiledStep(self._kernel, self, codes, scale, offset))
        self.reset()

    @property
    def initialised(self) -> bool:
        return self.last_stamp_ns is not None

    @property
    def particles(self) -> np.ndarray:
        """Return the particles' East/North metres ``[N, 2]`` (a view of the state)."""
        return self._state[:2].T

    @property
    def velocity(self) -> np.ndarray:
        """Return the particles' random-walk velocity ``[N, 2]``, m/s (a view of the state)."""
        return self._state[2:4].T

    @property
    def odometry_scale(self) -> np.ndarray | None:
        """Return each particle's odometry scale ``[N]`` (None without that state)."""
        return self._state[4] if self._rows > 4 else None

    def mean_odometry_scale(self) -> float | None:
        """Return the belief's mean odometry scale (None without that state or particles)."""
        state, weights = self._state, self.weights  # (one read each: the node's other thread)
        if self._rows <= 4 or state.shape[1] == 0 or state.shape[1] != len(weights):
            return None
        return float(state[4] @ weights)

    def reset(self) -> None:
        """Forget everything; the next measurement initialises the filter."""
        self._state = np.zeros((self._rows, 0))
        self.weights = np.zeros(0)
        self.last_stamp_ns: int | None = None
        self.cusum = 0.0
        self._coarse: np.ndarray | None = None  # coarse cell of each particle, when known
        self._odometry = False  # the last prediction used odometry
        self._point_en: np.ndarray | None = None  # the last frame's refined fix, if any

    # --- random numbers ----------------------------------------------------------------------
    def _normals(self, count: int) -> np.ndarray:
        """``[2, count]`` standard normals: a read-only slice of the bank at a random offset."""
        start = self._bank_start(self._normal_bank, count)
        return self._normal_bank[:, start:start + count]

    def _velocities(self, count: int) -> np.ndarray:
        """``[2, count]`` velocities uniform in the disc of radius max_speed_mps."""
        start = self._bank_start(self._disc_bank, count)
        return self._disc_bank[:, start:start + count] * self.config.max_speed_mps

    def _bank_start(self, bank: np.ndarray, count: int) -> int:
        """Return a random offset for ``count`` columns of a bank (one draw of the stream)."""
        return int(self.rng.integers(0, bank.shape[1] - count + 1))

    # --- measurement -----------------------------------------------------------------------
    def _tempered(self, measurement: Measurement) -> tuple[Partition, np.ndarray, np.ndarray]:
        """
        Return the measurement's runs, each run's tempered density, their cumulative mass.

        Tempered density: ((1 - u) x density + u / area) ** exponent. Cumulative mass in
        units of terminal cells (times a terminal cell's area it is in m^2).
        """
        u, area = self.config.uniform_weight, self.tree.size_m ** 2
        part = measurement.partition(self.tree)
        floor = ((1 - u) * measurement.background + u) / area
        tempered = ((1 - u) * part.density + floor) ** self.config.likelihood_exponent
        return part, tempered, np.cumsum(tempered * part.cells)

    def _draw(self, tempered: tuple[Partition, np.ndarray, np.ndarray], count: int
              ) -> np.ndarray:
        """``[rows, count]`` states drawn from the measurement: fresh velocities, scale 1."""
        part, _, cumulative = tempered
        u = self.rng.random((4, count))
        run = cumulative.searchsorted(u[0] * cumulative[-1], "right")
        np.minimum(run, len(cumulative) - 1, out=run)
        cell = part.bounds[run] + (u[1] * part.cells[run]).astype(np.intp)
        high, low = np.divmod(cell, self._low_span)  # a cell of the run, a point in the cell
        u[:2] = self._high_corner.take(high, axis=1) + self._low_corner.take(low, axis=1)
        u[:2] += u[2:] * self._metres
        u[2:] = self._velocities(count)
        if self._rows > 4:
            return np.concatenate([u, np.ones((self._rows - 4, count))])
        return u

    def _initialise(self, measurement: Measurement, stamp_ns: int,
                    tempered: tuple[Partition, np.ndarray, np.ndarray] | None = None,
                    point: PointMeasurement | None = None) -> None:
        n = self.config.particles
        tempered = tempered or self._tempered(measurement)
        if point is None:
            self._state = self._draw(tempered, n)
            self.weights = np.full(n, 1.0 / n)
        else:
            # half from the zoom, half from the refined fix; weights: zoom x point / proposal
            # (a uniform prior), so a wrong fix leaves the zoom's places their Bayes share
            gaussian, half = point.gaussian(self.config.refined_sigma_floor_m), n // 2
            self._state = np.concatenate([self._draw(tempered, n - half),
                                          self._draw_point(gaussian, half)], axis=1)
            zoom, point_lik, g = self._likelihoods(tempered, gaussian, self._state)
            total = float(tempered[2][-1]) * (self.tree.size_m / self.tree.grid
                                              ** self.tree.depth) ** 2
            weights = zoom * point_lik
            weights /= zoom * ((n - half) / n / total) + g * (half / n)
            self.weights = weights / weights.sum()
        self.last_stamp_ns = int(stamp_ns)
        self.cusum = 0.0
        self._coarse = None

    def predict(self, dt_s: float, displacement_en: np.ndarray | None) -> None:
        """
        Move the particles by ``dt_s`` seconds: odometry displacement + noise, or random walk.

        The random walk is on each particle's velocity (bounded by max_speed_mps), so a
        robot cruising in one direction is followed, not trailed by a cloud that stays put.
        """
        cfg, state = self.config, self._state
        position, velocity = state[:2], state[2:4]
        self._odometry = displacement_en is not None
        if self._kernel is not None:
            start = self._bank_start(self._normal_bank, state.shape[1])
            self._kernel.predict(state, self._normal_bank, start,
                                 *motion_args(cfg, dt_s, displacement_en), float(self.half))
        elif displacement_en is None:
            velocity += self._normals(state.shape[1]) * (cfg.accel_sigma_mps2 * dt_s)
            speed = np.einsum("ij,ij->j", velocity, velocity)
            np.maximum(speed, cfg.max_speed_mps ** 2, out=speed)
            np.sqrt(speed, out=speed)
            np.divide(cfg.max_speed_mps, speed, out=speed)  # 1 below the speed bound
            velocity *= speed
            position += velocity * dt_s
        else:  # odometry, its noise as the compiled prediction's (one formula: motion_args)
            _, sigma, east, north, per_s, scale_sigma = motion_args(cfg, dt_s, displacement_en)
            normals = self._normals(state.shape[1])
            if self._rows == 4:
                step = normals * sigma + np.array([[east], [north]])
            else:  # each particle's own odometry scale, then its random walk (the kernel's)
                scale = state[4]
                step = normals * sigma + np.array([[east], [north]]) * scale
                walked = scale * (1.0 + scale_sigma * normals[0, ::-1])
                np.maximum(np.minimum(walked, 2.0), 0.5, out=scale)
            position += step
            if dt_s > 0:  # should odometry drop out, the random walk carries on from here
                np.multiply(step, per_s, out=velocity)
        if self._kernel is None:
            np.minimum(position, self.half, out=position)
            np.maximum(position, -self.half, out=position)
        self._coarse = None

    # --- one frame -------------------------------------------------------------------------
    def step(self, stamp_ns: int, measurement: Measurement | None,
             displacement_en: np.ndarray | None = None,
             point: PointMeasurement | None = None) -> FilterEstimate:
        """
        Fold in one frame (stamp in ns) and return the estimate.

        ``measurement`` None (the frame gave nothing) only propagates. ``displacement_en``:
        odometry East/North metres since the previous frame, None for the random walk.
        ``point``: the frame's refined fix, multiplied into the zoom's likelihood (with no
        ``measurement``, into a uniform one).
        """
        event = ""
        self._point_en = None if point is None else point.east_north_m
        if point is not None and measurement is None:
            measurement = UNIFORM
        if self.initialised:
            dt = (int(stamp_ns) - self.last_stamp_ns) / 1e9
            if dt < 0:
                event = f"reset: time jumped back {-dt:.3g} s"
                self.reset()
            elif dt > self.config.max_gap_s:
                event = f"reset: {dt:.3g} s gap > max_gap_s {self.config.max_gap_s:g}"
                self.reset()
        if not self.initialised:
            if measurement is None:
                return self._estimate(event or "waiting")
            self._initialise(measurement, stamp_ns, point=point)
            return self._estimate(event or "init")
        dt = (int(stamp_ns) - self.last_stamp_ns) / 1e9
        self.last_stamp_ns = int(stamp_ns)
        if self._kernel is not None and measurement is not None and point is None:
            return self._step_compiled(stamp_ns, measurement, dt, displacement_en, event)
        self.predict(dt, displacement_en)
        if measurement is None:
            return self._estimate("")
        if point is not None:
            return self._step_point(stamp_ns, measurement, point, event)
        tempered = self._tempered(measurement)
        part, density, cumulative = tempered
        n = len(self.weights)
        states = np.concatenate([self._state, self._draw(tempered, self._drawn)], axis=1)
        terminal = terminal_indices_en(self.tree, states[:2], inside=True)
        likelihood = density[part.lookup(terminal)]
        z_filter = float(self.weights @ likelihood[:n])
        z_uniform = float(cumulative[-1]) / self._terminal_cells
        # log-likelihood ratio "anywhere" vs "the filter's prior", in untempered nats (the
        # tempered ratio divided by the exponent), so reset_nats does not depend on it
        llr = (math.log(z_uniform) - math.log(max(z_filter, 1e-300)))
        self.cusum = max(0.0, self.cusum + llr / self.config.likelihood_exponent)
        if self.cusum > self.config.reset_nats:
            self._initialise(measurement, stamp_ns, tempered)
            return self._estimate("kidnap: frames keep disagreeing with the filter")
        self._mixture_update(states, terminal // self._coarse_span, likelihood,
                             z_uniform * self.tree.size_m ** 2)
        return self._estimate(event)

    def _step_compiled(self, stamp_ns: int, measurement: Measurement, dt_s: float,
                       displacement_en: np.ndarray | None, event: str) -> FilterEstimate:
        """
        ``step`` without a refined fix in one compiled call: the same draws and operations.

        ``fusion_kernel.frame`` draws from this filter's generator as ``predict``, ``_draw``
        and ``_mixture_update`` do (so the stream stays the numpy path's), predicts, looks
        up the likelihoods, runs the kidnap test, resamples, weights and finds the modes; a
        kidnap re-initialises here, from the same point of the stream.
        """
        cfg = self.config
        self._odometry = displacement_en is not None
        u, part = cfg.uniform_weight, measurement.partition(self.tree)
        floor = ((1 - u) * measurement.background + u) / self.tree.size_m ** 2
        tempered = (1 - u) * part.density  # as _tempered, its cumulative sum in the kernel
        tempered += floor
        tempered **= cfg.likelihood_exponent  # (** as _tempered: numpy's scalar fast paths)
        self.cusum, occupied, _, state, weights, keys, summary = self._compiled.frame(
            self, part, tempered, motion_args(cfg, dt_s, displacement_en))
        if occupied < 0:
            self._initialise(measurement, stamp_ns,
                             (part, tempered, self._compiled.cumulative[:len(tempered)]))
            return self._estimate("kidnap: frames keep disagreeing with the filter")
        self._state, self.weights, self._coarse = state, weights, keys
        return self._estimate(event, summary)

    def _coarse_keys(self) -> np.ndarray:
        if self._coarse is None and self._kernel is not None and self._state.flags.c_contiguous:
            self._coarse = self._compiled.coarse_cells(self._state)
        elif self._coarse is None:
            self._coarse = (terminal_indices_en(self.tree, self._state[:2], inside=True)
                            // self._coarse_span)
        return self._coarse

    def _mixture_update(self, states: np.ndarray, coarse: np.ndarray, likelihood: np.ndarray,
                        total: float,
                        point: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """
        Sample the next particle set from a mixture and weight it by importance.

        Proposal: (1 - phi) x the predicted cloud (resampled by weight) + phi x the tempered
        measurement q (the last ``_drawn`` of ``states``). Target: likelihood x prior, the
        prior being (1 - eps) x the cloud's histogram density + eps uniform. So a place the
        cloud has lost is re-found at the rate Bayes allows, not only when a random walk
        happens to drift there. ``coarse``: each state's coarse cell; ``likelihood``:
        tempered; ``total``: the tempered measurement's integral (m^2 x density). ``point``:
        a refined fix's likelihood and Gaussian density at each state; its draws (the last
        ``_drawn_point`` states) are a third part of the proposal and take the velocities of
        resampled cloud particles (a fresh one would scatter them at the next prediction).
        """
        cfg, n, m = self.config, len(self.weights), self._drawn
        phi = cfg.proposal_fraction
        if point is not None:
            m += self._drawn_point
            phi += cfg.refined_proposal_fraction
        hist = np.bincount(coarse[:n], self.weights, self._coarse_cells)
        # systematic resampling of n - m: copies of particle i = jumps of the scaled cumsum
        # (edges[0] stays 0; the m drawn states have one copy each)
        edges, copies = self._edges, self._copies
        cumulative = np.cumsum(self.weights)
        cumulative *= n - m
        cumulative += self.rng.random()
        edges[1:] = cumulative  # (truncated: the floor of these positive numbers)
        edges[-1] = n - m
        np.subtract(edges[1:], edges[:-1], out=copies[:n])
        take = self._all_index[:n + m].repeat(copies[:n + m])
        self._state = states.take(take, axis=1)
        lik, coarse = likelihood.take(take), coarse.take(take)
        cloud = hist.take(coarse)  # the cloud's mass in the particle's coarse cell
        # likelihood x prior / proposal, prior and proposal as densities per m^2
        prior = cloud * ((1 - cfg.anywhere_prob) / self._coarse_area)
        prior += cfg.anywhere_prob / self.tree.size_m ** 2
        proposal = cloud * ((1 - phi) / self._coarse_area)
        proposal += lik * (cfg.proposal_fraction / total)
        weights = lik * prior
        if point is not None:
            point_lik, g = point[0].take(take), point[1].take(take)
            proposal += g * cfg.refined_proposal_fraction
            weights *= point_lik
            drawn = self._drawn_point
            cloud_copies = max(n - m, 1)  # (0 only for a degenerate tiny particle count)
            self._state[2:, -drawn:] = self._state[2:, self.rng.integers(0, cloud_copies, drawn)]
        weights /= proposal
        weights /= weights.sum()
        self.weights = weights
        self._coarse = coarse

    # --- prior-seeded zoom -----------------------------------------------------------------
    def seed_cells(self, stamp_ns: int, displacement_en: np.ndarray | None = None,
                   min_mass: float | None = None) -> Seeds | None:
        """Return the cells the prior supports for the frame at ``stamp_ns`` (seeding.py)."""
        return seeding.seed_cells(self, stamp_ns, displacement_en, min_mass)
