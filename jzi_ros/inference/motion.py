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
Odometry as the temporal filter's motion: twist + ENU heading -> East/North displacement.

nav_msgs/Odometry carries its twist in the body frame (``child_frame_id``, x forward, y left)
and its pose in ``header.frame_id``. Rotating the twist into East/North needs an
earth-referenced yaw, from one of :data:`jzi_ros.heading.HEADING_SOURCES`: the odometry's own
orientation (when its frame is ENU-aligned), an IMU's orientation, or a fixed yaw. Samples are
held from one message to the next (zero-order hold), which is what an EKF's prediction does
between messages too. ROS-free: the replay and the node fill :class:`OdometryTrack` from
their own messages.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import math

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.heading import body_to_en, compass_deg, HEADING_SOURCES
from jzi_ros.inference.fix import Fix


# a north-up model's frame takes the heading sample nearest its stamp, at most this far off
FRAME_HEADING_MAX_AGE_S = 1.0


@dataclass
class HeadingSeries:
    """ENU yaw samples over time (odometry or IMU orientation), or one fixed yaw."""

    source: str = "odometry"
    fixed_yaw_rad: float = 0.0
    stamps_ns: list[int] = field(default_factory=list)
    yaw_rad: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.source not in HEADING_SOURCES:
            raise JziError(f"heading source must be one of {HEADING_SOURCES}, got "
                           f"{self.source!r}")
        if not math.isfinite(self.fixed_yaw_rad):
            raise JziError(f"fixed heading yaw must be finite, got {self.fixed_yaw_rad!r}")

    def add(self, stamp_ns: int, yaw_rad: float) -> None:
        self.stamps_ns.append(int(stamp_ns))
        self.yaw_rad.append(float(yaw_rad))

    def at(self, stamps_ns: np.ndarray) -> np.ndarray | None:
        """Yaw at each stamp (the last sample at or before it); None when none is known yet."""
        stamps_ns = np.asarray(stamps_ns, np.int64)
        if self.source == "fixed":
            return np.full(stamps_ns.shape, self.fixed_yaw_rad)
        if not self.stamps_ns:
            return None
        times = np.asarray(self.stamps_ns, np.int64)
        order = np.argsort(times, kind="stable")
        index = np.searchsorted(times[order], stamps_ns, side="right") - 1
        return np.asarray(self.yaw_rad)[order][np.maximum(index, 0)]

    def compass_at(self, stamp_ns: int, camera_yaw_rad: float = 0.0,
                   max_age_s: float = FRAME_HEADING_MAX_AGE_S) -> float | None:
        """
        Return a frame's compass heading (degrees clockwise from North), or None.

        The yaw sample nearest ``stamp_ns`` (None when none lies within ``max_age_s``; the fixed
        yaw always), turned by ``camera_yaw_rad`` (the image top's yaw from the body's forward
        axis): what rotates a north-up model's frame, in the node and in replay alike.
        """
        return self.compass_many([stamp_ns], camera_yaw_rad, max_age_s)[0]

    def compass_many(self, stamps_ns, camera_yaw_rad: float = 0.0,
                     max_age_s: float = FRAME_HEADING_MAX_AGE_S) -> list[float | None]:
        """
        :meth:`compass_at` for many frames at once (one sort: a whole bag's IMU is cheap).

        Of two samples equally near, the earlier; of samples with the same stamp, the first.
        """
        queries = np.asarray(stamps_ns, np.int64).reshape(-1)
        if self.source == "fixed":
            return [compass_deg(self.fixed_yaw_rad + camera_yaw_rad)] * queries.size
        if not self.stamps_ns:
            return [None] * queries.size
        times = np.asarray(self.stamps_ns, np.int64)
        order = np.argsort(times, kind="stable")
        ordered = times[order]
        right = np.minimum(np.searchsorted(ordered, queries, side="left"), ordered.size - 1)
        right = np.searchsorted(ordered, ordered[right], side="left")  # first of its stamp
        # the first sample of the stamp just before (or at) each query
        left = np.searchsorted(ordered, ordered[np.maximum(right - 1, 0)], side="left")
        left_gap, right_gap = np.abs(queries - ordered[left]), np.abs(ordered[right] - queries)
        pick = np.where(left_gap <= right_gap, left, right)
        gaps = np.minimum(left_gap, right_gap)
        yaws = np.asarray(self.yaw_rad, np.float64)[order[pick]]
        return [None if gap > max_age_s * 1e9 else compass_deg(float(yaw) + camera_yaw_rad)
                for gap, yaw in zip(gaps, yaws)]


@dataclass
class OdometryTrack:
    """Body-frame twist samples (m/s) with their stamps, integrated between frame stamps."""

    heading: HeadingSeries = field(default_factory=HeadingSeries)
    stamps_ns: list[int] = field(default_factory=list)
    forward_mps: list[float] = field(default_factory=list)
    left_mps: list[float] = field(default_factory=list)
    max_hold_s: float = 2.0  # a sample older than this says nothing about the motion

    def add(self, stamp_ns: int, forward_mps: float, left_mps: float,
            yaw_rad: float | None = None) -> None:
        """Add one twist sample (and, for the odometry heading source, its orientation's yaw)."""
        if not (math.isfinite(forward_mps) and math.isfinite(left_mps)):
            return  # a NaN twist carries no motion information
        self.stamps_ns.append(int(stamp_ns))
        self.forward_mps.append(float(forward_mps))
        self.left_mps.append(float(left_mps))
        if yaw_rad is not None and self.heading.source == "odometry":
            self.heading.add(stamp_ns, yaw_rad)

    def forget_before(self, stamp_ns: int) -> None:
        """Drop samples older than the one in force at ``stamp_ns`` (bounded memory online)."""
        keep = np.flatnonzero(np.asarray(self.stamps_ns, np.int64) <= stamp_ns)
        if keep.size <= 1:
            return
        cut = int(keep[-1])
        del self.stamps_ns[:cut], self.forward_mps[:cut], self.left_mps[:cut]
        series = self.heading
        if series.source != "fixed" and len(series.stamps_ns) > 1:
            old = np.flatnonzero(np.asarray(series.stamps_ns, np.int64) <= stamp_ns)
            if old.size > 1:
                del series.stamps_ns[:int(old[-1])], series.yaw_rad[:int(old[-1])]

    def drop_after(self, stamp_ns: int) -> None:
        """Forget samples stamped after ``stamp_ns`` (time jumped back: a bag played again)."""
        keep = [i for i, t in enumerate(self.stamps_ns) if t <= stamp_ns]
        self.stamps_ns = [self.stamps_ns[i] for i in keep]
        self.forward_mps = [self.forward_mps[i] for i in keep]
        self.left_mps = [self.left_mps[i] for i in keep]
        series = self.heading
        keep = [i for i, t in enumerate(series.stamps_ns) if t <= stamp_ns]
        series.stamps_ns = [series.stamps_ns[i] for i in keep]
        series.yaw_rad = [series.yaw_rad[i] for i in keep]

    def displacement(self, start_ns: int, end_ns: int) -> np.ndarray | None:
        """
        East/North metres moved from ``start_ns`` to ``end_ns``.

        None when the interval is not covered (no sample in force at its start, a hold gap over
        ``max_hold_s``, or no heading yet): the filter then falls back to its random walk.
        """
        if end_ns <= start_ns or not self.stamps_ns:
            return None if end_ns < start_ns else np.zeros(2)
        times = np.asarray(self.stamps_ns, np.int64)
        order = np.argsort(times, kind="stable")
        times = times[order]
        first = int(np.searchsorted(times, start_ns, side="right")) - 1
        if first < 0:
            return None
        last = int(np.searchsorted(times, end_ns, side="left"))
        index = order[first:last]
        edges = np.concatenate([[start_ns], times[first + 1:last], [end_ns]]).astype(np.int64)
        hold_s = np.diff(edges) / 1e9
        sample_age_s = (edges[:-1] - times[first:last]) / 1e9 + hold_s
        if np.any(sample_age_s > self.max_hold_s):
            return None
        yaw = self.heading.at(edges[:-1])
        if yaw is None:
            return None
        forward = np.asarray(self.forward_mps)[index]
        left = np.asarray(self.left_mps)[index]
        east, north = body_to_en(forward, left, yaw)
        return np.array([float(east @ hold_s), float(north @ hold_s)])


class OnlineFusion:
    """
    The filter as a live stream (the ROS node's worker): frames in, fused fixes out.

    Odometry and IMU samples arrive from other threads (subscription callbacks); a lock keeps
    the track consistent while the worker integrates it. Frames must come in stamp order
    (the node's one-slot mailbox keeps the newest); a time jump backwards (a bag played
    again) restarts the filter, as does a gap over ``max_gap_s``. Without odometry samples
    covering an interval the filter falls back to its random walk for that interval, or to the
    frames' own motion when ``visual`` (a
    :class:`~jzi_ros.inference.visual_odometry.VisualOdometry`) is given: each frame passed to
    :meth:`fuse` is matched with the previous one.
    ``georef_sigma_m``: the map's georeferencing 1-sigma, as refinement uses it
    (:func:`~jzi_ros.maps.georef.georef_sigma_used`), added once to every fused FIX.
    """

    def __init__(self, tree, config, heading: HeadingSeries | None = None,
                 use_odometry: bool = True, georef_sigma_m: float = 0.0,
                 visual=None) -> None:
        import threading

        from jzi_ros.inference.fusion import CellFilter
        from jzi_ros.inference.visual_odometry import filter_config

        if visual is not None and not use_odometry:  # its steps get its own motion noise
            config = filter_config(config)
        self.filter = CellFilter(tree, config, georef_sigma_m)
        self.track = OdometryTrack(heading or HeadingSeries())
        self.use_odometry = bool(use_odometry)
        self.visual = visual
        self.lock = threading.Lock()
        self.previous_ns: int | None = None
        self.last_estimate = None

    def add_odometry(self, stamp_ns: int, forward_mps: float, left_mps: float,
                     yaw_rad: float | None) -> None:
        with self.lock:
            self.track.add(stamp_ns, forward_mps, left_mps, yaw_rad)

    def add_heading(self, stamp_ns: int, yaw_rad: float) -> None:
        """Add an IMU orientation's yaw (heading source ``imu``)."""
        with self.lock:
            self.track.heading.add(stamp_ns, yaw_rad)

    def seeds(self, stamp_ns: int):
        """
        Return the prior-seeded zoom's seeds for the frame at ``stamp_ns``, or None.

        None when ``seed_beam`` is off or the prior is not confident
        (:meth:`~jzi_ros.inference.fusion.CellFilter.seed_cells`); the filter is not changed.
        """
        if not self.filter.config.seed_beam:
            return None
        displacement = None
        with self.lock:
            if (self.use_odometry and self.previous_ns is not None
                    and stamp_ns >= self.previous_ns):
                displacement = self.track.displacement(self.previous_ns, stamp_ns)
        return self.filter.seed_cells(stamp_ns, displacement)

    def fuse(self, stamp_ns: int, measurement, altitude_m: float,
             altitude_sigma_m: float, single: Fix | None = None,
             frame=None, compass_deg: float | None = None) -> Fix:
        """
        Fold in one frame's measurement (None: nothing usable) and return the fused Fix.

        ``single``: the frame's own fix; when refined, its position and covariance go into
        the filter too (:class:`~jzi_ros.inference.measurement.PointMeasurement`).
        ``frame`` / ``compass_deg``: the image and its heading, for visual odometry (used where
        odometry does not cover the interval); the Fix's ``timings_ms`` then holds its time.
        """
        import time

        from jzi_ros.inference.measurement import PointMeasurement

        timings = {}
        if self.visual is not None and frame is not None:
            began = time.perf_counter()
            self.visual.add_frame(stamp_ns, frame, compass_deg)  # a new chain after a jump back
            self.visual.forget_before(stamp_ns - int(60e9))
            timings["visual_odometry"] = (time.perf_counter() - began) * 1e3
        start = time.perf_counter()
        displacement = None
        with self.lock:
            if self.previous_ns is not None and stamp_ns < self.previous_ns:
                self.track.drop_after(stamp_ns)  # the filter restarts itself
            elif self.use_odometry and self.previous_ns is not None:
                displacement = self.track.displacement(self.previous_ns, stamp_ns)
            self.track.forget_before(stamp_ns - int(60e9))  # bounded memory
        if (displacement is None and self.visual is not None and self.previous_ns is not None
                and stamp_ns > self.previous_ns):
            displacement = self.visual.displacement(self.previous_ns, stamp_ns)
        estimate = self.filter.step(stamp_ns, measurement, displacement,
                                    PointMeasurement.from_fix(single))
        self.previous_ns = int(stamp_ns)
        self.last_estimate = estimate
        fix = self.filter.fix(estimate, altitude_m, altitude_sigma_m)
        timings["filter"] = (time.perf_counter() - start) * 1e3
        return dataclasses.replace(fix, timings_ms=timings)
