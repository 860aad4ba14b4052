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
Ground truth from a NavSatFix topic, interpolated to camera stamps in the map's metric frame.

Rule for one image stamp t (``tolerance`` = --gt-tolerance):
- the valid fixes just before and just after t are at most 2 x tolerance apart: linear
  interpolation between them in the map's local East/North frame (metres, so a straight segment
  really is straight; lat/lon interpolation would bend it). The nearer one is then within the
  tolerance, and 1 Hz GNSS is interpolated with the default 0.5 s;
- otherwise the nearer of the two if it lies within the tolerance (ends of the track, a GT
  dropout on one side);
- otherwise no ground truth: the frame is skipped with that reason.
Only fixes with ``status.status >= STATUS_FIX`` (0) and finite latitude/longitude count.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.evaluation.bags import deserialize, iter_topic, stamp_ns
from jzi_ros.geo import CellTree


@dataclass(frozen=True)
class GtSample:
    """Ground truth at one image stamp."""

    latitude: float
    longitude: float
    east_m: float
    north_m: float
    interpolated: bool  # False: the nearest fix was taken as is


@dataclass(frozen=True)
class GroundTruth:
    """Valid GT fixes sorted by header stamp, with their local-frame coordinates."""

    topic: str
    tree: CellTree  # the map's tree: east_m/north_m are in its local frame
    stamps_ns: np.ndarray  # int64 [M], strictly increasing
    latitude: np.ndarray  # float64 [M]
    longitude: np.ndarray
    east_m: np.ndarray
    north_m: np.ndarray
    counts: dict[str, int]  # messages, used, no_fix, corrupt, non_finite, duplicate_stamp

    @property
    def count(self) -> int:
        return int(self.stamps_ns.size)

    def lookup(self, stamp: int, tolerance_s: float) -> GtSample | str:
        """Return the GT at ``stamp`` (ns), or the reason there is none (see the module rule)."""
        stamps, tol = self.stamps_ns, int(round(tolerance_s * 1e9))
        i = int(np.searchsorted(stamps, stamp, side="left"))
        if i < stamps.size and stamps[i] == stamp:
            return self._sample(i, i, 0.0)
        before = i - 1 if i > 0 else None
        after = i if i < stamps.size else None
        gap_before = stamp - int(stamps[before]) if before is not None else None
        gap_after = int(stamps[after]) - stamp if after is not None else None
        if gap_before is not None and gap_after is not None and gap_before + gap_after <= 2 * tol:
            return self._sample(before, after, gap_before / (gap_before + gap_after))
        near = [(gap, idx) for gap, idx in ((gap_before, before), (gap_after, after))
                if gap is not None and gap <= tol]
        if near:
            idx = min(near)[1]
            return self._sample(idx, idx, 0.0)
        parts = [f"{gap / 1e9:.3f} s {side}" for gap, side in
                 ((gap_before, "before"), (gap_after, "after")) if gap is not None]
        return (f"no ground-truth fix within {tolerance_s:g} s (nearest: "
                f"{' / '.join(parts)})")

    def _sample(self, i: int, j: int, weight: float) -> GtSample:
        east = float(self.east_m[i] + weight * (self.east_m[j] - self.east_m[i]))
        north = float(self.north_m[i] + weight * (self.north_m[j] - self.north_m[i]))
        if i == j:  # exact fix: keep its own lat/lon rather than a projection round trip
            return GtSample(float(self.latitude[i]), float(self.longitude[i]), east, north, False)
        lat, lon = self.tree.to_latlon(east, north)
        return GtSample(float(lat), float(lon), east, north, True)

    def span_s(self) -> tuple[float, float]:
        return float(self.stamps_ns[0]) / 1e9, float(self.stamps_ns[-1]) / 1e9


def read_ground_truth(reader: Any, bag: Path, topic: str, tree: CellTree) -> GroundTruth:
    """
    Every valid fix on ``topic``, sorted by header stamp, projected into ``tree``'s frame.

    JziError when no usable fix remains, or when the whole track lies outside the map's root
    square (the bag and the map do not belong together).
    """
    counts = {"messages": 0, "used": 0, "no_fix": 0, "corrupt": 0, "non_finite": 0,
              "duplicate_stamp": 0}
    stamps, lats, lons = [], [], []
    for _, _, raw, msgtype in iter_topic(reader, bag, topic):
        counts["messages"] += 1
        try:
            msg = deserialize(reader, raw, msgtype)
            status, lat, lon = int(msg.status.status), float(msg.latitude), float(msg.longitude)
            stamp = stamp_ns(msg)
        except (ValueError, AttributeError):
            counts["corrupt"] += 1
            continue
        if status < 0:
            counts["no_fix"] += 1
        elif not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
            counts["non_finite"] += 1
        else:
            stamps.append(stamp)
            lats.append(lat)
            lons.append(lon)
    if not stamps:
        raise JziError(f"bag {bag}: ground-truth topic {topic} has no usable fix "
                       f"({counts['messages']} messages: {counts['no_fix']} with status NO_FIX, "
                       f"{counts['corrupt']} corrupt, {counts['non_finite']} non-finite); "
                       "expected NavSatFix messages with status >= STATUS_FIX (0)")
    stamps_a = np.asarray(stamps, np.int64)
    order = np.argsort(stamps_a, kind="stable")
    stamps_a = stamps_a[order]
    unique = np.concatenate([[True], np.diff(stamps_a) > 0])  # first fix of equal stamps wins
    counts["duplicate_stamp"] = int((~unique).sum())
    index = order[unique]
    lat_a, lon_a = np.asarray(lats)[index], np.asarray(lons)[index]
    east, north = (np.asarray(v, np.float64) for v in tree.to_local(lat_a, lon_a))
    counts["used"] = int(index.size)
    half = tree.size_m / 2
    inside = (np.abs(east) <= half) & (np.abs(north) <= half)
    if not inside.any():
        distance = float(np.min(np.hypot(east, north))) / 1000
        raise JziError(
            f"bag {bag}: ground truth on {topic} (around {np.median(lat_a):.6f}, "
            f"{np.median(lon_a):.6f}) lies entirely outside the map's root square (centre "
            f"{tree.center_lat:.6f}, {tree.center_lon:.6f}, side {tree.size_m:.0f} m; nearest "
            f"fix {distance:.1f} km from the centre): is this the right map for the bag?")
    return GroundTruth(topic, tree, stamps_a[unique], lat_a, lon_a, east, north, counts)
