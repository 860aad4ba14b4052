#!/usr/bin/env python3
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
The frame resize against one OpenCV area pass: ``benchmarks/resize_bench.py IMAGE``.

Cuts a 16:9 region of IMAGE (any photo or orthophoto OpenCV reads), scales it to common
camera sizes, and times ``jzi_ros.model.preprocess.resize`` to the encoder's input against a
single ``cv2.INTER_AREA`` pass on one OpenCV thread, with the largest and mean absolute
difference in grey levels. Numbers: docs/training.md.
"""
import argparse
from pathlib import Path
import sys
import time

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jzi_ros.model.preprocess import resize  # noqa: E402

SIZES = ((320, 240), (640, 480), (1280, 720), (1920, 1080), (3840, 2160))


def _ms(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main(argv: list[str] | None = None) -> int:
    """Time both resizes per camera size and target; print a markdown table."""
    parser = argparse.ArgumentParser(prog="benchmarks/resize_bench.py", description=__doc__)
    parser.add_argument("image", type=Path, help="a photo or orthophoto")
    parser.add_argument("--targets", type=int, nargs="+", default=[70, 112],
                        help="encoder input sides, px (default 70 112)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    source = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if source is None:
        parser.error(f"{args.image}: OpenCV cannot read it as an image")
    rows = min(source.shape[0], source.shape[1] * 9 // 16)
    region = np.ascontiguousarray(source[:rows, :rows * 16 // 9])
    cv2.setNumThreads(1)
    print("| frame | target | one area pass ms | resize ms | speed-up | max / mean abs diff |")
    print("|---|---:|---:|---:|---:|---|")
    for width, height in SIZES:
        shrink = width <= region.shape[1]
        frame = np.ascontiguousarray(cv2.resize(
            region, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))
        for side in args.targets:
            exact = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
            diff = np.abs(resize(frame, side, side).astype(int) - exact)
            one = _ms(lambda: cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA),
                      args.repeats)
            ours = _ms(lambda: resize(frame, side, side), args.repeats)
            print(f"| {width} x {height} | {side} | {one:.2f} | {ours:.2f} | {one / ours:.1f}x "
                  f"| {diff.max()} / {diff.mean():.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
