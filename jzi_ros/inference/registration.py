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
Registration of a frame against map features, and the acceptance test.

Ratio-test matching, a robust homography, the camera pose and its bootstrap covariance.

Shared by refinement after the zoom (:mod:`jzi_ros.inference.refine`, matches around the zoom's
cells) and the classical baseline (:mod:`jzi_ros.evaluation.classical`, matches against the
whole map). The thresholds are :class:`~jzi_ros.inference.refine.RefineConfig` fields.
"""
from __future__ import annotations

from dataclasses import dataclass
import functools
import math
from typing import Any, Sequence

import cv2
import numpy as np

from jzi_ros.inference.camera_pose import (ground_pose, GroundPose, Intrinsics,
                                           pose_from_homography, poses_from_homographies)
from jzi_ros.inference.posterior import apply_scale_and_floor
from jzi_ros.maps.features import detect_features

Box = tuple[float, float, float, float]  # west, south, east, north in local metres
MATCH_CHUNK = 4096  # index rows per GEMM: 2000 frame features x 4096 floats = 33 MB at most


def frame_features(image: np.ndarray, config: Any) -> tuple[np.ndarray, np.ndarray]:
    """
    Detect a frame's features; a low-contrast frame is searched again at half the threshold.

    Small, blurred or hazy frames can give SIFT too few corners at its default contrast
    threshold to register at all (autzen's 160 x 120 px views: 40 % under 25 features). Below
    ``config.low_contrast_features`` the frame is detected again with half the threshold and
    the richer set is kept. The map's features keep the default: only the frame's weak corners
    are added, and the acceptance test judges the result as always.
    """
    points, descriptors = detect_features(image, config.detector, config.max_features)
    if config.detector == "sift" and len(points) < config.low_contrast_features:
        more = detect_features(image, config.detector, config.max_features, contrast_scale=0.5)
        if len(more[0]) > len(points):
            return more
    return points, descriptors


def ratio_matches(query: np.ndarray, train: np.ndarray | None, detector: str, ratio: float,
                  matcher=None) -> tuple[np.ndarray, np.ndarray]:
    """Lowe ratio-test matches (query, train indices); ``matcher``: a trained index instead."""
    if len(query) < 2 or (matcher is None and len(train) < 2):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if matcher is None and detector != "orb":
        return _l2_ratio_matches(query, train, ratio)
    if matcher is None:
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query, train, k=2)
    else:
        pairs = matcher.knnMatch(query, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    return (np.array([m.queryIdx for m in good], np.int64),
            np.array([m.trainIdx for m in good], np.int64))


def index_matcher(descriptors: np.ndarray, detector: str):
    """
    Return a trained FLANN matcher over a whole feature index (None when it is empty).

    The whole-map search (the classical baseline, refinement's ``global_fallback``): KD-trees
    for SIFT, LSH for ORB; approximate, so it answers a frame in tens of milliseconds where
    the exact GEMM search (:func:`_l2_ratio_matches`, for the few thousand features around
    the zoom's cells) would have to scan every feature of the map.
    """
    if len(descriptors) < 2:
        return None
    if detector == "sift":
        matcher = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64})
    else:
        matcher = cv2.FlannBasedMatcher(
            {"algorithm": 6, "table_number": 6, "key_size": 12, "multi_probe_level": 1},
            {"checks": 64})
    matcher.add([descriptors])
    matcher.train()
    return matcher


def register_whole_map(points: np.ndarray, descriptors: np.ndarray, index, matcher, tree,
                       intrinsics: Intrinsics, config: Any) -> Registration:
    """
    Register a frame's features against a whole map feature index (``matcher`` over it).

    ``index`` is a :class:`~jzi_ros.maps.imagery.FeatureIndex` and ``matcher`` its
    :func:`index_matcher`; the nadir point may lie anywhere in the root square. The classical
    baseline, and refinement's fallback when no cell around the zoom's answer registers.
    """
    if matcher is None:
        return Registration(False, f"the map index has {len(index.points_en)} features")
    qi, ti = ratio_matches(descriptors, None, config.detector, config.ratio, matcher)
    half = tree.size_m / 2
    return solve(points[qi], index.pixels(tree, ti), index.pixel_to_local(tree), intrinsics,
                 config, config.ransac_px, regions=[(-half, -half, half, half)])


def _l2_ratio_matches(query: np.ndarray, train: np.ndarray, ratio: float,
                      chunk: int = MATCH_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """
    Exact brute-force L2 ratio test, as ``BFMatcher.knnMatch(k=2)`` but through GEMMs.

    ``|q - t|^2 = |q|^2 + |t|^2 - 2 q.t``: the products are ``cv2.gemm`` calls (OpenCV's
    threads, so ``--threads`` holds), 4x faster than the matcher's distance loops at a frame's
    ~500 x 2000 SIFT descriptors (docs/refinement.md). ``chunk`` train rows at a time, keeping
    the best two per query, bound the memory when the window holds a whole large index.
    """
    query = np.ascontiguousarray(query, np.float32)
    train = np.ascontiguousarray(train, np.float32)
    rows = np.arange(len(query))
    best_d = np.full(len(query), np.inf, np.float32)
    second_d = np.full(len(query), np.inf, np.float32)
    best_i = np.zeros(len(query), np.int64)
    for start in range(0, len(train), chunk):
        part = train[start:start + chunk]
        d2 = cv2.gemm(query, part, -2.0, None, 0.0, flags=cv2.GEMM_2_T)
        d2 += np.einsum("ij,ij->i", part, part)[None, :]
        index = np.argmin(d2, axis=1)
        first = d2[rows, index].copy()
        d2[rows, index] = np.inf
        second = d2.min(axis=1)
        better = first < best_d  # ties keep the earlier row, as the matcher does
        second_d = np.where(better, np.minimum(best_d, second), np.minimum(second_d, first))
        best_i = np.where(better, index + start, best_i)
        best_d = np.where(better, first, best_d)
    q2 = np.einsum("ij,ij->i", query, query)
    # distances, not squares, are compared (as the matcher does); rounding can go below 0
    first = np.maximum(best_d + q2, 0.0)
    second = np.maximum(second_d + q2, 0.0)
    keep = np.flatnonzero(first < ratio * ratio * second)
    return keep.astype(np.int64), best_i[keep]


# --- registration -------------------------------------------------------------------------
@dataclass
class Registration:
    """One registration attempt: accepted with a pose and covariance, or a reason why not."""

    accepted: bool
    reason: str  # why not accepted; empty when accepted
    matches: int = 0
    inliers: int = 0
    pose: GroundPose | None = None
    covariance_en: np.ndarray | None = None  # 2x2 m^2, calibrated and floored
    raw_covariance_en: np.ndarray | None = None  # bootstrap spread + focal doubt (calibrated)
    scope: str = ""  # where the match was searched when not around the zoom's cells
    # which of the matches are inliers (accepted or not, once a homography was fitted), and the
    # matches themselves (frame pixels, map targets and targets -> local metres): the tracked
    # refinement (refine_tracking.py) follows an accepted registration's inliers
    inlier_mask: np.ndarray | None = None
    image_pts: np.ndarray | None = None
    target_pts: np.ndarray | None = None
    to_ground: np.ndarray | None = None
    threshold: float = 0.0  # MAGSAC's, in target units
    homography: np.ndarray | None = None  # the robust fit, frame pixels -> targets

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.matches if self.matches else 0.0

    def describe(self) -> str:
        if not self.accepted:
            return f"not refined: {self.reason}"
        p = self.pose
        sigma = math.sqrt(max(np.linalg.eigvalsh(self.covariance_en)))
        where = f" ({self.scope})" if self.scope else ""
        return (f"refined{where}: {self.inliers}/{self.matches} inliers, height "
                f"{p.height_m:.0f} m, "
                f"heading {p.heading_deg:.0f} deg, tilt {p.tilt_deg:.0f} deg, "
                f"sigma {sigma:.1f} m")


def _bootstrap_homographies(image_pts: np.ndarray, target_pts: np.ndarray, count: int,
                            start: np.ndarray) -> np.ndarray:
    """
    Least-squares homographies [count, 3, 3] (image -> target) of bootstrap resamples.

    All resamples at once: a resample is a weighting of the inliers (how often each was
    drawn), so its DLT normal matrix is a weighted sum of per-point 9x9 blocks: one matrix
    product for all of them. Each resample's solution (the normal matrix's eigenvector of the
    smallest eigenvalue) is found by two steps of inverse iteration from ``start`` (the
    robust fit's homography, image -> target): a resample moves the solution only a little and
    the smallest eigenvalue (the residual) is far below the next (the geometry), so two
    batched 9x9 solves converge to the eigenvector (the same nadir points within 1e-7 m on
    real frames) at a tenth of a batched eigendecomposition's cost.
    """
    n = len(image_pts)
    src, t_src = _normalise(image_pts)
    dst, t_dst = _normalise(target_pts)
    x, y = src[:, 0], src[:, 1]
    u, v = dst[:, 0], dst[:, 1]
    zero, one = np.zeros(n), np.ones(n)
    rows = np.concatenate([
        np.stack([x, y, one, zero, zero, zero, -u * x, -u * y, -u], axis=1)[:, None],
        np.stack([zero, zero, zero, x, y, one, -v * x, -v * y, -v], axis=1)[:, None]], axis=1)
    blocks = np.einsum("npi,npj->nij", rows, rows).reshape(n, 81)
    normal = (_resample_weights(n, count) @ blocks).reshape(count, 9, 9)
    h = np.broadcast_to((t_dst @ start @ np.linalg.inv(t_src)).reshape(9, 1), (count, 9, 1))
    # a shift of 1e-10 of the mean eigenvalue keeps an exact fit (a zero eigenvalue) solvable
    # and changes nothing else
    shift = 1e-10 * np.trace(normal, axis1=1, axis2=2)[:, None, None] / 9
    shifted = normal + shift * np.eye(9)
    for _ in range(2):
        h = np.linalg.solve(shifted, h)
        h /= np.linalg.norm(h, axis=1, keepdims=True)
    return np.linalg.inv(t_dst) @ h.reshape(count, 3, 3) @ t_src


@functools.lru_cache(maxsize=64)
def _resample_weights(n: int, count: int) -> np.ndarray:
    """
    How often each of ``n`` inliers is drawn in each of ``count`` resamples [count, n].

    Deterministic (a fixed seed: the same frame gives the same covariance) and cached per
    size: a tracked sequence registers the same few hundred points again and again. One draw
    of count x n (the same stream as count draws of n), counted by one bincount over
    resample-offset indices.
    """
    rng = np.random.default_rng(0)
    drawn = rng.integers(0, n, (count, n)) + (np.arange(count) * n)[:, None]
    weights = np.bincount(drawn.ravel(), minlength=count * n).reshape(count, n)
    weights = weights.astype(np.float64)
    weights.flags.writeable = False
    return weights


def _focal_spread(to_ground_h: np.ndarray, intrinsics: Intrinsics) -> np.ndarray | None:
    """
    Return the nadir point's 2x2 covariance (m^2) from the focal length's relative 1-sigma.

    A wrong focal length tilts the recovered camera: at nadir the nadir point does not move,
    on an oblique view it moves by about height x the tilt error. The pose is solved again at
    the focal length +-1 sigma and half the difference is the 1-sigma shift. None when either
    end gives no camera pose; zero for calibrated intrinsics.
    """
    sigma = intrinsics.focal_sigma
    if sigma <= 0:
        return np.zeros((2, 2))
    ends = [pose_from_homography(to_ground_h, intrinsics.with_focal(1 + sign * sigma))
            for sign in (1.0, -1.0)]
    if any(end is None for end in ends):
        return None
    shift = np.array([ends[0].east_m - ends[1].east_m, ends[0].north_m - ends[1].north_m]) / 2
    return np.outer(shift, shift)


def _normalise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hartley normalisation: centred, mean distance sqrt(2); returns points and the 3x3."""
    points = np.asarray(points, np.float64)
    mean = points.mean(axis=0)
    spread = np.sqrt(((points - mean) ** 2).sum(axis=1)).mean()
    scale = math.sqrt(2.0) / spread if spread > 0 else 1.0
    T = np.array([[scale, 0.0, -scale * mean[0]], [0.0, scale, -scale * mean[1]],
                  [0.0, 0.0, 1.0]])
    return (points - mean) * scale, T


def solve(image_pts: np.ndarray, target_pts: np.ndarray, to_ground: np.ndarray,
          intrinsics: Intrinsics, config: Any, threshold: float,
          regions: Sequence[Box] | None = None) -> Registration:
    """
    Robust homography image -> target, pose, covariance, and the acceptance test.

    ``config`` is a :class:`~jzi_ros.inference.refine.RefineConfig` (its thresholds).
    ``to_ground`` maps target coordinates to local metres (identity when the targets already
    are metres); ``threshold`` is MAGSAC's in target units. ``regions``: boxes (west, south,
    east, north) one of which the nadir point must lie in.
    """
    matches = len(image_pts)
    if matches < config.min_inliers:
        return Registration(False, f"{matches} feature matches (need {config.min_inliers})",
                            matches)
    H, mask = cv2.findHomography(image_pts, target_pts, cv2.USAC_MAGSAC, threshold,
                                 maxIters=2000, confidence=0.999)
    if H is None or mask is None:
        return Registration(False, "no homography fits the matches", matches)
    inlier = mask.ravel().astype(bool)
    count = int(inlier.sum())
    result = Registration(False, "", matches, count, inlier_mask=inlier, image_pts=image_pts,
                          target_pts=target_pts, to_ground=to_ground, threshold=threshold,
                          homography=H)
    if count < config.min_inliers:
        result.reason = f"{count} inliers (need {config.min_inliers})"
        return result
    if result.inlier_ratio < config.min_inlier_ratio:
        result.reason = (f"inlier ratio {result.inlier_ratio:.2f} (need "
                         f"{config.min_inlier_ratio:g})")
        return result
    # the pose and the bootstrap resamples' poses in one batch: the acceptance test reads the
    # first, the covariance the others
    batch = np.concatenate([H[None], _bootstrap_homographies(
        image_pts[inlier], target_pts[inlier], config.bootstrap, H)])
    grounded = to_ground @ batch  # frame pixels -> local metres
    poses = poses_from_homographies(grounded, intrinsics)
    pose = ground_pose(poses, 0)
    result.pose = pose
    if pose is None:
        result.reason = "degenerate homography (no camera pose)"
        return result
    checks = [
        (pose.skew <= config.max_skew,
         f"homography is not a camera view with these intrinsics (skew {pose.skew:.2f} > "
         f"{config.max_skew:g}; wrong intrinsics or a non-planar match)"),
        (config.min_height_m <= pose.height_m <= config.max_height_m,
         f"height {pose.height_m:.0f} m outside {config.min_height_m:g}.."
         f"{config.max_height_m:g} m"),
        (pose.tilt_deg <= config.max_tilt_deg,
         f"tilt {pose.tilt_deg:.0f} deg > {config.max_tilt_deg:g} deg"),
    ]
    if regions is not None:
        checks.append((any(w <= pose.east_m <= e and s <= pose.north_m <= n
                           for w, s, e, n in regions), "nadir point outside the searched cells"))
    for ok, reason in checks:
        if not ok:
            result.reason = reason
            return result
    ok = poses["valid"][1:]
    samples = np.stack([poses["east_m"][1:][ok], poses["north_m"][1:][ok]], axis=1)
    if len(samples) < config.bootstrap // 2:
        result.reason = "inlier resamples give no stable pose"
        return result
    centred = samples - samples.mean(axis=0)
    spread = centred.T @ centred / max(len(samples) - 1, 1)  # np.cov's, without its checks
    focal = _focal_spread(grounded[0], intrinsics)
    if focal is None:
        result.reason = ("no camera pose within the guessed focal length's doubt (give the "
                         "camera's intrinsics)")
        return result
    # an orthophoto and its features are good to about half a pixel, however tight the inliers
    floor_m = max(config.sigma_floor_m, config.sigma_floor_px * abs(float(to_ground[0, 0])))
    # acceptance judges the registration (its resample spread); the published covariance also
    # carries the guessed focal length's doubt, which says nothing about the match
    cov = apply_scale_and_floor(spread, config.covariance_scale, floor_m)
    sigma = math.sqrt(float(max(np.linalg.eigvalsh(cov))))
    if not (np.all(np.isfinite(cov)) and sigma <= config.max_sigma_m):
        result.reason = f"position spread {sigma:.1f} m > {config.max_sigma_m:g} m"
        return result
    result.raw_covariance_en = spread + focal
    result.accepted = True
    result.covariance_en = apply_scale_and_floor(result.raw_covariance_en,
                                                 config.covariance_scale, floor_m)
    return result
