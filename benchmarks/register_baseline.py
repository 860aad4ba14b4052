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
Classical baseline for a labelled view set: SIFT + MAGSAC registration against the map raster.

Each test view is matched against the map raster rendered north-up over the map's root (at
about the raster's own resolution), a homography is fitted with MAGSAC++, and the view's centre
projected through it is the position estimate. Views that do not register (fewer than
``--min-inliers`` inliers) are counted at the map's centre, so recall is over all views. Chance
and the no-image prior of :mod:`jzi_ros.evaluation.images` are printed beside it, measured on
the same views:

    python benchmarks/register_baseline.py MAP_DIR MAP_RASTER TEST_MANIFEST
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from jzi_ros.evaluation.images import baselines
from jzi_ros.evaluation.metrics import DEFAULT_RECALL_M, recall_at
from jzi_ros.inference.image import read_image
from jzi_ros.maps.build import CellRenderer
from jzi_ros.maps.pyramid import MapPyramid
from jzi_ros.maps.sources import open_source
from jzi_ros.training.manifest import samples_in_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("map_dir")
    parser.add_argument("raster", help="the raster the map was built from")
    parser.add_argument("manifest", help="labelled views (e.g. `jzi views` test set)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--map-px", type=int, default=1024, help="side of the rendered map")
    parser.add_argument("--min-inliers", type=int, default=12)
    parser.add_argument("--crs", default=None)
    args = parser.parse_args()

    tree = MapPyramid.open(args.map_dir).tree
    half = tree.size_m / 2
    with open_source(args.raster, args.crs) as src:
        reference, _ = CellRenderer(src, tree, args.map_px).render_box(
            (-half, -half, half, half), args.map_px, args.map_px)
    sift = cv2.SIFT_create(nfeatures=20000)
    grey = cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY)
    map_kp, map_desc = sift.detectAndCompute(grey, None)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    rows = samples_in_map(args.manifest, tree, args.split)
    truth = np.array([tree.to_local(s.latitude, s.longitude) for s in rows], np.float64)
    estimates, registered = [], 0
    start = time.perf_counter()
    for row in rows:
        image = cv2.cvtColor(read_image(row.image), cv2.COLOR_RGB2GRAY)
        kp, desc = sift.detectAndCompute(image, None)
        guess = np.zeros(2)
        if desc is not None and len(kp) >= 4:
            pairs = matcher.knnMatch(desc, map_desc, k=2)
            good = [m for m, n in (p for p in pairs if len(p) == 2)
                    if m.distance < 0.8 * n.distance]
            if len(good) >= args.min_inliers:
                src_pts = np.float32([kp[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
                dst_pts = np.float32([map_kp[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
                homography, inliers = cv2.findHomography(src_pts, dst_pts, cv2.USAC_MAGSAC, 5.0)
                if homography is not None and int(inliers.sum()) >= args.min_inliers:
                    h, w = image.shape
                    centre = cv2.perspectiveTransform(
                        np.float32([[[(w - 1) / 2, (h - 1) / 2]]]), homography)[0, 0]
                    pixel = tree.size_m / args.map_px
                    guess = np.array([-half + (centre[0] + 0.5) * pixel,
                                      half - (centre[1] + 0.5) * pixel])
                    registered += 1
        estimates.append(guess)
    seconds = time.perf_counter() - start
    errors = np.hypot(*(np.array(estimates) - truth).T)
    base = baselines(tree, truth, None)
    print(f"{len(rows)} views, {registered} registered ({100 * registered / len(rows):.1f} %), "
          f"{1e3 * seconds / len(rows):.0f} ms/view; map {args.map_px} px "
          f"({tree.size_m / args.map_px:.2f} m/px), {len(map_kp)} map keypoints")
    header = " ".join(f"R@{d:g}m".rjust(7) for d in DEFAULT_RECALL_M)
    print(f"{'':22s} {header}  median")
    recall = recall_at(errors, DEFAULT_RECALL_M)
    lines = [("SIFT+MAGSAC", recall, float(np.median(errors)))]
    for name in ("chance", "prior"):
        lines.append((name, {float(k): v for k, v in base[name]["recall"].items()},
                      base[name]["median_m"]))
    for name, values, median in lines:
        cells = " ".join(f"{100 * values[d]:6.1f}%" for d in DEFAULT_RECALL_M)
        print(f"{name:22s} {cells} {median:7.0f} m")


if __name__ == "__main__":
    main()
