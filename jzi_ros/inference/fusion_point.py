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
A refined fix in the temporal filter: the zoom's likelihood times the fix's Gaussian.

The update :class:`~jzi_ros.inference.fusion.CellFilter` runs on a frame that brings a refined
fix (``step(..., point=...)``), on the numpy path (the compiled step covers frames without
one). Why it is shaped so is in :mod:`jzi_ros.inference.fusion`'s docstring ("Refined fixes").
"""
from __future__ import annotations

import math

import numpy as np

from jzi_ros.inference.measurement import (Measurement, Partition, PointGaussian,
                                           PointMeasurement, terminal_indices_en)
from jzi_ros.inference.modes import FilterEstimate


class PointUpdate:
    """CellFilter's refined-fix update (a mixin: it uses the filter's state and draws)."""

    def _draw_point(self, gaussian: PointGaussian, count: int) -> np.ndarray:
        """``[rows, count]`` states drawn from the Gaussian (inside the root), fresh velocities."""
        out = np.ones((self._rows, count))  # (odometry scale 1)
        np.clip(gaussian.draw(self._normals(count)), -self.half, self.half, out=out[:2])
        out[2:4] = self._velocities(count)
        return out

    def _likelihoods(self, tempered: tuple[Partition, np.ndarray, np.ndarray],
                     gaussian: tuple[np.ndarray, ...], states: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the tempered zoom likelihood, the point likelihood, the Gaussian density."""
        part, density, _ = tempered
        zoom = density[part.lookup(terminal_indices_en(self.tree, states[:2], inside=True))]
        g = gaussian.density(states[:2])
        outlier = self.config.refined_outlier_prob
        return zoom, g * (1 - outlier) + outlier / self.tree.size_m ** 2, g

    # --- motion ----------------------------------------------------------------------------
    def _step_point(self, stamp_ns: int, measurement: Measurement, point: PointMeasurement,
                    event: str) -> FilterEstimate:
        """
        Update with the zoom's likelihood times a refined fix's (``step`` with a point).

        Proposal: the predicted cloud, the tempered zoom (``proposal_fraction``) and the
        point's Gaussian (``refined_proposal_fraction``). Kidnap test: the zoom's evidence as
        without a point (in untempered nats), plus the point's given the zoom, untempered (the
        chain rule: p(zoom, point) = p(zoom) p(point | zoom)); under "anywhere" the point's
        needs the zoom likelihood's mean over the Gaussian, read off the Gaussian's draws.
        """
        cfg, n, drawn = self.config, len(self.weights), self._drawn
        tempered = self._tempered(measurement)
        gaussian = point.gaussian(self.config.refined_sigma_floor_m)
        states = np.concatenate([self._state, self._draw(tempered, drawn),
                                 self._draw_point(gaussian, self._drawn_point)], axis=1)
        zoom, point_lik, g = self._likelihoods(tempered, gaussian, states)
        area = self.tree.size_m ** 2
        z_filter = max(float(self.weights @ zoom[:n]), 1e-300)
        z_uniform = float(tempered[2][-1]) / self._terminal_cells
        p_filter = float(self.weights @ (zoom[:n] * point_lik[:n])) / z_filter
        outlier = cfg.refined_outlier_prob
        p_uniform = ((1 - outlier) * float(zoom[n + drawn:].mean()) / (z_uniform * area)
                     + outlier / area)
        llr = ((math.log(z_uniform) - math.log(z_filter)) / cfg.likelihood_exponent
               + math.log(p_uniform) - math.log(max(p_filter, 1e-300)))
        self.cusum = max(0.0, self.cusum + llr)
        if self.cusum > cfg.reset_nats:
            self._initialise(measurement, stamp_ns, tempered, point)
            return self._estimate("kidnap: frames keep disagreeing with the filter")
        terminal_coarse = terminal_indices_en(self.tree, states[:2], inside=True) \
            // self._coarse_span
        self._mixture_update(states, terminal_coarse, zoom, z_uniform * area, (point_lik, g))
        return self._estimate(event)
