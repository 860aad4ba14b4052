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
Geometric refinement after the zoom: from a 39 m cell to metres, or the zoom's fix with why.

The zoom ends in a terminal cell and reports its centre. Where the map imagery still looks
like the frame, local features pin the camera down: the frame is registered against the map
imagery around the zoom's top cells (read at about the frame's ground sampling) with OpenCV
features and a USAC/MAGSAC homography. With the camera intrinsics the homography from the
ground plane to the image is ``K [r1 r2 t]``, which gives the camera's rotation and centre:
its nadir point (the published position, not the ground point at the image centre), its
height above ground, heading and tilt. The covariance is the spread of the nadir point over
bootstrap resamples of the inliers, times a calibrated scale, with a floor (the zoom's
:func:`~jzi_ros.inference.posterior.apply_scale_and_floor`; the scale is fitted with its
:func:`~jzi_ros.inference.calibration.fit_covariance_scale`), plus the map's georeferencing
variance (``georef_sigma_m`` squared: the imagery itself is off by it, the same for every fix).

Every refined solution passes an explicit acceptance test (inlier count and ratio, plausible
height and tilt, a rotation that is one, the nadir inside the searched area, a bounded spread)
or the zoom's fix is returned unchanged with the reason in :attr:`Fix.refinement`. The same
registration without the zoom (against the map's whole feature index) is the classical
baseline in :mod:`jzi_ros.evaluation.classical`; ``global_fallback`` runs it after the zoom's
cells failed, so a frame whose imagery still matches is refined even when the zoom went
elsewhere (``refined (whole map): ...``). In a sequence (replay, the node: frames with a
stamp) ``track_frames`` registers the frames between SIFT ones by tracking the last
registration's matches (:mod:`jzi_ros.inference.refine_tracking`). ROS-free: the node passes
``CameraInfo.k`` through :meth:`Intrinsics.from_matrix`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import logging
import math
from pathlib import Path
import time
from typing import Callable, Sequence

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.inference.camera_pose import fit_frame, Intrinsics
from jzi_ros.inference.fix import Fix, FixStatus
from jzi_ros.inference.refine_tracking import failure_reason, TrackedSequence
from jzi_ros.inference.registration import (frame_features, index_matcher, ratio_matches,
                                            register_whole_map, Registration, solve)
from jzi_ros.maps.features import detect_features, DETECTORS
from jzi_ros.maps.georef import check_georef_sigma_m, georef_sigma_used

LOG = logging.getLogger(__name__)

# the map's feature index is used instead of detecting on the window when the frame's ground
# sampling is within this factor of the index's (SIFT/ORB tolerate such scale changes)
INDEX_SCALE_TOLERANCE = 1.5
GUESS_HFOV_DEG = 70.0  # horizontal field of view assumed when nothing says otherwise (warned)
MIN_SHRUNK_PX = 160  # a frame is not shrunk to the index's resolution below this long side


@dataclass
class RefineConfig:
    """How refinement registers a frame and what it accepts (metres, degrees, pixels)."""

    detector: str = "sift"  # sift or orb (AKAZE is not in OpenCV 5's main modules)
    max_features: int = 2000  # per frame, and per map window
    # a SIFT frame with fewer features is detected again at half the contrast threshold (0: off)
    low_contrast_features: int = 100
    max_frame_px: int = 800  # larger frames are shrunk to this long side first
    use_index: bool = True  # map features from the map-build index when its scale fits
    ratio: float = 0.85  # Lowe's ratio test
    ransac_px: float = 3.0  # MAGSAC threshold, in map-window pixels
    top_cells: int = 3  # zoom hypotheses tried, most probable first
    # when no cell around the zoom's answer registers, search the map's whole feature index
    # (the classical baseline's search: tens to hundreds of ms more on such frames)
    global_fallback: bool = False
    search_margin_m: float | None = None  # around each cell; None: the frame's footprint
    nominal_height_m: float = 250.0  # expected height above ground: the map resolution
    min_height_m: float = 20.0  # accepted height range above ground
    max_height_m: float = 1000.0
    max_tilt_deg: float = 45.0  # accepted optical-axis angle from nadir
    min_inliers: int = 25
    min_inlier_ratio: float = 0.15  # inliers / ratio-test matches
    max_skew: float = 0.1  # |cos| between homography rotation columns + |log| of their norms
    max_sigma_m: float = 15.0  # accepted bootstrap 1-sigma of the nadir point
    bootstrap: int = 24  # inlier resamples for the covariance
    covariance_scale: float = 1.0  # calibrated on the benchmark (docs/refinement.md)
    # minimum 1-sigma of the refined covariance: metres, and pixels of the map features used;
    # with the bootstrap spread far below it, the floor is the calibration (docs/refinement.md)
    sigma_floor_m: float = 0.55
    sigma_floor_px: float = 0.55
    hfov_deg: float | None = None  # field of view when no intrinsics are given (None: guess)
    # relative 1-sigma of the guessed focal length (no intrinsics, no hfov_deg): a 70 deg guess
    # for cameras of 60-90 deg; the nadir point's shift under it joins the covariance, so an
    # oblique view with a guessed camera is not published as metre-accurate
    guessed_focal_sigma: float = 0.2
    # the map imagery's georeferencing 1-sigma (metres per axis) added to every refined fix's
    # covariance; None: the map manifest's georef_sigma_m (0 when the map does not know it)
    georef_sigma_m: float | None = None
    # tracked refinement (refine_tracking.py): frames with a stamp after a registered one are
    # registered by its inliers tracked with Lucas-Kanade, up to this many in a row before SIFT
    # runs again (0: SIFT on every frame)
    track_frames: int = 0
    track_max_gap_s: float = 2.0  # a longer gap between frames (or a stamp back) detects again
    track_window_px: int = 11  # Lucas-Kanade window side
    track_levels: int = 2  # Lucas-Kanade pyramid levels above the frame
    track_points: int = 200  # at most this many of a registration's inliers are tracked
    track_check_px: float = 1.0  # forward-backward check: a point tracked back is this close
    track_equalize: bool = True  # histogram-equalised frames (exposure changes)
    # a tracked fix's covariance is its inliers' spread times this (fitted, docs/refinement.md)
    track_covariance_scale: float = 1.5
    # with track_frames: SIFT runs on a background thread and a later frame tracks from its
    # result (the frame that starts a sequence keeps the zoom's fix; TrackedSequence)
    track_async: bool = False

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise JziError(f"refine.detector must be one of {DETECTORS}, got {self.detector!r}")
        checks = {"max_features": self.max_features >= 16, "max_frame_px": self.max_frame_px >= 64,
                  "low_contrast_features": self.low_contrast_features >= 0,
                  "ratio": 0 < self.ratio < 1,
                  "ransac_px": self.ransac_px > 0, "top_cells": self.top_cells >= 1,
                  "nominal_height_m": self.nominal_height_m > 0,
                  "min_height_m": 0 <= self.min_height_m < self.max_height_m,
                  "max_tilt_deg": 0 < self.max_tilt_deg < 90, "min_inliers": self.min_inliers >= 8,
                  "min_inlier_ratio": 0 <= self.min_inlier_ratio <= 1,
                  "max_skew": self.max_skew > 0, "max_sigma_m": self.max_sigma_m > 0,
                  "bootstrap": self.bootstrap >= 4, "covariance_scale": self.covariance_scale > 0,
                  "sigma_floor_m": self.sigma_floor_m > 0,
                  "sigma_floor_px": self.sigma_floor_px >= 0,
                  "hfov_deg": self.hfov_deg is None or 1 < self.hfov_deg < 170,
                  "guessed_focal_sigma": 0 <= self.guessed_focal_sigma < 0.5,
                  "search_margin_m": self.search_margin_m is None or self.search_margin_m >= 0,
                  "georef_sigma_m": self.georef_sigma_m is None or self.georef_sigma_m >= 0,
                  "track_frames": self.track_frames >= 0,
                  "track_max_gap_s": self.track_max_gap_s > 0,
                  "track_window_px": 5 <= self.track_window_px <= 101,
                  "track_levels": 0 <= self.track_levels <= 6,
                  "track_points": self.track_points >= 8,
                  "track_check_px": self.track_check_px >= 0,
                  "track_covariance_scale": self.track_covariance_scale > 0,
                  **{name: isinstance(getattr(self, name), bool)
                     for name in ("global_fallback", "track_equalize", "track_async")}}
        if self.track_async and not self.track_frames:
            raise JziError("refine.track_async needs refine.track_frames > 0 (--refine-async "
                           "needs --refine-track N): only tracked frames skip SIFT")
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise JziError(f"refine.{name}: value {value!r} is out of range; see "
                               "RefineConfig in jzi_ros/inference/refine.py for the bounds")

    def georef_sigma_for(self, pyramid) -> float:
        """Return the georeferencing 1-sigma to use: this override, else the map's, else 0."""
        return georef_sigma_used(pyramid, self.georef_sigma_m)

    def camera(self, width: int, height: int) -> Intrinsics:
        """Return intrinsics from ``hfov_deg``, else the guess with its focal doubt."""
        if self.hfov_deg is not None:
            return Intrinsics.from_hfov(width, height, self.hfov_deg)
        guess = Intrinsics.from_hfov(width, height, GUESS_HFOV_DEG)
        return dataclasses.replace(guess, focal_sigma=self.guessed_focal_sigma)


class Refiner:
    """Registers frames against a map's imagery around the zoom's cells (one caller at a time)."""

    def __init__(self, imagery, tree, config: RefineConfig | None = None,
                 index=None, georef_sigma_m: float = 0.0, realtime: bool = False) -> None:
        """
        ``index``: a FeatureIndex or its levels (maps.imagery.load_index), or None.

        ``georef_sigma_m``: the imagery's georeferencing 1-sigma (metres per axis) added to
        every refined covariance (:meth:`for_map` reads it from the map, or the config's
        override). ``realtime``: see :class:`TrackedSequence` (the node's, not replay's).
        """
        self.imagery = imagery
        self.tree = tree
        self.config = config or RefineConfig()
        self.georef_sigma_m = check_georef_sigma_m(float(georef_sigma_m),
                                                   "Refiner(georef_sigma_m)")
        levels = [] if index is None else list(index) if isinstance(index, (list, tuple)) \
            else [index]
        self.indexes = [level for level in levels if self.config.use_index
                        and level.detector == self.config.detector]
        self._warned_guess = False
        self._matchers: dict[int, object] = {}  # whole-index matchers, built on first use
        self.sequence = TrackedSequence(self.config, self._detect, realtime)

    @classmethod
    def for_map(cls, map_dir: str | Path, config: RefineConfig | None = None,
                realtime: bool = False) -> "Refiner | None":
        """Return a refiner for a map directory, or None (logged once) when it has no imagery."""
        from jzi_ros.maps.imagery import FEATURES, IMAGERY, load_index, MapImagery
        from jzi_ros.maps.pyramid import MapPyramid

        imagery = MapImagery.open_in(map_dir)
        if imagery is None:
            LOG.warning("map %s has no %s (built before refinement existed): refinement is "
                        "off; rebuild the map with `jzi map build` to enable it",
                        map_dir, IMAGERY)
            return None
        features = Path(map_dir) / FEATURES
        index = load_index(features) if features.is_file() else None
        pyramid = MapPyramid.open(map_dir)
        config = config or RefineConfig()
        return cls(imagery, pyramid.tree, config, index, config.georef_sigma_for(pyramid),
                   realtime)

    def intrinsics_for(self, image: np.ndarray, intrinsics: Intrinsics | None) -> Intrinsics:
        """Return the given intrinsics, else ones from ``hfov_deg`` (or the warned guess)."""
        if intrinsics is not None:
            return intrinsics
        hfov = self.config.hfov_deg
        if hfov is None and not self._warned_guess:
            LOG.warning("refinement: no camera intrinsics given; guessing a %g deg horizontal "
                        "field of view (pass CameraInfo, --intrinsics or --hfov)",
                        GUESS_HFOV_DEG)
            self._warned_guess = True
        height, width = image.shape[:2]
        return self.config.camera(width, height)

    def search_margin_m(self, intrinsics: Intrinsics, image_shape: tuple[int, ...]) -> float:
        """Return how far around a cell to search: the footprint's half-diagonal, tilt allowed."""
        if self.config.search_margin_m is not None:
            return self.config.search_margin_m
        height, width = image_shape[:2]
        half_diag = math.hypot(width / intrinsics.fx, height / intrinsics.fy) / 2
        return 1.5 * self.config.nominal_height_m * half_diag

    def register(self, image: np.ndarray, hypotheses: Sequence,
                 intrinsics: Intrinsics | None = None, stamp_ns: int | None = None
                 ) -> Registration:
        """
        Try the most probable cells (objects with ``path``) until one registration passes.

        ``stamp_ns``: the frame's stamp in a sequence (replay, the node); with ``track_frames``
        a frame after a registered one is first registered by tracking (refine_tracking.py),
        and with ``track_async`` SIFT never runs on the caller's thread (:class:`TrackedSequence`).
        """
        config = self.config
        image, K = fit_frame(image, self.intrinsics_for(image, intrinsics), config.max_frame_px)
        gsd = config.nominal_height_m / math.sqrt(K.fx * K.fy)
        image, K, gsd = self._shrink_to_index(image, K, gsd)
        margin = self.search_margin_m(K, image.shape)
        ranked = sorted(hypotheses, key=lambda h: -h.probability)[:config.top_cells]
        boxes = self._search_boxes(ranked, margin)
        if not self.sequence.enabled or stamp_ns is None:
            self.sequence.quiet()
            return self._detect(image, boxes, K, gsd)
        return self.sequence.register(image, boxes, K, gsd, stamp_ns)

    def _detect(self, image: np.ndarray, boxes: list, K: Intrinsics, gsd: float
                ) -> Registration:
        """Register by SIFT: the zoom's cells in turn, then the whole map if configured."""
        config = self.config
        frame_pts, frame_desc = frame_features(image, config)
        if len(frame_pts) < config.min_inliers:
            return Registration(False, f"the frame has {len(frame_pts)} features (need "
                                f"{config.min_inliers}; blank, dark or blurred image?)")
        reasons, best = [], Registration(False, "no cell to search")
        for box in boxes:
            result = self._register_window(frame_pts, frame_desc, K, box, gsd)
            if result.accepted:
                return result
            reasons.append(result.reason)
            if result.inliers >= best.inliers:
                best = result
        if config.global_fallback and self.indexes:
            result = self._register_whole_map(frame_pts, frame_desc, K, gsd)
            if result.accepted:
                return result
            reasons.append(f"whole map: {result.reason}")
        best.reason = "; ".join(dict.fromkeys(reasons)) or best.reason
        return best

    def _search_boxes(self, ranked: Sequence, margin: float) -> list:
        """Return the windows (west, south, east, north) around the cells, repeats dropped."""
        boxes = []
        for hypothesis in ranked:
            west, south, east, north = self.tree.cell_bounds_local(hypothesis.path)
            centre = ((west + east) / 2, (south + north) / 2)
            if any(b[0] + margin <= centre[0] <= b[2] - margin
                   and b[1] + margin <= centre[1] <= b[3] - margin for b in boxes):
                continue  # this cell was inside an earlier window's core already
            boxes.append((west - margin, south - margin, east + margin, north + margin))
        return boxes

    def _register_whole_map(self, frame_pts: np.ndarray, frame_desc: np.ndarray,
                            K: Intrinsics, gsd: float) -> Registration:
        """
        Register against the whole feature index level nearest the frame's ground sampling.

        ``global_fallback``: the zoom's cells were wrong but the imagery may still match
        (the classical baseline's search, whose matcher is built on the first such frame).
        """
        level = min(self.indexes, key=lambda lv: abs(math.log(gsd / lv.m_per_px)))
        if id(level) not in self._matchers:
            self._matchers[id(level)] = index_matcher(level.descriptors, level.detector)
        result = register_whole_map(frame_pts, frame_desc, level, self._matchers[id(level)],
                                    self.tree, K, self.config)
        result.scope = "whole map"
        return result

    def _shrink_to_index(self, image: np.ndarray, K: Intrinsics, gsd: float
                         ) -> tuple[np.ndarray, Intrinsics, float]:
        """
        Shrink a frame that sees the ground finer than every index level to the finest one.

        The imagery holds nothing finer than its own pixels, so such a frame would otherwise be
        matched against features detected on an imagery window per frame; shrunk, the index
        serves it and SIFT has fewer pixels to search. Not below :data:`MIN_SHRUNK_PX`.
        """
        finest = min((level.m_per_px for level in self.indexes), default=None)
        if finest is None or gsd * INDEX_SCALE_TOLERANCE >= finest:
            return image, K, gsd
        side = math.floor(max(image.shape[:2]) * gsd / finest)
        if side < MIN_SHRUNK_PX:
            return image, K, gsd
        image, K = fit_frame(image, K, side)
        return image, K, self.config.nominal_height_m / math.sqrt(K.fx * K.fy)

    def _register_window(self, frame_pts: np.ndarray, frame_desc: np.ndarray, K: Intrinsics,
                         box: tuple[float, float, float, float], gsd: float) -> Registration:
        config = self.config
        index = self.index_for(gsd)
        if index is not None:
            # the map-build feature index already has this resolution: no detection per frame
            west, south, east, north = box
            en = index.points_en
            rows = np.flatnonzero((en[:, 0] >= west) & (en[:, 0] <= east)
                                  & (en[:, 1] >= south) & (en[:, 1] <= north))
            if len(rows) < config.min_inliers:
                return Registration(False, f"the map has {len(rows)} features there "
                                    "(textureless imagery or none)")
            qi, ti = ratio_matches(frame_desc, index.descriptors[rows], config.detector,
                                   config.ratio)
            return solve(frame_pts[qi], index.pixels(self.tree, rows[ti]),
                         index.pixel_to_local(self.tree), K, config, config.ransac_px,
                         regions=[box])
        window = self.imagery.read(box, gsd)
        if window.valid.mean() < 0.05:
            return Registration(False, "no map imagery under the searched cells")
        map_pts, map_desc = detect_features(window.rgb, config.detector,
                                            config.max_features, window.valid)
        if len(map_pts) < config.min_inliers:
            return Registration(False, f"the map has {len(map_pts)} features there "
                                "(textureless imagery)")
        qi, ti = ratio_matches(frame_desc, map_desc, config.detector, config.ratio)
        return solve(frame_pts[qi], map_pts[ti], window.pixel_to_local(), K, config,
                     config.ransac_px, regions=[box])

    def index_for(self, m_per_px: float):
        """Return the index level nearest a ground sampling, None when none is near enough."""
        if not self.indexes:
            return None
        best = min(self.indexes, key=lambda level: abs(math.log(m_per_px / level.m_per_px)))
        near = abs(math.log(m_per_px / best.m_per_px)) <= math.log(INDEX_SCALE_TOLERANCE)
        return best if near else None

    def refine(self, image: np.ndarray, fix: Fix, intrinsics: Intrinsics | None = None,
               stamp_ns: int | None = None) -> Fix:
        """Return the refined fix, or ``fix`` with the reason (``stamp_ns``: :meth:`register`)."""
        start = time.perf_counter()
        if not fix.hypotheses:  # the zoom failed outright (a low-confidence NO_FIX has cells)
            why = f" ({fix.reason})" if fix.reason else ""
            return dataclasses.replace(fix, refinement=f"not refined: the zoom gave no cells{why}")
        try:
            result = self.register(image, fix.hypotheses, intrinsics, stamp_ns)
        except Exception as err:  # a failure inside must not cost the zoom's fix (logged)
            self.sequence.reset()
            result = Registration(False, failure_reason(err))
        timings = dict(fix.timings_ms)
        elapsed = (time.perf_counter() - start) * 1e3
        timings["refine"] = elapsed
        if "total" in timings:
            timings["total"] += elapsed
        if not result.accepted:
            return dataclasses.replace(fix, refinement=result.describe(), timings_ms=timings)
        return refined_fix(fix, result, self.tree, timings, self.georef_sigma_m)

    def close(self) -> None:
        self.sequence.close()
        self.imagery.close()


def registered_covariance_en(result: Registration, georef_sigma_m: float) -> np.ndarray:
    """
    Return the East/North covariance of a fix registered against the map imagery.

    The registration's own (bootstrap) covariance says how well the frame sits on the
    imagery; the imagery itself is off its true place by the map's georeferencing error, the
    same for every fix from that map, so ``georef_sigma_m`` squared joins the diagonal.
    Acceptance (``max_sigma_m``) judged the registration alone, before this.
    """
    return result.covariance_en + np.eye(2) * georef_sigma_m ** 2


def refined_fix(fix: Fix, result: Registration, tree, timings: dict[str, float],
                georef_sigma_m: float = 0.0) -> Fix:
    """
    Return ``fix`` moved to the registration's nadir point with its covariance.

    The geometric check stands on its own, so a zoom NO_FIX (confidence below the gate, cells
    still ranked) becomes a FIX when refinement accepts; its confidence is then at least the
    inlier ratio. The covariance is :func:`registered_covariance_en`.
    """
    pose = result.pose
    lat, lon = tree.to_latlon(pose.east_m, pose.north_m)
    cov = np.array(fix.covariance_enu, dtype=np.float64)
    cov[:2, :2] = registered_covariance_en(result, georef_sigma_m)
    cov[:2, 2] = cov[2, :2] = 0.0
    return dataclasses.replace(fix, status=FixStatus.FIX, reason="", latitude=float(lat),
                               longitude=float(lon), covariance_enu=cov, east_m=pose.east_m,
                               north_m=pose.north_m,
                               confidence=max(fix.confidence, result.inlier_ratio),
                               refined=True,
                               refinement=describe_registered(result, georef_sigma_m),
                               timings_ms=timings, georef_sigma_m=georef_sigma_m)


def describe_registered(result: Registration, georef_sigma_m: float) -> str:
    """Return the registration's outcome, with the map's georeferencing 1-sigma when set."""
    text = result.describe()
    return f"{text}, map georef sigma {georef_sigma_m:.1f} m" if georef_sigma_m else text


class RefiningLocalizer:
    """
    A Localizer whose fixes go through a :class:`Refiner` (the zoom's fix when rejected).

    ``intrinsics``: fixed camera intrinsics, or a callable ``(height, width) -> Intrinsics``
    asked per frame (the node's CameraInfo) that raises :class:`JziError` with the reason when
    it has none: the frame is then not refined and the reason says why.
    """

    def __init__(self, localizer, refiner: Refiner | None,
                 intrinsics: Intrinsics | Callable[[int, int], Intrinsics] | None = None
                 ) -> None:
        self.localizer = localizer
        self.refiner = refiner
        self.intrinsics = intrinsics
        self.tree = localizer.tree
        self.pyramid = getattr(localizer, "pyramid", None)
        self.backend_name = f"{localizer.backend_name}+refine"

    @property
    def config(self):
        """Return the zoom Localizer's settings; setting them hands a runtime change on."""
        return self.localizer.config

    @config.setter
    def config(self, config) -> None:
        self.localizer.config = config

    @property
    def calibration(self):
        """Return the zoom checkpoint's calibration record (the zoom's fixes carry it)."""
        return getattr(self.localizer, "calibration", None)

    def localize(self, image_rgb: np.ndarray, intrinsics: Intrinsics | None = None,
                 stamp_ns: int | None = None, **zoom_options) -> Fix:
        """``stamp_ns``: the frame's stamp in a sequence (``refine_tracking.sequence_options``)."""
        return self._refine(image_rgb, self.localizer.localize(image_rgb, **zoom_options),
                            intrinsics, stamp_ns)

    def localize_measured(self, image_rgb: np.ndarray, intrinsics: Intrinsics | None = None,
                          stamp_ns: int | None = None, **zoom_options):
        """Return ``(refined fix, the zoom's measurement)``: the filter fuses the zoom's cells."""
        fix, measurement = self.localizer.localize_measured(image_rgb, **zoom_options)
        return self._refine(image_rgb, fix, intrinsics, stamp_ns), measurement

    def _refine(self, image_rgb: np.ndarray, fix: Fix, intrinsics: Intrinsics | None,
                stamp_ns: int | None = None) -> Fix:
        if self.refiner is None:
            return dataclasses.replace(fix, refinement="not refined: the map has no imagery")
        if intrinsics is None and callable(self.intrinsics):
            try:
                intrinsics = self.intrinsics(*image_rgb.shape[:2])
            except JziError as err:
                return dataclasses.replace(fix, refinement=f"not refined: {err}")
        elif intrinsics is None:
            intrinsics = self.intrinsics
        return self.refiner.refine(image_rgb, fix, intrinsics, stamp_ns)

    def close(self) -> None:
        self.localizer.close()
        if self.refiner is not None:
            self.refiner.close()
