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

from collections.abc import Sequence
from dataclasses import dataclass, field
import enum
import math
from typing import Callable

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


class LazyHypotheses(Sequence):
    """
    Hypotheses built on first read: a Fix that few readers ask for them need not pay for them.

    The temporal filter publishes one fix per frame; its modes' cells, paths and latitudes
    (a projection each) are built only when something reads ``Fix.hypotheses`` (replay,
    refinement, the CLI), from the values captured at the frame. Reads, compares, pickles and
    deep-copies as the tuple it builds; its length is known without building it.
    """

    __slots__ = ("_count", "_build", "_items")

    def __init__(self, count: int, build: Callable[[], tuple[Hypothesis, ...]]) -> None:
        self._count, self._build, self._items = int(count), build, None

    def _built(self) -> tuple[Hypothesis, ...]:
        if self._items is None:
            self._items = tuple(self._build())
            self._build = None
            if len(self._items) != self._count:
                raise JziError(f"LazyHypotheses: built {len(self._items)} hypotheses, "
                               f"announced {self._count}")
        return self._items

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        return self._built()[index]

    def __iter__(self):
        return iter(self._built())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyHypotheses):
            other = other._built()
        return self._built() == other

    __hash__ = None  # (as a list: compared by value)

    def __repr__(self) -> str:
        return repr(self._built())

    def __reduce__(self):
        return tuple, (self._built(),)

    def __deepcopy__(self, memo: dict) -> tuple[Hypothesis, ...]:
        return self._built()  # (a tuple of frozen dataclasses: nothing to copy)


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
    hypotheses: Sequence[Hypothesis] = ()  # a tuple, or LazyHypotheses (built when read)
    reason: str = ""  # why NO_FIX (empty for FIX)
    timings_ms: dict[str, float] = field(default_factory=dict)
    refined: bool = False  # position from geometric refinement (jzi_ros.inference.refine)
    refinement: str = ""  # what refinement did, or why it kept the zoom's fix
    # the map imagery's georeferencing 1-sigma (metres per axis) whose square covariance_enu
    # holds on East and North (fixes registered against the imagery, the filter's; 0: none)
    georef_sigma_m: float = 0.0

    def __post_init__(self) -> None:
        # plain Python checks (numpy's per-call overhead would cost more than these few
        # numbers), few statements: a fix is made every frame, often right after an encoder
        # pass has evicted the interpreter's caches
        cov = np.array(self.covariance_enu, dtype=np.float64).reshape(3, 3)
        object.__setattr__(self, "covariance_enu", cov)
        if type(self.status) is not FixStatus:
            object.__setattr__(self, "status", FixStatus(self.status))
        (xx, xy, xz), (yx, yy, yz), (zx, zy, zz) = c = cov.tolist()
        flat = c[0] + c[1] + c[2]
        numbers = (self.latitude, self.longitude, self.altitude, self.confidence, self.east_m,
                   self.north_m, self.georef_sigma_m)
        if not (all(map(math.isfinite, map(float, numbers)))
                and all(map(math.isfinite, flat))):
            names = ("latitude", "longitude", "altitude", "confidence", "east_m", "north_m",
                     "georef_sigma_m")
            bad = {k: v for k, v in zip(names, numbers) if not math.isfinite(float(v))}
            raise JziError(f"Fix: non-finite values {bad or 'in covariance_enu'}; "
                           "build a Fix.no_fix(...) instead")
        atol = 1e-6 * max(1.0, *map(abs, flat))
        if (abs(xy - yx) > atol + 1e-5 * abs(yx) or abs(yx - xy) > atol + 1e-5 * abs(xy)
                or abs(xz - zx) > atol + 1e-5 * abs(zx) or abs(zx - xz) > atol + 1e-5 * abs(xz)
                or abs(yz - zy) > atol + 1e-5 * abs(zy)
                or abs(zy - yz) > atol + 1e-5 * abs(yz)):  # np.allclose(cov, cov.T)
            raise JziError("Fix: covariance_enu must be symmetric")
        if xx <= 0 or yy <= 0 or zz <= 0:
            raise JziError(f"Fix: covariance_enu diagonal must be > 0, got {np.diag(cov)}")

    @property
    def ok(self) -> bool:
        return self.status == FixStatus.FIX

    @property
    def sigma_en_m(self) -> tuple[float, float]:
        return math.sqrt(self.covariance_enu[0, 0]), math.sqrt(self.covariance_enu[1, 1])

    @property
    def map_covariance_en(self) -> np.ndarray:
        """
        Return the East/North covariance relative to the map: without ``georef_sigma_m``^2.

        The imagery's offset is one bias shared by every fix from that map; whoever combines
        fixes (the temporal filter) works in the map's frame and adds it once to its result.
        """
        cov = self.covariance_enu[:2, :2]
        return cov - np.eye(2) * self.georef_sigma_m ** 2 if self.georef_sigma_m else cov

    @classmethod
    def no_fix(cls, reason: str, latitude: float, longitude: float, altitude: float,
               variance_m2: float, timings_ms: dict[str, float] | None = None,
               hypotheses: Sequence[Hypothesis] = (), confidence: float = 0.0,
               east_m: float = 0.0, north_m: float = 0.0) -> "Fix":
        """
        Return an explicit no-fix.

        Finite placeholder position (e.g. the map centre) with a huge covariance, so nothing
        downstream ever sees NaN.
        """
        v = variance_m2  # (a nested list: __post_init__ makes the one array)
        return cls(FixStatus.NO_FIX, latitude, longitude, altitude,
                   [[v, 0.0, 0.0], [0.0, v, 0.0], [0.0, 0.0, v]], confidence, east_m,
                   north_m, hypotheses if isinstance(hypotheses, LazyHypotheses)
                   else tuple(hypotheses), reason, dict(timings_ms or {}))
