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
What one call costs right after a ground-encoder pass, next to the same call in a tight loop.

The temporal filter runs once per frame, after the encoder (and the beam search) have evicted
the caches, so its cost is not its warm cost: every kind of call (the interpreter, a numpy
ufunc, an array built from lists, a Numba dispatch with many arguments, a pyproj point, a Fix)
first brings its code and data back. This times each kind alone as the first call after an
encoder pass (thread CPU time, median over ``--frames``) and warm, so docs/fusion.md "Filter
cost" can say which kinds a filter frame cannot avoid. Measures and prints; asserts nothing.

Usage::

    PYTHONPATH=. python benchmarks/filter_cold_calls.py --map DEMO_DIR/map \
        --model jzi_ros/data/demo_model.safetensors --frames 150
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import time

import numba
import numpy as np

from jzi_ros.inference.bench import cpu_encoder_input
from jzi_ros.inference.fix import Fix, FixStatus


@numba.njit(error_model="numpy")
def _many(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9,
          c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, d0, d1, d2):
    """Do nothing with 33 arguments (the filter frame's kernel takes 33)."""
    return 0


@numba.njit(error_model="numpy")
def _few(a, b, c):
    """Do nothing with 3 arguments."""
    return 0


def main() -> None:
    """Time each kind of call cold (after an encoder pass) and warm; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--map", type=Path, required=True, help="map directory")
    parser.add_argument("--model", type=Path, required=True, help="model checkpoint")
    parser.add_argument("--frames", type=int, default=150, help="cold samples per call")
    args = parser.parse_args()
    localizer, pixels = cpu_encoder_input(args.map, args.model)
    tree = localizer.tree
    arrays = [np.zeros(10) for _ in range(33)]
    values = np.random.default_rng(1).random(200)
    cov = np.eye(3)
    calls = {
        "nothing (a lambda)": lambda: None,
        "numpy ufunc (x * 0.95)": lambda: values * 0.95,
        "numpy np.exp(x, out=x)": lambda: np.exp(values, out=values),
        "numpy array from lists (3 x 3)": lambda: np.array(cov.tolist(), np.float64),
        "numpy np.empty": lambda: np.empty(60),
        "Numba call, 3 arguments": lambda: _few(*arrays[:3]),
        "Numba call, 33 arguments": lambda: _many(*arrays),
        "pyproj one point (to_latlon)": lambda: tree.to_latlon(12.5, 40.25),
        "Fix(...) with its checks": lambda: Fix(FixStatus.FIX, 45.0, 7.0, 0.0, cov, 0.5),
    }
    for call in calls.values():  # (compiles the Numba functions)
        call()
    cold = {name: [] for name in calls}
    for _ in range(args.frames):
        for name, call in calls.items():
            localizer.backend.encode(pixels)
            start = time.thread_time_ns()
            call()
            cold[name].append(time.thread_time_ns() - start)
    print("| call | first after an encoder pass, us | warm, us |\n|---|---:|---:|")
    for name, call in calls.items():
        warm = []
        for _ in range(500):
            start = time.thread_time_ns()
            call()
            warm.append(time.thread_time_ns() - start)
        print(f"| {name} | {np.median(cold[name]) / 1e3:.1f} | {np.median(warm) / 1e3:.1f} |")
    print(f"(thread CPU time, medians; one thread; load average {os.getloadavg()[0]:.2f})")
    localizer.close()


if __name__ == "__main__":
    main()
