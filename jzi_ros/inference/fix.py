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

"""``Fix``: the one result type of the localizer, read by the ROS node, replay and the CLI."""
from __future__ import annotations

from dataclasses import dataclass, field
import enum
import math

import numpy as np

from jzi_ros.errors import JziError


class FixStatus(enum.IntEnum):
    """Same numbers as sensor_msgs/NavSatStatus.status."""

    NO_FIX = -1
    FIX = 0


@dataclass(frozen=True)
class Hypothesis:
    """One candidate terminal cell (a beam entry)."""

    path: tuple[int, ...]
    probability: float  # normalised over the returned hypotheses
    log_prob: float  # the model's path log-probability (sum over steps)
    east_m: float  # cell centre in the map's local frame (metres from the root centre)
    north_m: float
    latitude: float
    longitude: float


@dataclass(frozen=True)
class Fix:
    """A position estimate. Every number is finite: failures are NO_FIX with a ``reason``."""

    status: FixStatus
    latitude: float
    longitude: float
    altitude: float
    covariance_enu: np.ndarray  # 3x3, metres^2, East-North-Up
    confidence: float  # 0..1, higher is surer
    east_m: float = 0.0  # estimate in the map's local frame
    north_m: float = 0.0
    hypotheses: tuple[Hypothesis, ...] = ()
    reason: str = ""  # why NO_FIX (empty for FIX)
    timings_ms: dict[str, float] = field(default_factory=dict)
    refined: bool = False  # position from geometric refinement (jzi_ros.inference.refine)
    refinement: str = ""  # what refinement did, or why it kept the zoom's fix

    def __post_init__(self) -> None:
        cov = np.array(self.covariance_enu, dtype=np.float64).reshape(3, 3)
        object.__setattr__(self, "covariance_enu", cov)
        object.__setattr__(self, "status", FixStatus(self.status))
        numbers = {"latitude": self.latitude, "longitude": self.longitude,
                   "altitude": self.altitude, "confidence": self.confidence,
                   "east_m": self.east_m, "north_m": self.north_m}
        bad = {k: v for k, v in numbers.items() if not math.isfinite(float(v))}
        c = cov.tolist()  # nine numbers: plain Python checks beat numpy's per-call overhead
        flat = c[0] + c[1] + c[2]
        if bad or not all(map(math.isfinite, flat)):
            raise JziError(f"Fix: non-finite values {bad or 'in covariance_enu'}; "
                           "build a Fix.no_fix(...) instead")
        atol = 1e-6 * max(1.0, max(map(abs, flat)))
        if any(abs(c[i][j] - c[j][i]) > atol + 1e-5 * abs(c[j][i])  # np.allclose(cov, cov.T)
               for i, j in ((0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1))):
            raise JziError("Fix: covariance_enu must be symmetric")
        if any(c[i][i] <= 0 for i in range(3)):
            raise JziError(f"Fix: covariance_enu diagonal must be > 0, got {np.diag(cov)}")

    @property
    def ok(self) -> bool:
        return self.status == FixStatus.FIX

    @property
    def sigma_en_m(self) -> tuple[float, float]:
        return math.sqrt(self.covariance_enu[0, 0]), math.sqrt(self.covariance_enu[1, 1])

    @classmethod
    def no_fix(cls, reason: str, latitude: float, longitude: float, altitude: float,
               variance_m2: float, timings_ms: dict[str, float] | None = None,
               hypotheses: tuple[Hypothesis, ...] = (), confidence: float = 0.0,
               east_m: float = 0.0, north_m: float = 0.0) -> "Fix":
        """
        Return an explicit no-fix.

        Finite placeholder position (e.g. the map centre) with a huge covariance, so nothing
        downstream ever sees NaN.
        """
        return cls(FixStatus.NO_FIX, latitude, longitude, altitude,
                   np.diag([variance_m2, variance_m2, variance_m2]), confidence, east_m,
                   north_m, tuple(hypotheses), reason, dict(timings_ms or {}))
