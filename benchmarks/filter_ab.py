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
The temporal filter of an older revision against this tree's, interleaved with the encoder.

``benchmarks/filter_ab.py --map DEMO/map --old-rev REV [--bag DEMO/bag]``: loads
``inference/fusion.py`` as it was at ``REV`` (``git show``), then runs encoder, old filter
frame, encoder, new filter frame, ... (order alternating) on one CPU thread and prints the
median thread CPU ms of each (the calling thread's CPU time: steadier on a busy machine than
the wall clock). Frames: simulated zooms along a track (``bench_filter``'s) on this map and a
65,536-cell map, and with ``--bag`` the demo flight's own measurements (replayed once with the
shipped model; the random-walk filter, three passes). Measures and prints; asserts nothing.
"""
import argparse
import importlib.util
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jzi_ros.geo import CellTree  # noqa: E402
from jzi_ros.inference import fusion  # noqa: E402
from jzi_ros.inference.bench import cpu_encoder_input  # noqa: E402
from jzi_ros.inference.bench_filter import simulated_steps  # noqa: E402
from jzi_ros.inference.measurement import Measurement  # noqa: E402


def _old_fusion(rev: str, folder: Path):
    source = subprocess.run(["git", "-C", str(ROOT), "show",
                             f"{rev}:jzi_ros/inference/fusion.py"],
                            check=True, capture_output=True, text=True).stdout
    file = folder / "fusion_old.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location("fusion_old", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fusion_old"] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def _race(frames, encode, modules) -> tuple[list[float], ...]:
    """Thread CPU ms of (encoder, one filter per module) over ``frames`` (stamp, measurement)."""
    filters = [m.CellFilter(frames[0][2], m.FusionConfig()) for m in modules]
    encoder, times = [], [[] for _ in modules]
    for i, (stamp, measurement, _) in enumerate(frames):
        order = range(len(modules)) if i % 2 else reversed(range(len(modules)))
        for k in order:
            start = time.thread_time()
            encode()
            encoder.append(time.thread_time() - start)
            start = time.thread_time()
            filters[k].fix(filters[k].step(stamp, measurement), 0.0, 100.0)
            times[k].append(time.thread_time() - start)
    return encoder, *times


def main(argv: list[str] | None = None) -> int:
    """Print one line per frame source: encoder, old and new filter (median thread CPU ms)."""
    parser = argparse.ArgumentParser(prog="benchmarks/filter_ab.py", description=__doc__)
    parser.add_argument("--map", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=ROOT / "jzi_ros/data/demo_model.safetensors")
    parser.add_argument("--old-rev", required=True, help="git revision of the old filter")
    parser.add_argument("--bag", type=Path, default=None, help="the demo bag (real zooms)")
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args(argv)
    localizer, pixels = cpu_encoder_input(args.map, args.model)
    tree = localizer.tree
    sources = {}
    for label, which in (("simulated, this map", tree), ("simulated, 65,536 cells", CellTree(
            tree.center_lat, tree.center_lon, 10_000.0, grid=4, depth=4))):
        rng, half = np.random.default_rng(0), which.size_m / 2
        east = np.linspace(-0.8 * half, 0.8 * half, args.frames)
        sources[label] = [(10**18 + i * 10**9, Measurement.from_steps(which, simulated_steps(
            which, e, 0.3 * half * np.sin(3 * e / half), rng.uniform() < 0.5, rng)), which)
            for i, e in enumerate(east)]
    if args.bag is not None:
        from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC
        from jzi_ros.evaluation.fusion_replay import FusionOptions
        from jzi_ros.evaluation.replay import replay_bag, ReplayOptions

        options = ReplayOptions(IMAGE_TOPIC, GT_TOPIC, progress=False,
                                fusion=FusionOptions(fusion.FusionConfig()))
        records = replay_bag(args.bag, localizer, options).records
        sources["demo flight (3 passes)"] = [
            (r.stamp_ns + rep * 10**12, r.measurement, tree) for rep in range(3)
            for r in records if r.measurement is not None]
    with tempfile.TemporaryDirectory() as folder:
        old = _old_fusion(args.old_rev, Path(folder))
        print(f"| frames | encoder | filter at {args.old_rev} | this filter | old / new |\n"
              "|---|---:|---:|---:|---:|")
        for label, frames in sources.items():
            encoder, before, after = (1e3 * np.median(t)
                                      for t in _race(frames, lambda: localizer.backend.encode(
                                          pixels), (old, fusion)))
            print(f"| {label} | {encoder:.2f} | {before:.3f} ({100 * before / encoder:.0f} %) "
                  f"| {after:.3f} ({100 * after / encoder:.0f} %) | {before / after:.2f} |")
    print(f"(median thread CPU ms, one thread, load average {os.getloadavg()[0]:.2f})")
    localizer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
