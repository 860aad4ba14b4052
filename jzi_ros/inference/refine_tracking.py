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
Refinement between detections: a registered frame's map matches followed into the next frames.

SIFT on the frame is most of refinement's cost (docs/refinement.md, "Latency"). A robot's
consecutive frames see mostly the same ground, so once a frame is registered against the map,
its inliers (a frame pixel tied to a map feature) are followed into the next frames with
pyramidal Lucas-Kanade, and the same robust homography, pose, covariance and acceptance test
(:func:`~jzi_ros.inference.registration.solve`) run on them. Each tracked point stays tied to
the map feature SIFT matched it to: this is still a registration against the map, not
odometry, and a tracked fix is exactly as good as its correspondences.

Points are tracked from the registered frame (the keyframe), starting from where they were in
the previous frame, not from frame to frame: Lucas-Kanade's small errors then do not add up
over the frames. SIFT runs again (and starts a new keyframe when it registers) when the tracked
registration fails the acceptance test, after ``track_frames`` tracked frames, after a gap of
more than ``track_max_gap_s`` or a stamp going backwards, or when the frame's size or camera
changes. Only a frame with a stamp is tracked (a sequence); without one every frame is
detected, as before.
"""
from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass
import logging
from typing import Callable

import cv2
import numpy as np

from jzi_ros.inference.camera_pose import Intrinsics
from jzi_ros.inference.registration import Box, Registration, solve
from jzi_ros.maps.features import to_gray

LOG = logging.getLogger(__name__)

# Lucas-Kanade's stopping rule: 20 iterations or a step below 0.03 px (OpenCV's default)
TERM = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)


@dataclass
class Keyframe:
    """The last registered frame: its pyramid, its inliers and where they are now."""

    grey: np.ndarray  # the registered frame, grey
    intrinsics: Intrinsics
    points: np.ndarray  # float32 [N, 1, 2]: the inliers in the keyframe
    latest: np.ndarray  # float32 [N, 1, 2]: the same points in the last tracked frame
    targets: np.ndarray  # [N, 2] the map features they match, in the registration's units
    to_ground: np.ndarray  # 3x3: those units to local metres
    threshold: float  # MAGSAC's threshold in those units
    stamp_ns: int  # the last frame it registered (detected or tracked)
    to_metres: np.ndarray  # 3x3: that frame's pixels -> local metres (its registration)
    tracked: int = 0  # frames tracked since the detection


class RegistrationTracker:
    """Follows a frame's accepted registration into later frames (one caller at a time)."""

    def __init__(self, config) -> None:
        """``config``: a RefineConfig (track_* fields and the acceptance thresholds)."""
        self.config = config
        self.keyframe: Keyframe | None = None

    @property
    def enabled(self) -> bool:
        return self.config.track_frames > 0

    def _grey(self, image: np.ndarray) -> np.ndarray:
        grey = to_gray(image)
        return cv2.equalizeHist(grey) if self.config.track_equalize else grey

    def reset(self) -> None:
        self.keyframe = None

    def usable(self, stamp_ns: int | None, shape: tuple[int, ...],
               intrinsics: Intrinsics, renewing: bool = False) -> bool:
        """
        Return whether this frame can be tracked from the keyframe (else: forget it).

        ``renewing``: a registration that will replace the keyframe is on its way, so a
        keyframe past ``track_frames`` still serves until it arrives.
        """
        kf = self.keyframe
        if stamp_ns is None:
            return False  # not part of a sequence
        if kf is None:
            return False
        gap_s = (stamp_ns - kf.stamp_ns) * 1e-9
        fresh = kf.tracked < self.config.track_frames or renewing
        ok = (0 < gap_s <= self.config.track_max_gap_s and fresh
              and kf.grey.shape == tuple(shape[:2]) and kf.intrinsics == intrinsics)
        if not ok:
            self.keyframe = None
        return ok

    def start(self, image: np.ndarray, result: Registration, intrinsics: Intrinsics,
              stamp_ns: int | None) -> None:
        """Make an accepted, detected registration of ``image`` the keyframe."""
        if not self.enabled or stamp_ns is None:
            return  # a frame outside any sequence leaves the sequence's keyframe alone
        previous, self.keyframe = self.keyframe, None
        if not result.accepted or result.scope:
            return  # registered elsewhere than around the zoom's cells (whole map): no keyframe
        inlier = np.flatnonzero(result.inlier_mask)
        inlier = inlier[spread_out(result.image_pts[inlier], image.shape,
                                   self.config.track_points)]
        points = np.ascontiguousarray(result.image_pts[inlier], np.float32).reshape(-1, 1, 2)
        targets = np.asarray(result.target_pts)[inlier]
        to_ground = np.asarray(result.to_ground, np.float64)
        latest = points.copy()
        if previous is not None and previous.stamp_ns > stamp_ns:
            # the registration is of an older frame (background SIFT taken up later, in real
            # time): frames have moved on, so start each point where the map puts it in the
            # last frame the previous keyframe registered
            guess = cv2.perspectiveTransform(targets.reshape(-1, 1, 2).astype(np.float64),
                                             np.linalg.inv(previous.to_metres) @ to_ground)
            if np.all(np.isfinite(guess)):
                latest = guess.astype(np.float32)
        self.keyframe = Keyframe(self._grey(image), intrinsics, points, latest, targets,
                                 to_ground, float(result.threshold), int(stamp_ns),
                                 to_ground @ result.homography)

    def track(self, image: np.ndarray, stamp_ns: int, regions: list[Box]) -> Registration:
        """
        Register ``image`` by the keyframe's points tracked into it (call :meth:`usable` first).

        Accepted: the keyframe keeps the inliers, now at their new places. Rejected: the
        keyframe is dropped (the caller detects this frame instead).
        """
        kf = self.keyframe
        config = self.config
        window = (config.track_window_px,) * 2
        grey = self._grey(image)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            kf.grey, grey, kf.points, kf.latest.copy(), winSize=window,
            maxLevel=config.track_levels, criteria=TERM, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        rows, cols = kf.grey.shape
        xy = moved.reshape(-1, 2)
        kept = (status.ravel() == 1) & np.all(np.isfinite(xy), axis=1) \
            & (xy[:, 0] >= 0) & (xy[:, 0] <= cols - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= rows - 1)
        if config.track_check_px > 0 and kept.any():
            # tracked back into the keyframe, a point must land where it started (occluded or
            # ambiguous points do not)
            back, status_back, _ = cv2.calcOpticalFlowPyrLK(
                grey, kf.grey, moved[kept], kf.points[kept].copy(), winSize=window,
                maxLevel=config.track_levels, criteria=TERM,
                flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
            error = np.linalg.norm((back - kf.points[kept]).reshape(-1, 2), axis=1)
            kept[np.flatnonzero(kept)] = (status_back.ravel() == 1) \
                & (error <= config.track_check_px)
        result = solve(xy[kept], kf.targets[kept], kf.to_ground, kf.intrinsics, config,
                       kf.threshold, regions=regions)
        if not result.accepted:
            self.keyframe = None
            result.reason = f"tracked: {result.reason}"
            return result
        # Lucas-Kanade's errors are not all in the inliers' spread (exposure, blur, a patch
        # seen turned or scaled); a scale fitted on flights over real imagery accounts for it
        scale = config.track_covariance_scale
        result.covariance_en = result.covariance_en * scale
        result.raw_covariance_en = result.raw_covariance_en * scale
        keep = np.flatnonzero(kept)[result.inlier_mask]
        kf.points, kf.latest, kf.targets = kf.points[keep], moved[keep], kf.targets[keep]
        kf.stamp_ns = int(stamp_ns)
        kf.to_metres = kf.to_ground @ result.homography
        kf.tracked += 1
        result.scope = f"tracked {kf.tracked} after SIFT"
        return result


class TrackedSequence:
    """
    Registers the frames of a sequence: tracked from the keyframe, else by SIFT.

    Synchronous: SIFT on a frame whose tracking fails, its registration the next keyframe.
    ``track_async``: SIFT runs on a background thread instead (that frame keeps the zoom's
    fix) and a later frame tracks from its result; a keyframe about to expire is renewed the
    same way from the last frame it tracked. Which frame takes the result up:

    - not ``realtime`` (replay): the next frame, waiting for it if SIFT is still running, so
      a replay gives the same fixes however fast the machine is;
    - ``realtime`` (the node, ``jzi bench``): the first frame after SIFT has finished; no frame
      ever waits. Until then the frames are tracked from the keyframe they had (past
      ``track_frames`` if it is being renewed), or keep the zoom's fix.
    """

    def __init__(self, config, detect: Callable[..., Registration],
                 realtime: bool = False) -> None:
        """``detect(image, boxes, intrinsics, gsd)``: the refiner's SIFT registration."""
        self.config = config
        self.realtime = bool(realtime)
        self.tracker = RegistrationTracker(config)
        self._detect = detect
        self._pool = None  # track_async: one background thread, made on first use
        self._background = None  # (future, frame, intrinsics, stamp) of the pending SIFT

    @property
    def enabled(self) -> bool:
        return self.tracker.enabled

    def register(self, image: np.ndarray, boxes: list[Box], K: Intrinsics, gsd: float,
                 stamp_ns: int) -> Registration:
        """Register one frame of the sequence (``boxes``: the zoom's searched cells)."""
        config = self.config
        if config.track_async:
            self._collect(wait=not self.realtime)
        pending = self._background is not None  # realtime: SIFT still running
        reasons = []
        if self.tracker.usable(stamp_ns, image.shape, K, renewing=pending):
            # a frame after a registered one: its matches tracked into this frame, no SIFT
            result = self.tracker.track(image, stamp_ns, boxes)
            if result.accepted:
                if (config.track_async and not pending
                        and self.tracker.keyframe.tracked >= config.track_frames):
                    self._submit(image, boxes, K, gsd, stamp_ns)
                return result
            reasons.append(result.reason)
        if config.track_async:
            if pending:
                reasons.append("SIFT on an earlier frame is still running in the background "
                               "(track_async, real time): this frame keeps the zoom's fix")
            else:
                self._submit(image, boxes, K, gsd, stamp_ns)
                reasons.append("SIFT on this frame runs in the background (track_async); a "
                               "later frame is tracked from it")
            return Registration(False, "; ".join(reasons))
        result = self._detect(image, boxes, K, gsd)
        self.tracker.start(image, result, K, stamp_ns)
        if reasons and not result.accepted:
            result.reason = "; ".join([*reasons, result.reason])
        return result

    def _submit(self, image, boxes, K, gsd, stamp_ns) -> None:
        if self._pool is None:
            self._pool = futures.ThreadPoolExecutor(1, thread_name_prefix="jzi-refine")
        future = self._pool.submit(self._detect, image, boxes, K, gsd)
        self._background = (future, image, K, stamp_ns)

    def _collect(self, wait: bool = True) -> None:
        """
        Take up the background registration; an accepted one becomes the keyframe.

        ``wait``: wait for it if it is still running; else leave a running one pending.
        """
        if self._background is None:
            return
        future, image, K, stamp_ns = self._background
        if not wait and not future.done():
            return
        self._background = None
        try:
            result = future.result()
        except Exception as err:  # a failure there (logged): the sequence starts again
            failure_reason(err)
            self.tracker.reset()
            return
        if result.accepted:
            self.tracker.start(image, result, K, stamp_ns)

    def quiet(self) -> None:
        """
        Wait until no background registration runs; its result stays for the next frame.

        A frame detected outside the sequence must not share the refiner's imagery reader
        with it.
        """
        if self._background is not None:
            futures.wait([self._background[0]])

    def reset(self) -> None:
        """Forget the keyframe and any pending background registration."""
        if self._background is not None:
            self._background[0].cancel()
            self._background = None
        self.tracker.reset()

    def close(self) -> None:
        self.reset()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def failure_reason(err: Exception) -> str:
    """
    Say in one line why a registration failed (and log the traceback unless it is OpenCV's).

    Refinement must never cost a frame its zoom fix: any failure inside it (an OpenCV error
    on odd imagery, a numerical corner a test did not meet) keeps the zoom's fix with this
    reason and starts the sequence again; the traceback goes to the log so a bug stays seen.
    """
    first = (str(err).strip().splitlines() or [""])[0]
    if isinstance(err, cv2.error):
        return f"OpenCV error: {first}"
    LOG.error("refinement failed; the zoom's fix is kept", exc_info=err)
    return f"refinement failed ({type(err).__name__}: {first}); the zoom's fix is kept"


def spread_out(points: np.ndarray, shape: tuple[int, ...], count: int) -> np.ndarray:
    """
    Return indices of at most ``count`` points, spread over the frame (a 4 x 4 grid in turn).

    Tracking cost grows with the points; a homography is held best by points all over the
    frame, so each grid cell gives its points in turn until ``count`` are taken.
    """
    n = len(points)
    if n <= count:
        return np.arange(n)
    rows, cols = shape[:2]
    cell = (np.clip((points[:, 1] * 4 // rows), 0, 3) * 4
            + np.clip((points[:, 0] * 4 // cols), 0, 3)).astype(int)
    order = np.argsort(cell, kind="stable")
    first = np.searchsorted(cell[order], np.arange(16))
    rank = np.empty(n, int)
    rank[order] = np.arange(n) - first[cell[order]]  # the point's turn within its cell
    return np.sort(np.lexsort((cell, rank))[:count])


def sequence_options(localizer, stamp_ns: int) -> dict:
    """
    Return the keywords that tell ``localizer`` a frame's place in a sequence.

    Only a refining localizer whose refiner tracks uses the stamp (the other localizers treat
    every frame alone and take no such keyword): replay and the node call this per frame.
    """
    sequence = getattr(getattr(localizer, "refiner", None), "sequence", None)
    return {"stamp_ns": int(stamp_ns)} if sequence is not None and sequence.enabled else {}
