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
Matching options for refinement, timed alone on one map's feature index (measured, not asserted).

Query: ``--query`` descriptors drawn from the index and perturbed (a frame's ~550 SIFT
descriptors), against the index features inside a ``--window-m`` box around the map centre
(what refinement matches at the demo's footprint). Prints ms per call of: the GEMM ratio test
refinement uses, OpenCV's ``BFMatcher.knnMatch``, FLANN over the whole prebuilt index (as the
classical baseline does) and FLANN with a tree built per window.

Usage::

    PYTHONPATH=. python benchmarks/refine_matching.py refine-demo/map
"""
from __future__ import annotations

import argparse
from pathlib import Path
import time

import cv2
import numpy as np

from jzi_ros.inference.registration import ratio_matches
from jzi_ros.maps.imagery import FEATURES, load_index


def per_call_ms(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def flann():
    return cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("map_dir", type=Path)
    parser.add_argument("--query", type=int, default=550)
    parser.add_argument("--window-m", type=float, default=700.0)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    index = load_index(args.map_dir / FEATURES)[0]
    rng = np.random.default_rng(0)
    pick = rng.choice(len(index.descriptors), args.query, replace=False)
    query = index.descriptors[pick] + rng.normal(0, 8, (args.query, 128)).astype(np.float32)
    half = args.window_m / 2
    rows = np.flatnonzero(np.all(np.abs(index.points_en) < half, axis=1))
    window = index.descriptors[rows]
    whole = flann()
    whole.add([index.descriptors])
    whole.train()

    def per_window():
        matcher = flann()
        matcher.add([window])
        matcher.train()
        return matcher.knnMatch(query, k=2)
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"{args.query} query x {len(rows)} window features ({len(index.descriptors)} in the "
          f"index), load {load}, one OpenCV thread")
    timings = {
        "GEMM ratio test (refinement)": lambda: ratio_matches(query, window, "sift", 0.85),
        "BFMatcher.knnMatch": lambda: cv2.BFMatcher(cv2.NORM_L2).knnMatch(query, window, k=2),
        "FLANN, whole prebuilt index": lambda: whole.knnMatch(query, k=2),
        "FLANN, tree built per window": per_window,
    }
    for name, fn in timings.items():
        print(f"{name:32s} {per_call_ms(fn, args.repeats):7.1f} ms")


if __name__ == "__main__":
    main()
