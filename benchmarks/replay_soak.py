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
Replay soak: a 10,000-frame bag through ``replay_bag`` with memory sampled every 1,000 frames.

Issue 13's "Done when": a long replay must keep its memory flat (no per-frame leak in decoding,
the localizer or the bag reader). The bag repeats the frames of a ``jzi demo`` bag with new,
increasing stamps (frames repeated are fine for a soak); the localizer is the demo's (shipped
model, torch CPU). Prints the resident set size (VmRSS) and the number of live Python objects
(after a collection) every ``--every`` frames, and the growth per frame after the first
sample. The replay keeps one
small FrameRecord per frame for its report by design: that is the only expected growth.

    jzi demo --workdir /tmp/soak-demo          # once: world, map, embeddings, 200-frame bag
    OMP_NUM_THREADS=2 python benchmarks/replay_soak.py /tmp/soak-demo --frames 10000
"""
from __future__ import annotations

import argparse
import gc
import itertools
from pathlib import Path
import sys
import time

import numpy as np

from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC, write_bag
from jzi_ros.evaluation.bags import open_bag
from jzi_ros.evaluation.replay import replay_bag, ReplayOptions
from jzi_ros.inference.image import decode_image
from jzi_ros.inference.localizer import Localizer, LocalizerConfig


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def read_demo_frames(bag: Path, tree) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """Return the demo bag's decoded frames with their ground truth (east, north, altitude)."""
    frames, truth = [], []
    with open_bag(bag) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == IMAGE_TOPIC:
                frames.append(decode_image(np.asarray(msg.data), "demo frame"))
            elif conn.topic == GT_TOPIC:
                east, north = tree.to_local(msg.latitude, msg.longitude)
                truth.append((float(east), float(north), float(msg.altitude)))
    return list(zip(frames, truth))


class SampledLocalizer:
    """The real Localizer, plus a memory sample every ``every`` frames."""

    def __init__(self, localizer: Localizer, every: int) -> None:
        self.localizer = localizer
        self.tree = localizer.tree
        self.backend_name = localizer.backend_name
        self.every = every
        self.calls = 0
        self.started = time.perf_counter()
        self.samples: list[tuple[int, float, int, float]] = []

    def sample(self) -> None:
        gc.collect()
        self.samples.append((self.calls, rss_mib(), len(gc.get_objects()),
                             time.perf_counter() - self.started))
        frames, rss, objects, seconds = self.samples[-1]
        print(f"frame {frames:6d}: RSS {rss:8.1f} MiB, {objects:9,d} Python objects, "
              f"{seconds:6.0f} s", flush=True)

    def localize(self, image_rgb):
        fix = self.localizer.localize(image_rgb)
        self.calls += 1
        if self.calls % self.every == 0:
            self.sample()
        return fix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", type=Path, help="a `jzi demo --workdir` folder (map, bag)")
    parser.add_argument("--frames", type=int, default=10_000, help="frames in the soak bag")
    parser.add_argument("--every", type=int, default=1_000, help="frames between samples")
    parser.add_argument("--model", type=Path, default=None,
                        help="checkpoint (default: the shipped demo model)")
    parser.add_argument("--work", type=Path, default=None,
                        help="where the soak bag goes (default: DEMO/soak_bag)")
    args = parser.parse_args(argv)
    from jzi_ros.demo.flow import shipped_model

    model = args.model or shipped_model()
    localizer = Localizer.from_paths(args.demo / "map", model,
                                     LocalizerConfig(backend="torch", device="cpu"))
    source = read_demo_frames(args.demo / "bag", localizer.tree)
    bag = args.work or args.demo / "soak_bag"
    period_ns = 100_000_000  # 10 Hz
    frames = ((1_700_000_000 * 10**9 + i * period_ns, image, pose)
              for i, (image, pose) in zip(range(args.frames), itertools.cycle(source)))
    began = time.perf_counter()
    write_bag(bag, localizer.tree, frames, overwrite=True)
    print(f"soak bag: {args.frames} frames (the demo's {len(source)} repeated) in "
          f"{time.perf_counter() - began:.0f} s -> {bag}", flush=True)
    sampled = SampledLocalizer(localizer, args.every)
    sampled.sample()  # frame 0: after the bag scan and model load, before any frame
    result = replay_bag(bag, sampled, ReplayOptions(IMAGE_TOPIC, GT_TOPIC, progress=False))
    samples = sampled.samples
    first, last = samples[1], samples[-1]  # growth from the first 1,000 frames on
    frames = max(1, last[0] - first[0])
    print(f"replayed {len(result.records)} frames ({len(result.localized)} localized) at "
          f"{len(result.records) / result.loop_s:.1f} frames/s")
    print(f"RSS {first[1]:.1f} -> {last[1]:.1f} MiB over frames {first[0]}..{last[0]}: "
          f"{(last[1] - first[1]) * 1024 / frames:+.2f} KiB/frame; Python objects "
          f"{(last[2] - first[2]) / frames:+.1f}/frame (the report's FrameRecords)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
