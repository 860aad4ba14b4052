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

"""A drone flight over the demo world: smooth path, camera poses and frame stamps."""
from __future__ import annotations

from dataclasses import asdict, dataclass
import math

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.training.camera import CameraModel, CameraPose

START_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z: a fixed, plausible bag time


@dataclass(frozen=True)
class FlightSpec:
    """The demo flight: ``frames`` images at ``rate_hz`` while cruising at ``speed_mps``."""

    frames: int = 200
    rate_hz: float = 1.0
    speed_mps: float = 18.0
    altitude_m: tuple[float, float] = (220.0, 290.0)
    pitch_deg: tuple[float, float] = (84.0, 90.0)
    hfov_deg: float = 70.0
    width: int = 320
    height: int = 240
    edge_margin_m: float = 200.0  # the path turns back before getting this close to the edge
    # "north": a yaw-stabilised gimbal keeps the image top north (+- yaw_jitter_deg), as mapping
    # drones fly; "track": the camera looks along the flight direction
    yaw_mode: str = "north"
    yaw_jitter_deg: float = 8.0

    def __post_init__(self) -> None:
        if self.yaw_mode not in ("north", "track"):
            raise JziError(f"flight: yaw_mode must be 'north' or 'track', got {self.yaw_mode!r}")
        if self.frames < 1 or self.rate_hz <= 0 or self.speed_mps < 0:
            raise JziError(f"flight: need frames >= 1, rate_hz > 0, speed_mps >= 0, got "
                           f"{self.frames}, {self.rate_hz}, {self.speed_mps}")

    @property
    def camera(self) -> CameraModel:
        return CameraModel(self.width, self.height, self.hfov_deg)

    def to_dict(self) -> dict:
        return asdict(self)


def fly(rng: np.random.Generator, size_m: float, spec: FlightSpec
        ) -> tuple[list[CameraPose], np.ndarray]:
    """
    Camera poses and header stamps (ns) of a flight inside a ``size_m`` root square.

    The path wanders with a smoothly varying turn rate and steers back towards the centre
    when it nears the edge; the camera is held north-up (or looks along the track), its pitch
    and altitude drifting slowly, as a survey drone's would.
    """
    half = size_m / 2
    margin = min(spec.edge_margin_m, 0.3 * half)
    dt = 1.0 / spec.rate_hz
    pos = rng.uniform(-0.5, 0.5, 2) * (half - margin)
    heading = rng.uniform(0, 2 * math.pi)  # radians, clockwise from north
    turn = 0.0
    alt_lo, alt_hi = spec.altitude_m
    pitch_lo, pitch_hi = spec.pitch_deg
    phase_a, phase_p = rng.uniform(0, 2 * math.pi, 2)
    poses = []
    for i in range(spec.frames):
        t = i * dt
        altitude = alt_lo + (alt_hi - alt_lo) * (0.5 + 0.5 * math.sin(phase_a + t / 40))
        pitch = pitch_lo + (pitch_hi - pitch_lo) * (0.5 + 0.5 * math.sin(phase_p + t / 25))
        base = math.degrees(heading) if spec.yaw_mode == "track" else 0.0
        look = base + float(np.clip(rng.normal(0, spec.yaw_jitter_deg / 2),
                                    -spec.yaw_jitter_deg, spec.yaw_jitter_deg))
        poses.append(CameraPose(float(pos[0]), float(pos[1]), altitude, look % 360, pitch))
        turn = 0.85 * turn + rng.normal(0, 0.012)
        ahead = pos + spec.speed_mps * dt * 8 * np.array([math.sin(heading), math.cos(heading)])
        if np.any(np.abs(ahead) > half - margin):
            # steer towards the centre, at most 20 degrees per frame
            wanted = math.atan2(-pos[0], -pos[1])
            delta = (wanted - heading + math.pi) % (2 * math.pi) - math.pi
            turn = float(np.clip(delta, -0.35, 0.35))
        heading += turn
        pos = pos + spec.speed_mps * dt * np.array([math.sin(heading), math.cos(heading)])
        pos = np.clip(pos, -half + 1.0, half - 1.0)
    stamps = START_NS + np.round(np.arange(spec.frames) * dt * 1e9).astype(np.int64)
    return poses, stamps
