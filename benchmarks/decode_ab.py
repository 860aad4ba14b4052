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
The beam search of an older revision against this tree's, same weights, interleaved calls.

``benchmarks/decode_ab.py --map DEMO/map --old-rev REV``: loads ``model/decoder.py`` and
``inference/decode.py`` as they were at ``REV`` (``git show``), builds both searches (beam 4,
with and without the per-step output) eager and traced + frozen on the shipped demo model,
checks they give the same paths, then times them round-robin on one CPU thread and prints the
median and p95 thread CPU ms (the calling thread's CPU time: steady on a busy machine).
"""
import argparse
import importlib.util
from pathlib import Path
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jzi_ros.inference.bench import round_robin  # noqa: E402
from jzi_ros.inference.decode import BeamSearch  # noqa: E402
from jzi_ros.maps.pyramid import MapPyramid  # noqa: E402
from jzi_ros.model.checkpoint import load_checkpoint, read_header  # noqa: E402


def _old_module(rev: str, path: str, name: str, folder: Path):
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                            capture_output=True, text=True).stdout
    file = folder / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it is executed
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    """Time the two searches and print one line per variant."""
    parser = argparse.ArgumentParser(prog="benchmarks/decode_ab.py", description=__doc__)
    parser.add_argument("--map", type=Path, required=True)
    parser.add_argument("--model", type=Path,
                        default=ROOT / "jzi_ros" / "data" / "demo_model.safetensors")
    parser.add_argument("--old-rev", required=True, help="git revision of the old code")
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        old_decoder = _old_module(args.old_rev, "jzi_ros/model/decoder.py", "old_decoder",
                                  Path(folder))
        old_decode = _old_module(args.old_rev, "jzi_ros/inference/decode.py", "old_decode",
                                 Path(folder))
    new, _ = load_checkpoint(args.model)
    old, _ = load_checkpoint(args.model)
    decoder = old_decoder.ZoomDecoder(old.config)
    decoder.load_state_dict(new.decoder.state_dict())
    old.decoder = decoder
    new.eval(), old.eval()
    pyramid = MapPyramid.open(args.map)
    table = torch.as_tensor(np.asarray(pyramid.load_embeddings(
        read_header(args.model)["encoder_hash"]), np.float32))
    tree = pyramid.tree
    ground = torch.randn(1, table.shape[1], generator=torch.Generator().manual_seed(0)) * 0.5
    calls = {}
    with torch.no_grad():
        versions = (("old", old, old_decode.BeamSearch), ("new", new, BeamSearch))
        for name, model, search in versions:
            for steps in (False, True):
                module = search(model, tree.grid, tree.depth, 4, with_steps=steps).eval()
                traced = torch.jit.freeze(torch.jit.trace(module, (ground, table),
                                                          check_trace=False))
                calls[f"{name} eager, steps={steps}"] = lambda m=module: m(ground, table)
                calls[f"{name} jit, steps={steps}"] = lambda m=traced: m(ground, table)
        a, b = calls["old eager, steps=True"](), calls["new jit, steps=True"]()
        diff = max(float((x - y).abs().max()) for x, y in zip(a, b) if x.dtype.is_floating_point)
        print(f"same paths: {torch.equal(a[0], b[0])}; largest log-prob difference {diff:.2g}")
        timed = round_robin(calls, args.rounds, args.rounds // 8)
    for name, cpu_ms in timed.items():
        print(f"{name:24s} median {cpu_ms['median']:.3f} ms, p95 {cpu_ms['p95']:.3f} ms")
    print("load average", " ".join(open("/proc/loadavg").read().split()[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
