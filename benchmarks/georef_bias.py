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
The map's georeferencing bias in the filter: counted per fix (before) or once (now).

Why synthetic: the bias is one offset of the whole map, so one flight over one map is one
draw of it; consistency needs many draws. Each trial draws the map's offset b ~ N(0, s^2 I)
and flies test_fusion.py's 2.5 km tree (simulated zoom steps, right 60 % of the time), 60
frames at 1 Hz, random walk; from frame 10 every frame brings a refined fix at truth + b +
N(0, 0.6^2 I) (the registration's error; the demo same-day accepted median is 0.7 m) with
covariance 0.6^2 I + s^2 I, as refinement publishes it. Scored against the true positions
from frame 20: the fused FIXes' mean NEES (2-D ideal 2), the share inside their 1-sigma
ellipse (ideal 68.3 %) and their median 1-sigma. "before": the filter takes the widened
covariance and publishes its belief (the code before this change, reproduced by fixes that
do not say what they hold); "now": the registration's covariance in, s^2 added once out.
Measured, never asserted. Usage::

    PYTHONPATH=. python benchmarks/georef_bias.py [--trials 40] [--sigmas 0 4 15.8]
"""
from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np

from jzi_ros.geo import CellTree
from jzi_ros.inference.bench_filter import simulated_steps
from jzi_ros.inference.fix import Fix, FixStatus
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.measurement import Measurement
from jzi_ros.inference.motion import OnlineFusion
from jzi_ros.inference.posterior import nees_2d

TREE = CellTree(45.0, 7.0, 2500.0, grid=4, depth=3)
REGISTRATION_SIGMA_M = 0.6


def trial(seed: int, s: float, now: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return the scored fused FIXes' errors ``[N, 2]`` and covariances ``[N, 2, 2]``."""
    rng = np.random.default_rng(seed)
    bias = rng.normal(0.0, s, 2) if s else np.zeros(2)
    online = OnlineFusion(TREE, FusionConfig(seed=seed), georef_sigma_m=s if now else 0.0)
    position, heading = np.array([-700.0, -500.0]), 0.6
    errors, covs = [], []
    for i in range(60):
        heading += rng.normal(0, 0.03)
        position = position + 15.0 * np.array([math.cos(heading), math.sin(heading)])
        steps = simulated_steps(TREE, *position, rng.uniform() < 0.6, rng)
        single = None
        if i >= 10:
            east, north = position + bias + rng.normal(0, REGISTRATION_SIGMA_M, 2)
            lat, lon = TREE.to_latlon(east, north)
            cov = np.diag([REGISTRATION_SIGMA_M ** 2 + s * s] * 2 + [9.0])
            single = Fix(FixStatus.FIX, float(lat), float(lon), 0.0, cov, 0.9, float(east),
                         float(north), refined=True, georef_sigma_m=s)
            if not now:  # the fix as the filter read it before: its covariance as published
                single = dataclasses.replace(single, georef_sigma_m=0.0)
        fix = online.fuse(10**18 + i * 10**9, Measurement.from_steps(TREE, steps), 0.0, 100.0,
                          single)
        if i >= 20 and fix.ok:
            errors.append((fix.east_m - position[0], fix.north_m - position[1]))
            covs.append(fix.covariance_enu[:2, :2])
    return np.array(errors).reshape(-1, 2), np.array(covs).reshape(-1, 2, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 4.0, 15.8])
    args = parser.parse_args()
    print("| map georef_sigma_m | filter | fused FIXes | mean NEES | inside 1-sigma | "
          "median 1-sigma | median error |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for s in args.sigmas:
        for now in (False, True):
            runs = [trial(seed, s, now) for seed in range(args.trials)]
            errors = np.concatenate([e for e, _ in runs])
            covs = np.concatenate([c for _, c in runs])
            nees = nees_2d(errors, covs)
            sigma = np.sqrt(np.linalg.eigvalsh(covs)[:, -1])
            print(f"| {s:g} m | {'now (once)' if now else 'before (per fix)'} | {len(nees)} | "
                  f"{nees.mean():.2f} | {np.mean(nees <= 2.30) * 100:.1f} % | "
                  f"{np.median(sigma):.2f} m | {np.median(np.hypot(*errors.T)):.2f} m |")


if __name__ == "__main__":
    main()
