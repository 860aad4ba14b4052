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
The encoder and the beam search of each CPU backend, called round-robin on one thread.

``PYTHONPATH=. python benchmarks/cpu_graphs.py --map DEMO/map``: opens the shipped demo model
(or ``--model``) with torch ``jit``, torch ``aoti`` (compiled on first use, then cached) and
ONNX Runtime (exported on first use), checks that every backend gives the ``jit`` paths, then
calls each backend's encoder and beam search in turn ``--rounds`` times and prints the median
and p95 thread CPU ms (steady on a busy machine). Round-robin means every call starts with
another model's weights in the cache, as the encoder and the search meet inside a frame.
"""
import argparse
from pathlib import Path
import sys
import warnings

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jzi_ros.inference.bench import bench_frame, round_robin  # noqa: E402
from jzi_ros.inference.localizer import Localizer, LocalizerConfig  # noqa: E402

BACKENDS = {"torch jit": {"backend": "torch", "cpu_graph": "jit"},
            "torch aoti": {"backend": "torch", "cpu_graph": "aoti"},
            "onnxruntime": {"backend": "onnxruntime"}}


def main(argv: list[str] | None = None) -> int:
    """Time every backend's encoder and search; one line each."""
    parser = argparse.ArgumentParser(prog="benchmarks/cpu_graphs.py", description=__doc__)
    parser.add_argument("--map", type=Path, required=True)
    parser.add_argument("--model", type=Path,
                        default=ROOT / "jzi_ros" / "data" / "demo_model.safetensors")
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    localizers = {name: Localizer.from_paths(args.map, args.model, LocalizerConfig(
        threads=args.threads, **fields)) for name, fields in BACKENDS.items()}
    reference = localizers["torch jit"]
    pixels = reference.preprocess(bench_frame(), None)[None]
    ground = reference.backend.encode(pixels)
    paths, log_probs = reference.backend.decode(ground)
    calls = {}
    for name, localizer in localizers.items():
        other_paths, other_lp = localizer.backend.decode(ground)
        print(f"{name}: same paths as torch jit {bool(np.array_equal(other_paths, paths))}, "
              f"largest log-prob difference {float(np.abs(other_lp - log_probs).max()):.1e}")
        calls[f"{name} encoder"] = lambda b=localizer.backend: b.encode(pixels)
        calls[f"{name} beam search"] = lambda b=localizer.backend: b.decode(ground)
    for name, cpu_ms in round_robin(calls, args.rounds, args.rounds // 10).items():
        print(f"{name:26s} median {cpu_ms['median']:.3f} ms, p95 {cpu_ms['p95']:.3f} ms")
    print("load average", " ".join(open("/proc/loadavg").read().split()[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
