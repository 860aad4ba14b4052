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
The temporal filter's settings (:class:`FusionConfig`), checked once where they are made.

Every field is a ROS parameter ``fusion.<field>`` of the node, a key of ``--fusion-config``
YAML files, and what ``jzi replay --fit-fusion`` fits; docs/fusion.md says what each does and
how the defaults were fitted.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any

from jzi_ros.errors import JziError

KERNELS = ("auto", "numpy", "numba")  # FusionConfig.kernel


@dataclass
class FusionConfig:
    """Filter parameters (ROS parameters ``fusion.*`` map 1:1 onto it)."""

    particles: int = 2048
    # Defaults of likelihood_exponent, proposal_fraction, accel_sigma_mps2, fix_mode_mass,
    # fix_sigma_m and both covariance scales: fitted on three validation flights of the demo
    # world (seeds 1-3, not the demo's seed 0) by `benchmarks/demo_recipe.py fit-fusion`
    # (docs/fusion.md); refit for another model/map with `jzi replay --fusion --fit-fusion`
    # on a validation bag
    likelihood_exponent: float = 0.2  # tempering of each frame's likelihood, 1: independent
    uniform_weight: float = 0.05  # share of each frame's likelihood spread over the whole map
    proposal_fraction: float = 0.05  # share of particles drawn from each frame's measurement
    anywhere_prob: float = 0.01  # prior chance per frame of being anywhere (unmodelled moves)
    max_speed_mps: float = 25.0  # random walk (no odometry): the fastest a robot moves
    accel_sigma_mps2: float = 4.0  # random walk: 1-sigma change of velocity per second
    odom_noise_fraction: float = 0.1  # odometry: 1-sigma per axis, fraction of the distance
    odom_noise_mps: float = 1.0  # odometry: plus this 1-sigma per axis per second
    # odometry of unknown scale (visual odometry: its height is a guess): each particle
    # carries a scale of the displacements, starting at 1 and changing by this relative
    # 1-sigma per odometry step (bounded to [0.5, 2]), so the frames pick the right one.
    # 0: displacements are taken at their scale (no such state; wheel odometry)
    odom_scale_sigma: float = 0.0
    # visual odometry's displacements (--visual-odometry, fusion.visual_odometry) take these
    # instead of the three odom_* above: a wrong height guess scales every step the same way,
    # so more noise and a scale state (fitted on the demo's validation flights, docs/fusion.md;
    # `jzi replay --visual-odometry --fit-fusion` refits them on a validation bag)
    visual_noise_fraction: float = 0.15
    visual_noise_mps: float = 1.0
    visual_scale_sigma: float = 0.02
    max_gap_s: float = 10.0  # a longer gap between frames restarts the filter
    reset_nats: float = 4.0  # CUSUM threshold of the kidnap test (log-likelihood ratio)
    mode_radius_m: float = 150.0  # particles this close to a peak form one mode
    fix_mode_mass: float = 0.5  # FIX once the heaviest mode holds this share of the belief
    fix_sigma_m: float = 250.0  # ... and its 1-sigma (major axis) is below this
    sigma_floor_m: float = 5.0  # minimum 1-sigma of the published covariance
    covariance_scale: float = 0.478  # multiplies the belief's covariance (fitted, see above)
    odom_covariance_scale: float = 1.0  # the same after an odometry step (fitted apart)
    seed: int = 0  # random stream of the filter (replays are reproducible)
    # prior-seeded zoom: while the prior is confident, each frame's beam also expands the cells
    # it supports (CellFilter.seed_cells; torch backend). Off: measured on the demo flight,
    # docs/fusion.md "Prior-seeded zoom"
    seed_beam: bool = False
    # refined fixes (PointMeasurement): their 1-sigma in the filter is at least this, so the
    # particles do not collapse onto one point; refined_sigma_floor_m and
    # refined_proposal_fraction were chosen on the same-day validation flights (seeds 1-3) by
    # `benchmarks/refined_floor.py` (docs/fusion.md "Refined fixes in the filter")
    refined_sigma_floor_m: float = 2.0
    # share of a refined fix's likelihood spread over the whole map: with anywhere_prob 0.01
    # one fix far from a confident belief takes 0.01 x 0.8 / (0.99 x 0.2) = 4 % of it, under
    # the 5 % of a reported mode; a second fix at the same place moves the belief there
    refined_outlier_prob: float = 0.2
    refined_proposal_fraction: float = 0.05  # share of particles drawn from a refined fix
    # the per-frame step: "numba" (compiled, jzi_ros.inference.fusion_kernel; needs the
    # optional numba package), "numpy" (the reference), "auto": numba when importable. Same
    # random streams, the same fixes (docs/fusion.md "Filter cost")
    kernel: str = "auto"

    def __post_init__(self) -> None:
        if int(self.particles) != self.particles or self.particles < 16:
            raise JziError(f"fusion.particles must be an integer >= 16, got "
                           f"{self.particles!r}")
        checks = [
            ("likelihood_exponent", 0 < self.likelihood_exponent <= 1, "in (0, 1]"),
            ("uniform_weight", 0 <= self.uniform_weight < 1, "in [0, 1)"),
            ("proposal_fraction", 0 <= self.proposal_fraction < 1, "in [0, 1)"),
            ("anywhere_prob", 0 < self.anywhere_prob < 1, "in (0, 1)"),
            ("max_speed_mps", self.max_speed_mps > 0, "> 0 m/s"),
            ("accel_sigma_mps2", self.accel_sigma_mps2 > 0, "> 0 m/s^2"),
            ("odom_noise_fraction", self.odom_noise_fraction >= 0, ">= 0"),
            ("odom_noise_mps", self.odom_noise_mps >= 0, ">= 0 m/s"),
            ("odom_scale_sigma", 0 <= self.odom_scale_sigma < 0.5, "in [0, 0.5)"),
            ("visual_noise_fraction", self.visual_noise_fraction >= 0, ">= 0"),
            ("visual_noise_mps", self.visual_noise_mps >= 0, ">= 0 m/s"),
            ("visual_scale_sigma", 0 <= self.visual_scale_sigma < 0.5, "in [0, 0.5)"),
            ("max_gap_s", self.max_gap_s > 0, "> 0 s"),
            ("reset_nats", self.reset_nats > 0, "> 0"),
            ("mode_radius_m", self.mode_radius_m > 0, "> 0 m"),
            ("fix_mode_mass", 0 < self.fix_mode_mass <= 1, "in (0, 1]"),
            ("fix_sigma_m", self.fix_sigma_m > 0, "> 0 m"),
            ("sigma_floor_m", self.sigma_floor_m > 0, "> 0 m"),
            ("covariance_scale", self.covariance_scale > 0, "> 0"),
            ("odom_covariance_scale", self.odom_covariance_scale > 0, "> 0"),
            ("refined_sigma_floor_m", self.refined_sigma_floor_m > 0, "> 0 m"),
            ("refined_outlier_prob", 0 < self.refined_outlier_prob < 1, "in (0, 1)"),
            ("refined_proposal_fraction", 0 < self.refined_proposal_fraction < 1
             - self.proposal_fraction, "in (0, 1 - proposal_fraction)"),
        ]
        for name, ok, expected in checks:
            value = getattr(self, name)
            if not (math.isfinite(float(value)) and ok):
                raise JziError(f"fusion.{name} must be {expected}, got {value!r}")
        self.particles = int(self.particles)
        if self.kernel not in KERNELS:
            raise JziError(f"fusion.kernel must be one of {', '.join(KERNELS)}, got "
                           f"{self.kernel!r}")
        if not isinstance(self.seed_beam, bool):
            raise JziError(f"fusion.seed_beam must be true or false, got {self.seed_beam!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FusionConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise JziError(f"fusion config: unknown key(s) {unknown}; expected some of "
                           f"{sorted(names)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "FusionConfig":
        """Read a YAML mapping of FusionConfig keys (a ``fusion:`` top level is accepted)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise JziError(f"fusion config {path} cannot be read: {err}") from None
        if isinstance(data, dict) and isinstance(data.get("fusion"), dict):
            data = data["fusion"]
        if not isinstance(data, dict):
            raise JziError(f"fusion config {path}: expected a mapping of FusionConfig keys")
        try:
            return cls.from_dict(data)
        except JziError as err:
            raise JziError(f"fusion config {path}: {err}") from None
