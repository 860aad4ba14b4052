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
O(particles x depth), whatever the map size (a depth-5 tree has a million terminal cells; a
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
proportional to the distance, or a random walk bounded by ``max_speed_mps``.

Resets: a time jump backwards (a bag played again) or a gap over ``max_gap_s`` starts over
from the next measurement. Kidnapping is a sequential likelihood-ratio test (CUSUM): each frame
compares how well the filter's prior explains the measurement with how well a uniform prior
would; once the accumulated log-ratio in favour of "anywhere" exceeds ``reset_nats`` the
filter re-draws its particles from the measurement.

Output: the heaviest mode (particles within ``mode_radius_m`` of a density peak): its mean and
covariance as a :class:`~jzi_ros.inference.fix.Fix`, NO_FIX until that mode holds
``fix_mode_mass`` of the belief with a 1-sigma below ``fix_sigma_m``; the modes are the fix's
hypotheses (their number and spread are in :class:`FilterEstimate`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree
from jzi_ros.inference.decode import Seeds
from jzi_ros.inference.fix import Fix, FixStatus, Hypothesis
from jzi_ros.inference.measurement import cell_origin_local, Measurement, terminal_indices_local
from jzi_ros.inference.posterior import apply_scale_and_floor, enu_covariance

MIN_MODE_MASS = 0.05  # lighter clusters are not reported as modes
MAX_MODES = 8


@dataclass
class FusionConfig:
    """Filter parameters (ROS parameters ``fusion.*`` map 1:1 onto it)."""

    particles: int = 2048
    # tempering of each frame's likelihood, 1 = frames independent. Default and
    # covariance_scale: fitted on three validation flights of the demo world (seeds 1-3,
    # not the demo's seed 0) by `benchmarks/demo_recipe.py fit-fusion` (docs/fusion.md);
    # refit for another model/map with `jzi replay --fusion --fit-fusion` on a validation bag
    likelihood_exponent: float = 0.2
    uniform_weight: float = 0.05  # share of each frame's likelihood spread over the whole map
    proposal_fraction: float = 0.1  # share of particles drawn from each frame's measurement
    anywhere_prob: float = 0.01  # prior chance per frame of being anywhere (unmodelled moves)
    max_speed_mps: float = 25.0  # random walk (no odometry): the fastest a robot moves
    accel_sigma_mps2: float = 2.0  # random walk: 1-sigma change of velocity per second
    odom_noise_fraction: float = 0.1  # odometry: 1-sigma per axis, fraction of the distance
    odom_noise_mps: float = 1.0  # odometry: plus this 1-sigma per axis per second
    max_gap_s: float = 10.0  # a longer gap between frames restarts the filter
    reset_nats: float = 4.0  # CUSUM threshold of the kidnap test (log-likelihood ratio)
    mode_radius_m: float = 150.0  # particles this close to a peak form one mode
    fix_mode_mass: float = 0.7  # FIX once the heaviest mode holds this share of the belief
    fix_sigma_m: float = 150.0  # ... and its 1-sigma (major axis) is below this
    sigma_floor_m: float = 5.0  # minimum 1-sigma of the published covariance
    covariance_scale: float = 1.14  # multiplies the belief's covariance (fitted, see above)
    seed: int = 0  # random stream of the filter (replays are reproducible)
    # prior-seeded zoom: while the prior is confident, each frame's beam also expands the cells
    # it supports (CellFilter.seed_cells; torch backend). Off: measured on the demo flight,
    # docs/fusion.md "Prior-seeded zoom"
    seed_beam: bool = False

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
            ("max_gap_s", self.max_gap_s > 0, "> 0 s"),
            ("reset_nats", self.reset_nats > 0, "> 0"),
            ("mode_radius_m", self.mode_radius_m > 0, "> 0 m"),
            ("fix_mode_mass", 0 < self.fix_mode_mass <= 1, "in (0, 1]"),
            ("fix_sigma_m", self.fix_sigma_m > 0, "> 0 m"),
            ("sigma_floor_m", self.sigma_floor_m > 0, "> 0 m"),
            ("covariance_scale", self.covariance_scale > 0, "> 0"),
        ]
        for name, ok, expected in checks:
            value = getattr(self, name)
            if not (math.isfinite(float(value)) and ok):
                raise JziError(f"fusion.{name} must be {expected}, got {value!r}")
        self.particles = int(self.particles)
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


@dataclass(frozen=True)
class Mode:
    """One cluster of the belief: its share, mean and covariance (East/North metres)."""

    mass: float
    mean_en: np.ndarray
    cov_en: np.ndarray


@dataclass(frozen=True)
class FilterEstimate:
    """What the filter believes after a frame."""

    converged: bool
    modes: tuple[Mode, ...]  # heaviest first
    mean_en: np.ndarray  # the published position: the heaviest mode's mean
    cov_en: np.ndarray  # the modes' second moment about it
    event: str = ""  # "init", "reset: ...", "kidnap" on the frame that restarted the filter
    llr_cusum: float = 0.0

    @property
    def spread_m(self) -> float:
        """Largest distance between two reported modes (0 for one mode)."""
        centers = np.array([m.mean_en for m in self.modes]).reshape(-1, 2)
        if len(centers) < 2:
            return 0.0
        return float(np.hypot(*(centers[:, None] - centers[None]).transpose(2, 0, 1)).max())


class CellFilter:
    """The particle filter. ``step`` once per frame, in stamp order; not thread-safe."""

    def __init__(self, tree: CellTree, config: FusionConfig | None = None) -> None:
        self.tree = tree
        self.config = config or FusionConfig()
        self.rng = np.random.default_rng(self.config.seed)
        self.particles = np.zeros((0, 2))
        self.velocity = np.zeros((0, 2))  # random walk: each particle's own velocity, m/s
        self.weights = np.zeros(0)
        self.last_stamp_ns: int | None = None
        self.cusum = 0.0
        self.half = tree.size_m / 2

    @property
    def initialised(self) -> bool:
        return self.last_stamp_ns is not None

    def reset(self) -> None:
        """Forget everything; the next measurement initialises the filter."""
        self.particles = np.zeros((0, 2))
        self.velocity = np.zeros((0, 2))
        self.weights = np.zeros(0)
        self.last_stamp_ns = None
        self.cusum = 0.0

    # --- measurement -----------------------------------------------------------------------
    def _tempered(self, measurement: Measurement, east, north) -> np.ndarray:
        u, area = self.config.uniform_weight, self.tree.size_m ** 2
        density = (1 - u) * measurement.densities(self.tree, east, north) + u / area
        return density ** self.config.likelihood_exponent

    def _tempered_pieces(self, measurement: Measurement) -> tuple[np.ndarray, float, float]:
        """Per-piece tempered mass, the outside-pieces tempered mass, and their total."""
        u, area = self.config.uniform_weight, self.tree.size_m ** 2
        alpha = self.config.likelihood_exponent
        floor = (1 - u) * measurement.background / area + u / area
        sides = self.tree.size_m / self.tree.grid ** measurement.levels.astype(np.float64)
        areas = sides ** 2
        piece = areas * ((1 - u) * measurement.mass / areas + floor) ** alpha
        outside = max(0.0, area - float(areas.sum())) * floor ** alpha
        return piece, outside, float(piece.sum() + outside)

    def _draw(self, measurement: Measurement, count: int,
              pieces: tuple[np.ndarray, float, float] | None = None) -> np.ndarray:
        """Sample positions from the tempered measurement (the belief after a restart)."""
        piece, outside, total = pieces or self._tempered_pieces(measurement)
        cumulative = np.cumsum(np.append(piece, outside))
        choice = np.searchsorted(cumulative, self.rng.uniform(0, total, count), side="right")
        np.minimum(choice, len(cumulative) - 1, out=choice)
        in_piece = choice < len(piece)
        out = self.rng.uniform(-self.half, self.half, (count, 2))
        chosen = choice[in_piece]
        west, north, side = cell_origin_local(self.tree, measurement.levels[chosen],
                                              measurement.indices[chosen])
        unit = self.rng.uniform(0, 1, (len(chosen), 2))
        out[in_piece, 0] = west + unit[:, 0] * side
        out[in_piece, 1] = north - unit[:, 1] * side
        return out

    def _initialise(self, measurement: Measurement, stamp_ns: int,
                    pieces: tuple[np.ndarray, float, float] | None = None) -> None:
        n = self.config.particles
        self.particles = self._draw(measurement, n, pieces)
        self.velocity = self._velocities(n)
        self.weights = np.full(n, 1.0 / n)
        self.last_stamp_ns = int(stamp_ns)
        self.cusum = 0.0

    # --- motion ----------------------------------------------------------------------------
    def _velocities(self, count: int) -> np.ndarray:
        """Velocities uniform in the disc of radius max_speed_mps (nothing known yet)."""
        radius = self.config.max_speed_mps * np.sqrt(self.rng.uniform(0, 1, count))
        angle = self.rng.uniform(0, 2 * np.pi, count)
        return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)

    def predict(self, dt_s: float, displacement_en: np.ndarray | None) -> None:
        """
        Move the particles by ``dt_s`` seconds: odometry displacement + noise, or random walk.

        The random walk is on each particle's velocity (bounded by max_speed_mps), so a
        robot cruising in one direction is followed, not trailed by a cloud that stays put.
        """
        n = len(self.particles)
        if displacement_en is None:
            cfg = self.config
            velocity = self.velocity + self.rng.normal(0, cfg.accel_sigma_mps2 * dt_s, (n, 2))
            speed = np.maximum(np.hypot(*velocity.T), 1e-9)
            self.velocity = velocity * np.minimum(1.0, cfg.max_speed_mps / speed)[:, None]
            step = self.velocity * dt_s
        else:
            d = np.asarray(displacement_en, np.float64).reshape(2)
            sigma = (self.config.odom_noise_fraction * float(np.hypot(*d))
                     + self.config.odom_noise_mps * dt_s)
            step = d + self.rng.normal(0, max(sigma, 1e-6), (n, 2))
            if dt_s > 0:  # should odometry drop out, the random walk carries on from here
                self.velocity = step / dt_s
        self.particles = np.clip(self.particles + step, -self.half, self.half)

    # --- one frame -------------------------------------------------------------------------
    def step(self, stamp_ns: int, measurement: Measurement | None,
             displacement_en: np.ndarray | None = None) -> FilterEstimate:
        """
        Fold in one frame (stamp in ns) and return the estimate.

        ``measurement`` None (the frame gave nothing) only propagates. ``displacement_en``:
        odometry East/North metres since the previous frame, None for the random walk.
        """
        event = ""
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
            self._initialise(measurement, stamp_ns)
            return self._estimate(event or "init")
        dt = (int(stamp_ns) - self.last_stamp_ns) / 1e9
        self.last_stamp_ns = int(stamp_ns)
        self.predict(dt, displacement_en)
        if measurement is None:
            return self._estimate("")
        pieces = self._tempered_pieces(measurement)
        n = len(self.particles)
        drawn = self._draw(measurement, int(round(self.config.proposal_fraction * n)), pieces)
        points = np.concatenate([self.particles, drawn])
        likelihood = self._tempered(measurement, points[:, 0], points[:, 1])
        z_filter = float(self.weights @ likelihood[:n])
        z_uniform = pieces[2] / self.tree.size_m ** 2
        # log-likelihood ratio "anywhere" vs "the filter's prior", in untempered nats (the
        # tempered ratio divided by the exponent), so reset_nats does not depend on it
        llr = (math.log(z_uniform) - math.log(max(z_filter, 1e-300)))
        self.cusum = max(0.0, self.cusum + llr / self.config.likelihood_exponent)
        if self.cusum > self.config.reset_nats:
            self._initialise(measurement, stamp_ns, pieces)
            return self._estimate("kidnap: frames keep disagreeing with the filter")
        self._mixture_update(drawn, likelihood, pieces[2])
        return self._estimate(event)

    def _bin_keys(self, points: np.ndarray, side: float) -> np.ndarray:
        width = int(math.ceil(self.tree.size_m / side))
        cells = np.clip(((points + self.half) / side).astype(np.int64), 0, width - 1)
        return cells[:, 0] * width + cells[:, 1]

    def _mixture_update(self, drawn: np.ndarray, likelihood: np.ndarray, total: float) -> None:
        """
        Sample the next particle set from a mixture and weight it by importance.

        Proposal: (1 - phi) x the predicted cloud (resampled by weight) + phi x the tempered
        measurement q (``drawn``). Target: likelihood x prior, the prior being (1 - eps) x the
        cloud's histogram density + eps uniform. So a place the cloud has lost is re-found at
        the rate Bayes allows, not only when a random walk happens to drift there.
        ``likelihood``: tempered, of the predicted particles then of ``drawn``.
        """
        cfg, n, m = self.config, len(self.particles), len(drawn)
        side = max(self.tree.size_m / 64, self.tree.cell_side(self.tree.depth))
        width = int(math.ceil(self.tree.size_m / side))
        keys = self._bin_keys(np.concatenate([self.particles, drawn]), side)
        hist = np.bincount(keys[:n], weights=self.weights, minlength=width * width)
        positions = (self.rng.uniform() + np.arange(n - m)) / (n - m)
        index = np.searchsorted(np.cumsum(self.weights), positions)
        np.minimum(index, n - 1, out=index)
        take = np.concatenate([index, np.arange(n, n + m)])
        area = self.tree.size_m ** 2
        cloud = hist[keys[take]] / side ** 2
        lik = likelihood[take]
        prior = (1 - cfg.anywhere_prob) * cloud + cfg.anywhere_prob / area
        proposal = (1 - cfg.proposal_fraction) * cloud + cfg.proposal_fraction * lik / total
        weights = lik * prior / np.maximum(proposal, 1e-300)
        self.particles = np.concatenate([self.particles[index], drawn])
        self.velocity = np.concatenate([self.velocity[index], self._velocities(m)])
        self.weights = weights / weights.sum()

    # --- output ----------------------------------------------------------------------------
    def _estimate(self, event: str) -> FilterEstimate:
        if not self.initialised:
            zero = np.zeros(2)
            return FilterEstimate(False, (), zero, np.eye(2) * self.tree.size_m ** 2 / 12,
                                  event, 0.0)
        modes = self._modes()
        main = modes[0]
        # second moment of the reported modes about the published position (the heaviest
        # mode's mean): a second mode far away widens it, as the beam spread does per frame;
        # the diffuse rest (each cluster under MIN_MODE_MASS, e.g. the anywhere_prob share)
        # does not, or one per cent of mass 2 km away alone would make a 200 m sigma
        cov = np.zeros((2, 2))
        for mode in modes:
            d = mode.mean_en - main.mean_en
            cov += mode.mass * (mode.cov_en + np.outer(d, d))
        cov /= sum(mode.mass for mode in modes)
        sigma = math.sqrt(float(np.linalg.eigvalsh(cov)[-1]))
        converged = main.mass >= self.config.fix_mode_mass and sigma <= self.config.fix_sigma_m
        return FilterEstimate(converged, modes, main.mean_en, 0.5 * (cov + cov.T), event,
                              self.cusum)

    def _modes(self) -> tuple[Mode, ...]:
        """
        Greedy clustering on weighted bins of half a mode radius.

        The heaviest free bin seeds a mode; the free bins whose centre of mass lies within
        ``mode_radius_m`` of the seed's (twice re-centred) join it; repeat. Works on the
        occupied bins' moments, so it costs O(particles) plus a loop over a few bins.
        """
        radius = self.config.mode_radius_m
        w, x = self.weights, self.particles
        keys = self._bin_keys(x, radius / 2)
        uniq, inverse = np.unique(keys, return_inverse=True)
        # per occupied bin: mass, first and second moments [m, 6]
        we, wn = w * x[:, 0], w * x[:, 1]
        sums = np.stack([np.bincount(inverse, weights=v, minlength=len(uniq)) for v in (
            w, we, wn, we * x[:, 0], we * x[:, 1], wn * x[:, 1])], axis=1)
        mass = sums[:, 0]
        centre = sums[:, 1:3] / np.maximum(mass, 1e-300)[:, None]
        free = np.ones(len(uniq), bool)
        modes = []
        left = 1.0
        while len(modes) < MAX_MODES and left > MIN_MODE_MASS:
            seed = centre[int(np.argmax(np.where(free, mass, -1.0)))]
            for _ in range(2):  # re-centre once on the bins within the radius
                d = centre - seed
                member = free & (np.einsum("ij,ij->i", d, d) <= radius * radius)
                total_moments = sums[member].sum(0)
                seed = total_moments[1:3] / total_moments[0]
            free &= ~member
            total = float(total_moments[0])
            left -= total
            if total < MIN_MODE_MASS and modes:
                break  # seeds come heaviest first: the rest is a diffuse tail, not modes
            xx, xy, yy = total_moments[3:] / total
            cov = np.array([[xx - seed[0] ** 2, xy - seed[0] * seed[1]],
                            [xy - seed[0] * seed[1], yy - seed[1] ** 2]])
            modes.append(Mode(total, seed, cov))
        modes.sort(key=lambda mode: -mode.mass)
        return tuple(modes)

    def fix(self, estimate: FilterEstimate, altitude_m: float, altitude_sigma_m: float,
            timings_ms: dict[str, float] | None = None) -> Fix:
        """Return the estimate as a Fix (heaviest mode's mean; NO_FIX until converged)."""
        tree, cfg = self.tree, self.config
        timings = dict(timings_ms or {})
        if not estimate.modes:
            lat, lon = tree.cell_center(())
            return Fix.no_fix(f"fusion: {estimate.event or 'no measurement yet'}", lat, lon,
                              altitude_m, tree.size_m ** 2 / 12, timings)
        centers = np.array([m.mean_en for m in estimate.modes])
        lats, lons = tree.to_latlon(centers[:, 0], centers[:, 1])
        lats, lons = np.atleast_1d(lats), np.atleast_1d(lons)
        hypotheses = tuple(
            Hypothesis(tree.path_of_local(*np.clip(m.mean_en, -self.half, self.half)),
                       m.mass, math.log(max(m.mass, 1e-300)), float(m.mean_en[0]),
                       float(m.mean_en[1]), float(la), float(lo))
            for m, la, lo in zip(estimate.modes, lats, lons))
        main = estimate.modes[0]
        east, north = float(main.mean_en[0]), float(main.mean_en[1])
        if not estimate.converged:
            reason = (f"fusion: not converged (heaviest of {len(estimate.modes)} modes holds "
                      f"{main.mass:.2f} of the belief)")
            return Fix.no_fix(reason, float(lats[0]), float(lons[0]), altitude_m,
                              tree.size_m ** 2 / 12, timings, hypotheses, main.mass, east, north)
        cov = apply_scale_and_floor(estimate.cov_en, cfg.covariance_scale, cfg.sigma_floor_m)
        return Fix(FixStatus.FIX, float(lats[0]), float(lons[0]), altitude_m,
                   enu_covariance(cov, altitude_sigma_m), main.mass, east, north, hypotheses,
                   "", timings)

    # --- prior-seeded zoom -----------------------------------------------------------------
    def seed_cells(self, stamp_ns: int, displacement_en: np.ndarray | None = None,
                   min_mass: float | None = None) -> Seeds | None:
        """
        Return the cells the prior supports, to seed the zoom of the frame at ``stamp_ns``.

        The prior is the particle cloud moved to ``stamp_ns`` without noise (by the odometry
        displacement, else by each particle's own velocity); the level is the finest whose
        cells are at least ``fix_sigma_m`` wide (the filter's "confident" spread), below the
        terminal level. The seeds are the prior's heaviest cell at that level and its 8
        neighbours (off-map slots -1), heaviest first. None (no seeding) before the filter has
        started, when this frame will restart it (stamp going back, a gap over
        ``max_gap_s``), or while those 9 cells hold less than ``min_mass`` of the belief
        (default ``fix_mode_mass``: as confident as a FIX needs; 0.5 seeded more often and
        made the random-walk filter lock onto wrong cells on the demo flight, docs/fusion.md).
        Reads the filter's state, never changes it (no random draws either).
        """
        tree = self.tree
        if not self.initialised or tree.depth < 2 or not len(self.particles):
            return None
        dt = (int(stamp_ns) - self.last_stamp_ns) / 1e9
        if dt < 0 or dt > self.config.max_gap_s:
            return None
        level = 1
        while level + 1 < tree.depth and tree.cell_side(level + 1) >= self.config.fix_sigma_m:
            level += 1
        step = (self.velocity * dt if displacement_en is None
                else np.asarray(displacement_en, np.float64).reshape(1, 2))
        points = np.clip(self.particles + step, -self.half, self.half)
        n = tree.grid ** level
        side = tree.size_m / n
        col = np.clip(((points[:, 0] + self.half) / side).astype(np.int64), 0, n - 1)
        row = np.clip(((self.half - points[:, 1]) / side).astype(np.int64), 0, n - 1)
        mass = np.bincount(row * n + col, weights=self.weights, minlength=n * n).reshape(n, n)
        top_row, top_col = np.unravel_index(int(np.argmax(mass)), mass.shape)
        rows, cols = np.meshgrid(np.arange(top_row - 1, top_row + 2),
                                 np.arange(top_col - 1, top_col + 2), indexing="ij")
        rows, cols = rows.ravel(), cols.ravel()
        inside = (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
        rows, cols = rows[inside], cols[inside]
        block = mass[rows, cols]
        if block.sum() < (self.config.fix_mode_mass if min_mass is None else min_mass) * (
                mass.sum()):
            return None
        # the level index of a cell: the terminal index of its centre, without the finer digits
        east = -self.half + (cols + 0.5) * side
        north = self.half - (rows + 0.5) * side
        index = terminal_indices_local(tree, east, north) // tree.num_actions ** (
            tree.depth - level)
        cells = np.full(9, -1, np.int64)
        cells[:len(index)] = index[np.argsort(-block, kind="stable")]
        return Seeds(level, cells)
