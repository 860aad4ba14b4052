#!/usr/bin/env python3
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
Variants of the random-walk filter, tried against the shipped one (docs/fusion.md).

    PYTHONPATH=. python benchmarks/filter_variants.py DEMO/validation_seed1 \
        DEMO/validation_seed2 DEMO/validation_seed3 --map DEMO/map --test DEMO/bag

The fused random walk misses issue #17's doubling bar on the demo flight; this asks whether a
different motion model, or a measurement weighted by the frame's confidence, closes it. Each
bag is replayed once (measurements stored, the model's default backend), then the numpy
reference filter runs every variant over ``--filter-seeds`` seeds on the validation bags (the
choice) and the test bag (reported, never chosen on):

- ``shipped``: the fitted defaults (velocity random walk, ``accel_sigma_mps2``);
- ``two-regime a_c/a_m/q``: each particle's velocity change per frame is drawn with
  ``a_m`` m/s^2 with probability ``q`` per second, else ``a_c`` (cruise: long straight
  stretches coast on a remembered velocity; manoeuvre: turns);
- ``borrowed velocities s``: particles drawn from the measurement (the proposal) take the
  velocity of a cloud particle (drawn by weight) plus ``s`` m/s noise instead of a fresh
  velocity uniform in the speed disc;
- ``mode radius r``: the published mode gathers particles within ``r`` m instead of 150 m;
- ``confident frames count more (c_ref, u_min-u_max)``: a frame's "anywhere" share
  (``uniform_weight``, 0.05) becomes ``0.05 * c_ref / c`` clipped to ``[u_min, u_max]``, where
  ``c`` is the probability of its most likely terminal cell (the zoom's confidence): the
  calibrated gate shows confident frames are right far more often (demo model card:
  confidence >= 0.031 places 93 % of the validation frames, all frames 43 %).

The variants replace :class:`CellFilter` methods in this process only (numpy kernel).
Measures and prints pooled R@100 m and median error of every scored frame's estimate.
"""
import argparse
from dataclasses import replace
from pathlib import Path
import sys

import fusion_grid  # benchmarks/, next to this file (puts the checkout on sys.path)
import numpy as np

from jzi_ros.inference import fusion
from jzi_ros.inference.fusion_config import FusionConfig

SHIPPED_PREDICT = fusion.CellFilter.predict
SHIPPED_VELOCITIES = fusion.CellFilter._velocities
SHIPPED_TEMPERED = fusion.CellFilter._tempered


def two_regime(cruise: float, manoeuvre: float, rate: float):
    """Return a ``CellFilter.predict`` whose walk noise is ``manoeuvre`` w.p. rate * dt."""
    def predict(self, dt_s, displacement_en):
        if displacement_en is not None:
            return SHIPPED_PREDICT(self, dt_s, displacement_en)
        cfg, state = self.config, self._state
        position, velocity = state[:2], state[2:]
        self._odometry = False
        count = state.shape[1]
        sigma = np.where(self.rng.random(count) < rate * max(dt_s, 0.0), manoeuvre, cruise)
        velocity += self._normals(count) * (sigma * dt_s)
        speed = np.sqrt(np.maximum(np.einsum("ij,ij->j", velocity, velocity),
                                   cfg.max_speed_mps ** 2))
        velocity *= cfg.max_speed_mps / speed  # the shipped speed bound
        position += velocity * dt_s
        np.clip(position, -self.half, self.half, out=position)
        self._coarse = None
    return predict


def borrowed(sigma_mps: float):
    """Return a ``CellFilter._velocities`` copying cloud velocities (by weight) + noise."""
    def velocities(self, count):
        if not self.weights.size:
            return SHIPPED_VELOCITIES(self, count)
        pick = self.rng.choice(self.weights.size, count, p=self.weights / self.weights.sum())
        return self._state[2:, pick] + self._normals(count) * sigma_mps
    return velocities


def confidence_weighted(c_ref: float, u_min: float, u_max: float):
    """Return a ``CellFilter._tempered`` whose uniform weight falls as the confidence rises."""
    def tempered(self, measurement):
        part, area = measurement.partition(self.tree), self.tree.size_m ** 2
        cell = (self.tree.size_m / self.tree.grid ** self.tree.depth) ** 2
        confidence = float(part.density.max()) * cell if len(part.density) else 0.0
        u = float(np.clip(self.config.uniform_weight * c_ref / max(confidence, 1e-12), u_min,
                          u_max))
        floor = ((1 - u) * measurement.background + u) / area
        density = ((1 - u) * part.density + floor) ** self.config.likelihood_exponent
        return part, density, np.cumsum(density * part.cells)
    return tempered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    fusion_grid.add_arguments(parser, filter_seeds=6)
    parser.add_argument("--test", type=Path, required=True, help="the held-out bag (DEMO/bag)")
    args = parser.parse_args()
    validation, replay = fusion_grid.replay_once(args, args.bags)
    test = [replay(args.test)]
    base = FusionConfig(kernel="numpy")
    variants = [("shipped", {}, base)]
    variants += [(f"two-regime {c:g}/{m:g}/{q:g}", {"predict": two_regime(c, m, q)}, base)
                 for c, m, q in ((0.5, 6, 0.1), (1, 6, 0.1), (2, 6, 0.1), (1, 8, 0.05),
                                 (1, 4, 0.2), (0.5, 8, 0.2))]
    variants += [(f"borrowed velocities {s:g} m/s", {"_velocities": borrowed(s)}, base)
                 for s in (1.0, 4.0, 8.0)]
    variants += [(f"mode radius {r:g} m", {}, replace(base, mode_radius_m=r))
                 for r in (75.0, 300.0)]
    variants += [(f"confident frames count more ({c:g}, {lo:g}-{hi:g})",
                  {"_tempered": confidence_weighted(c, lo, hi)}, base)
                 for c, lo, hi in ((0.0103, 0.01, 0.5), (0.0103, 0.02, 0.3), (0.02, 0.01, 0.5))]
    print(f"{sum(len(r.used) for r in validation)} validation frames, "
          f"{len(test[0].used)} test frames, {args.filter_seeds} filter seeds each")
    print("| variant | validation R@100 m | validation median m | test R@100 m | test median m |")
    print("|---|---:|---:|---:|---:|")
    for name, methods, config in variants:
        for attribute, method in methods.items():
            setattr(fusion.CellFilter, attribute, method)
        try:
            v100, vmed = fusion_grid.score(validation, config, args.filter_seeds)
            t100, tmed = fusion_grid.score(test, config, args.filter_seeds)
        finally:
            fusion.CellFilter.predict = SHIPPED_PREDICT
            fusion.CellFilter._velocities = SHIPPED_VELOCITIES
            fusion.CellFilter._tempered = SHIPPED_TEMPERED
        print(f"| {name} | {v100:.1%} | {vmed:.1f} | {t100:.1%} | {tmed:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
