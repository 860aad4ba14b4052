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
The temporal filter's compiled half: its inputs to the Numba kernels and the call per frame.

:class:`~jzi_ros.inference.fusion.CellFilter` keeps one :class:`CompiledStep` when
``FusionConfig.kernel`` picks Numba (:func:`kernel_module`): the tree's geometry and the
buffers in the C order and dtypes of the kernels' compiled signatures, allocated once, and
the handle through which the kernels draw from the filter's own generator (so the stream
moves as the numpy path's). The kernels themselves are :mod:`jzi_ros.inference.fusion_kernel`.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.inference.modes import SUMMARY_SIZE


class CompiledStep:
    """One filter's inputs to the compiled kernels; ``frame`` runs a whole step."""

    def __init__(self, kernel, filt, codes, scale: np.ndarray, offset: np.ndarray) -> None:
        """Copy ``filt``'s geometry (its CellFilter, set up) and allocate the buffers."""
        self.kernel = kernel
        tree, config = filt.tree, filt.config
        n, drawn = config.particles, filt._drawn
        self.corners = tuple(np.ascontiguousarray(a, np.float64) for a in (
            filt._high_corner, filt._low_corner))
        self.geometry = np.array([filt._metres[0, 0], filt._metres[1, 0], scale[0, 0],
                                  scale[1, 0], offset[0, 0], offset[1, 0], filt.half,
                                  config.max_speed_mps, filt._low_span, filt._coarse_span],
                                 np.float64)
        self.codes = np.ascontiguousarray(np.stack([codes.row_code, codes.col_code]), np.int64)
        rows = state_rows(config)
        self.drawn = np.empty((rows, drawn))
        self.likelihood = np.empty(n + drawn)
        self.coarse = np.empty(n + drawn, np.int64)
        self.hist = np.empty(filt._coarse_cells)
        self.uniforms = np.empty((4, drawn))
        self.cumulative = np.empty(1024)  # (grown when a measurement has more runs)
        # the generator's draw functions and state: the kernel moves the same stream
        self.generator = kernel.generator_handle(filt.rng)
        # the frame's new particles, weights and coarse cells: two sets used in turn (the
        # one the filter does not hold), so a frame writes into memory the last frames warmed
        self.outputs = [(np.empty((rows, n)), np.empty(n), np.empty(n, np.int64))
                        for _ in "ab"]
        self.params = np.array([filt._terminal_cells, config.likelihood_exponent, 0.0,
                                config.reset_nats, config.anywhere_prob, tree.size_m ** 2,
                                filt._coarse_area, config.proposal_fraction,
                                config.mode_radius_m], np.float64)
        # frame's fixed arguments, in its order (one tuple: no lookups per frame)
        self.fixed = (self.generator, filt._normal_bank, self.uniforms, filt._disc_bank,
                      *self.corners, self.geometry, self.codes, self.drawn, self.likelihood,
                      self.coarse, self.params, self.hist, *filt._modes.scratch,
                      filt._modes.moments)

    def coarse_cells(self, state: np.ndarray) -> np.ndarray:
        """Return the coarse cell of every particle of ``state`` (C-ordered ``[rows, N]``)."""
        keys = np.empty(state.shape[1], np.int64)
        self.kernel.coarse_cells(state, self.geometry, self.codes, keys)
        return keys

    def frame(self, filt, part, tempered: np.ndarray, motion: tuple):
        """
        Run ``fusion_kernel.frame`` on the filter's particles; the filter itself is not changed.

        Returns ``(cusum, occupied, found, state, weights, coarse keys, modes)``:
        ``occupied`` < 0 when the kidnap test fired (``self.cumulative[:len(tempered)]`` then
        holds the tempered measurement's cumulative sum); ``modes``: ModeFinder.summary's
        ``(modes, spread, sigma)``, from the kernel's summary or, on a tie, ordered by numpy.
        The new state, weights and keys are one of ``outputs``, the one the filter does not
        hold now, overwritten by the frame after next (as in the numpy path the next frame's
        prediction moves the particles in place: ``CellFilter.particles`` is a view of the
        state, to copy if kept).
        """
        if len(tempered) > len(self.cumulative):
            self.cumulative = np.empty(2 * len(tempered))
        n, modes = len(filt.weights), filt._modes
        self.params[2] = filt.cusum
        state, weights, keys = self.outputs[0]
        if state is filt._state or weights is filt.weights or keys is filt._coarse:
            state, weights, keys = self.outputs[1]
        if len(weights) != n:  # (a filter always holds config.particles)
            state, weights, keys = (np.empty(filt._state.shape), np.empty(n),
                                    np.empty(n, np.int64))
        summary = np.empty(SUMMARY_SIZE)  # (new every frame: the modes are views of it)
        cusum, occupied, found, count, sigma = self.kernel.frame(
            filt._state, filt.weights, *motion, part.bounds, part.cells, tempered, state,
            weights, keys, summary, self.cumulative, *self.fixed)
        if occupied < 0:
            return cusum, occupied, found, state, weights, keys, None
        summary = (modes.modes_of(summary, count) + (sigma,) if found >= 0
                   else modes.summary(occupied, found))
        return cusum, occupied, found, state, weights, keys, summary


def motion_args(config, dt_s: float, displacement_en: np.ndarray | None
                ) -> tuple[bool, float, float, float, float, float]:
    """
    Return the compiled prediction's motion arguments (fusion_kernel._predict).

    The last: the per-step relative 1-sigma of each particle's odometry scale (0 without the
    scale state, and for the random walk).
    """
    dt_s = float(dt_s)
    if displacement_en is None:
        return (True, float(config.accel_sigma_mps2 * dt_s), float(config.max_speed_mps),
                float(config.max_speed_mps ** 2), dt_s, 0.0)
    d = np.asarray(displacement_en, np.float64).reshape(2, 1)
    sigma = (config.odom_noise_fraction * math.hypot(d[0, 0], d[1, 0])
             + config.odom_noise_mps * dt_s)
    return (False, float(max(sigma, 1e-6)), float(d[0, 0]), float(d[1, 0]),
            1.0 / dt_s if dt_s > 0 else 0.0, float(config.odom_scale_sigma))


def state_rows(config) -> int:
    """Rows of a particle state: East, North, two velocities, and the odometry scale if used."""
    return 5 if config.odom_scale_sigma > 0 else 4


def kernel_module(kernel: str):
    """
    Return the compiled kernels' module for ``FusionConfig.kernel``, or None for numpy.

    ``numba`` without a working Numba is an error that says how to install it; ``auto`` then
    takes numpy (with a warning when Numba is installed but cannot compile the kernels).
    """
    if kernel == "numpy":
        return None
    try:
        from jzi_ros.inference import fusion_kernel

        fusion_kernel.load()  # compiled (or loaded from Numba's cache) now, not on a frame
        return fusion_kernel
    except ImportError as err:
        if kernel == "numba":
            raise JziError(f"fusion.kernel numba: Numba is not importable ({err}); install it "
                           f"(pip install numba, or the python3-numba Debian package) or set "
                           f"fusion.kernel to auto or numpy") from None
    except Exception as err:  # noqa: B902 (a Numba that does not suit this numpy, ...)
        if kernel == "numba":
            raise JziError(f"fusion.kernel numba: the filter kernels do not compile "
                           f"({type(err).__name__}: {err}); set fusion.kernel to numpy") from None
        warnings.warn(f"fusion.kernel auto: the Numba filter kernels do not compile "
                      f"({type(err).__name__}: {err}); using numpy", RuntimeWarning,
                      stacklevel=3)
    return None
