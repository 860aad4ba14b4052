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
The temporal filter's output: from the particles to a FilterEstimate and a Fix.

:class:`~jzi_ros.inference.fusion.CellFilter` reports after every frame the heaviest mode, the
modes' spread and whether the belief has converged (:meth:`FilterOutput._estimate`), and turns
that into the published :class:`~jzi_ros.inference.fix.Fix` (:meth:`FilterOutput.fix`). Why
it is shaped so is in :mod:`jzi_ros.inference.fusion`'s docstring ("Output").
"""
from __future__ import annotations

from functools import partial
import math

import numpy as np

from jzi_ros.inference.fix import Fix, FixStatus, LazyHypotheses
from jzi_ros.inference.modes import FilterEstimate, mode_hypotheses
from jzi_ros.inference.posterior import fix_covariance


class FilterOutput:
    """CellFilter's estimate and Fix (a mixin: it reads the filter's particles and modes)."""

    def _estimate(self, event: str, summary: tuple | None = None) -> FilterEstimate:
        if not self.initialised:
            zero = np.zeros(2)
            return FilterEstimate(False, (), zero, np.eye(2) * self.tree.size_m ** 2 / 12,
                                  event, 0.0)
        if self._kernel is not None and self._state.flags.c_contiguous:
            if summary is None:  # (the compiled frame's: its modes, spread and sigma)
                summary = self._modes.summary(self._kernel.cell_moments(
                    self._state, self.weights, self._coarse_keys(), *self._modes.scratch))
            modes, spread, sigma = summary  # as below
        else:
            modes = self._modes(self._state, self.weights, self._coarse_keys())
            # second moment of the reported modes about the published position (the
            # heaviest mode's mean): a second mode far away widens it, as the beam spread
            # does per frame; the diffuse rest (each cluster under MIN_MODE_MASS, e.g. the
            # anywhere_prob share) does not, or one per cent of mass 2 km away alone would
            # make a 200 m sigma
            a = b = c = total = 0.0
            east, north = modes[0].mean_en.tolist()
            for mode in modes:
                (xx, xy), (_, yy) = mode.cov_en.tolist()
                de, dn = mode.mean_en[0] - east, mode.mean_en[1] - north
                a += mode.mass * (xx + de * de)
                b += mode.mass * (xy + de * dn)
                c += mode.mass * (yy + dn * dn)
                total += mode.mass
            a, b, c = a / total, b / total, c / total
            sigma = math.sqrt(max(0.0, 0.5 * (a + c) + math.hypot(0.5 * (a - c), b)))
            spread = np.array([[a, b], [b, c]])
        main = modes[0]
        converged = main.mass >= self.config.fix_mode_mass and sigma <= self.config.fix_sigma_m
        refined = self._point_en is not None and math.hypot(
            *(self._point_en - main.mean_en)) <= self.config.mode_radius_m
        return FilterEstimate(converged, modes, main.mean_en, spread, event, self.cusum,
                              self._odometry, refined)

    def fix(self, estimate: FilterEstimate, altitude_m: float, altitude_sigma_m: float,
            timings_ms: dict[str, float] | None = None) -> Fix:
        """Return the estimate as a Fix (heaviest mode's mean; NO_FIX until converged)."""
        tree, cfg = self.tree, self.config
        timings = dict(timings_ms or {})
        if not estimate.modes:
            lat, lon = tree.cell_center(())
            return Fix.no_fix(f"fusion: {estimate.event or 'no measurement yet'}", lat, lon,
                              altitude_m, tree.size_m ** 2 / 12, timings)
        main = estimate.modes[0]
        east, north = main.mean_en.tolist()
        lat, lon = tree.to_latlon(east, north)  # the published position: one point
        hypotheses = LazyHypotheses(len(estimate.modes), partial(
            mode_hypotheses, tree, self._to_terminal, estimate.modes))
        if not estimate.converged:
            reason = (f"fusion: not converged (heaviest of {len(estimate.modes)} modes holds "
                      f"{main.mass:.2f} of the belief)")
            return Fix.no_fix(reason, float(lat), float(lon), altitude_m,
                              tree.size_m ** 2 / 12, timings, hypotheses, main.mass, east, north)
        scale = cfg.odom_covariance_scale if estimate.odometry else cfg.covariance_scale
        floor = cfg.sigma_floor_m
        if estimate.refined:  # the belief is the Gaussian product: not over-dispersed as
            # the tempered zoom's, and as sharp as the refined fixes allow
            scale, floor = 1.0, min(floor, cfg.refined_sigma_floor_m)
        cov = fix_covariance(estimate.cov_en, scale, floor, altitude_sigma_m)
        cov[0][0] += self.georef_sigma_m ** 2  # the map's offset, once (module docstring)
        cov[1][1] += self.georef_sigma_m ** 2
        return Fix(FixStatus.FIX, float(lat), float(lon), altitude_m, cov, main.mass, east,
                   north, hypotheses, "", timings, georef_sigma_m=self.georef_sigma_m)
