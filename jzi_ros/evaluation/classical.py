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
The classical baseline, and the side-by-side table of localization methods.

Classical global registration is what a user would otherwise pick: the frame's local features
matched against one feature index of the whole map (built at map-build time, see
:mod:`jzi_ros.maps.imagery`), a MAGSAC homography, and the same pose recovery and acceptance
test as refinement (:func:`jzi_ros.inference.registration.solve`), without the zoom. It has the
Localizer's replay interface, so ``jzi replay --method classical`` scores it like the zoom.

:func:`method_summary` scores any method the same way (recall at 5..100 m over all frames,
median error of the fixes, fix rate, false-fix rate, latency), so reports put zoom, zoom +
refinement and classical registration side by side.
"""
from __future__ import annotations

import logging
from pathlib import Path
import time
from typing import Sequence

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.inference.camera_pose import fit_frame, Intrinsics
from jzi_ros.inference.fix import Fix, FixStatus
from jzi_ros.inference.refine import (describe_registered, RefineConfig,
                                      registered_covariance_en)
from jzi_ros.inference.registration import frame_features, index_matcher, register_whole_map

LOG = logging.getLogger(__name__)

RECALL_M = (5.0, 10.0, 25.0, 50.0, 100.0)
FALSE_FIX_M = 50.0  # a fix farther than this from the truth is a false fix
NO_ALTITUDE_SIGMA_M = 100.0  # Up sigma of a classical fix (it publishes no altitude)


class ClassicalLocalizer:
    """Image -> Fix by registration against the whole map's feature index (no zoom)."""

    def __init__(self, map_dir: str | Path, config: RefineConfig | None = None,
                 intrinsics: Intrinsics | None = None) -> None:
        from jzi_ros.maps.imagery import FEATURES, FeatureIndex
        from jzi_ros.maps.pyramid import MapPyramid

        self.pyramid = MapPyramid.open(map_dir)
        self.tree = self.pyramid.tree
        self.config = config or RefineConfig()
        self.georef_sigma_m = self.config.georef_sigma_for(self.pyramid)
        self.intrinsics = intrinsics
        features = Path(map_dir) / FEATURES
        if not features.is_file():
            raise JziError(f"map {map_dir} has no feature index ({FEATURES}), so the classical "
                           "baseline cannot run; rebuild the map with `jzi map build`")
        self.index = FeatureIndex.load(features)
        if self.index.detector != self.config.detector:
            raise JziError(f"feature index {features} holds {self.index.detector} features, "
                           f"the configured detector is {self.config.detector}; use "
                           f"--detector {self.index.detector} or rebuild the map")
        self.backend_name = f"classical-{self.index.detector}"
        self.matcher = index_matcher(self.index.descriptors, self.index.detector)
        centre = self.tree.cell_center(())
        self._no_fix_at = centre
        self._no_fix_variance = self.tree.size_m ** 2 / 12.0

    @property
    def nbytes(self) -> int:
        """Return the feature index's size in memory (descriptors + keypoints)."""
        return self.index.nbytes

    def _no_fix(self, reason: str, timings: dict[str, float]) -> Fix:
        return Fix.no_fix(f"classical registration: {reason}", self._no_fix_at[0],
                          self._no_fix_at[1], 0.0, self._no_fix_variance, timings)

    def localize(self, image_rgb: np.ndarray, intrinsics: Intrinsics | None = None,
                 heading_deg: float | None = None) -> Fix:
        # heading_deg is accepted for the Localizer's interface; SIFT/ORB are rotation invariant
        start = time.perf_counter()
        config = self.config
        height, width = image_rgb.shape[:2]
        K = (intrinsics or self.intrinsics
             or config.camera(width, height))
        image_rgb, K = fit_frame(image_rgb, K, config.max_frame_px)
        points, descriptors = frame_features(image_rgb, config)
        if len(points) < config.min_inliers or len(self.index.points_en) < config.min_inliers:
            return self._no_fix(f"{len(points)} frame features, {len(self.index.points_en)} "
                                "in the map index", {})
        result = register_whole_map(points, descriptors, self.index, self.matcher, self.tree,
                                    K, config)
        timings = {"total": (time.perf_counter() - start) * 1e3}
        if not result.accepted:
            return self._no_fix(result.reason, timings)
        pose = result.pose
        lat, lon = self.tree.to_latlon(pose.east_m, pose.north_m)
        cov = np.zeros((3, 3))
        cov[:2, :2] = registered_covariance_en(result, self.georef_sigma_m)
        cov[2, 2] = NO_ALTITUDE_SIGMA_M ** 2
        return Fix(FixStatus.FIX, float(lat), float(lon), 0.0, cov, result.inlier_ratio,
                   pose.east_m, pose.north_m, (), "", timings, refined=True,
                   refinement=describe_registered(result, self.georef_sigma_m),
                   georef_sigma_m=self.georef_sigma_m)

    def close(self) -> None:
        pass


def method_summary(errors_m: Sequence[float], fixed: Sequence[bool],
                   latency_ms: Sequence[float], refined: Sequence[bool] | None = None
                   ) -> dict:
    """
    Score one method over the same frames.

    ``errors_m`` per frame (the published position's error, NO_FIX frames included), ``fixed``
    whether it published a fix. Recall counts fixes within d over all frames; the false-fix rate
    counts fixes off by more than :data:`FALSE_FIX_M` over all frames. With ``refined`` also the
    acceptance rate, the accepted frames' median error and the false acceptances.
    """
    errors = np.asarray(errors_m, np.float64)
    fixed = np.asarray(fixed, bool)
    n = max(len(errors), 1)
    good = errors[fixed]
    out = {"frames": int(len(errors)),
           "recall": {f"{d:g}": float(np.sum(fixed & (errors <= d)) / n) for d in RECALL_M},
           "median_m": float(np.median(good)) if good.size else None,
           "fix_rate": float(fixed.sum() / n),
           "false_fix_rate": float(np.sum(fixed & (errors > FALSE_FIX_M)) / n),
           "latency_ms": float(np.median(latency_ms)) if len(latency_ms) else None}
    if refined is not None:
        refined = np.asarray(refined, bool)
        accepted = errors[refined]
        out.update(acceptance_rate=float(refined.sum() / n),
                   accepted_median_m=float(np.median(accepted)) if accepted.size else None,
                   false_acceptance_rate=float(np.sum(refined & (errors > FALSE_FIX_M)) / n))
    return out


def format_methods(rows: dict[str, dict]) -> str:
    """Return a markdown table of :func:`method_summary` rows keyed by method name."""
    recall = " | ".join(f"R@{d:g} m" for d in RECALL_M)
    lines = [f"| method | frames | {recall} | median m | fix rate | false fix | "
             "accepted (median m, false) | ms/frame | memory MiB |",
             "|" + "---|" * (8 + len(RECALL_M))]

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f} %"

    def num(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)
    for name, r in rows.items():
        accepted = "-"
        if "acceptance_rate" in r:
            accepted = (f"{pct(r['acceptance_rate'])} ({num(r['accepted_median_m'])}, "
                        f"{pct(r['false_acceptance_rate'])})")
        lines.append(f"| {name} | {r['frames']} | "
                     + " | ".join(pct(v) for v in r["recall"].values())
                     + f" | {num(r['median_m'])} | {pct(r['fix_rate'])} | "
                       f"{pct(r['false_fix_rate'])} | {accepted} | {num(r['latency_ms'])} | "
                       f"{num(r.get('memory_mib'))} |")
    return "\n".join(lines)
