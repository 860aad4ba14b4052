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
Zoom and retrieval, single frame and fused, on the demo flight, with filters fitted per method.

    PYTHONPATH=. python benchmarks/retrieval_fusion.py --demo DEMO --retrieval-model R

``DEMO`` is a ``jzi demo`` work directory whose validation flights exist
(``benchmarks/demo_recipe.py fit-fusion --workdir DEMO`` writes ``DEMO/validation_seed1..3``).
Each method's filter is fitted on the three validation flights (``fusion_replay.fit_fusion``,
as ``fit-fusion`` fitted the shipped defaults for the zoom), never on the test flight
``DEMO/bag``; the test flight is then replayed with both methods (the zoom: the shipped model,
ONNX Runtime or torch on one CPU thread; retrieval: torch) and every filter runs over
``--filter-seeds`` seeds. Prints R@50/100 m, median and FIX mean NEES per row.
Measures and prints; numbers: docs/retrieval.md.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
import sys

import demo_bag_args  # benchmarks/, next to this file (puts the checkout on sys.path)
import numpy as np

from jzi_ros.evaluation.fusion_replay import fit_fusion, FusionOptions, run_filter
from jzi_ros.evaluation.replay import replay_bag, ReplayOptions
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.retrieval import RetrievalLocalizer


def scores(result, fixes) -> tuple[np.ndarray, np.ndarray]:
    """Errors (m) of every scored frame's estimate, and NEES of its FIXes."""
    errors, nees = [], []
    for record, fix in zip(result.records, fixes):
        if not record.used:
            continue
        east, north = result.tree.to_local(fix.latitude, fix.longitude)
        error = np.array([east - record.gt.east_m, north - record.gt.north_m])
        errors.append(float(np.hypot(*error)))
        if fix.ok:
            nees.append(float(error @ np.linalg.solve(fix.covariance_enu[:2, :2], error)))
    return np.array(errors), np.array(nees)


def row(name: str, runs: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """One table row: means over the runs (filter seeds), the R@100 m range in brackets."""
    r50 = np.mean([np.mean(e <= 50) for e, _ in runs])
    r100 = [np.mean(e <= 100) for e, _ in runs]
    median = np.mean([np.median(e) for e, _ in runs])
    nees = [n.mean() for _, n in runs if len(n)]
    spread = f" ({min(r100):.0%}-{max(r100):.0%})" if len(runs) > 1 else ""
    nees_text = f"{np.mean(nees):.2f}" if nees else "-"
    return (f"| {name} | {r50:.1%} | {np.mean(r100):.1%}{spread} | {median:.1f} m | "
            f"{nees_text} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/retrieval_fusion.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, required=True,
                        help="a jzi demo work directory with validation_seed1..3")
    parser.add_argument("--retrieval-model", type=Path, required=True)
    parser.add_argument("--filter-seeds", type=int, default=10)
    parser.add_argument("--backend", default="onnxruntime", choices=("torch", "onnxruntime"),
                        help="the zoom's CPU backend")
    args = parser.parse_args(argv)
    args.map, args.model = args.demo / "map", demo_bag_args.SHIPPED_MODEL
    validation = [args.demo / f"validation_seed{s}" for s in (1, 2, 3)]
    missing = [str(b) for b in validation + [args.demo / "bag"] if not b.is_dir()]
    if missing:
        parser.error(f"missing {', '.join(missing)} (benchmarks/demo_recipe.py fit-fusion "
                     f"--workdir {args.demo} writes the validation flights)")
    options = ReplayOptions(demo_bag_args.IMAGE_TOPIC, demo_bag_args.GT_TOPIC, progress=False,
                            fusion=FusionOptions(FusionConfig(), demo_bag_args.ODOM_TOPIC))
    methods = {"zoom": demo_bag_args.localizer(args),
               "retrieval": RetrievalLocalizer(args.map, args.retrieval_model, progress=False)}
    lines = ["| method | R@50 m | R@100 m | median | FIX mean NEES |",
             "|---|---:|---:|---:|---:|"]
    for name, localizer in methods.items():
        fitted = fit_fusion([replay_bag(b, localizer, options) for b in validation],
                            FusionConfig())
        config = replace(FusionConfig(), **fitted["config"])
        print(f"{name}: fitted on the validation flights: {fitted['config']}", flush=True)
        test = replay_bag(args.demo / "bag", localizer, options)
        lines.append(row(f"{name}, single frame", [scores(test, [r.fix for r in test.records])]))
        for label, track in (("random walk", None), ("odometry", test.fusion_track)):
            runs = [scores(test, [fix for fix, _ in run_filter(
                test.records, test.tree, replace(config, seed=seed), track)])
                for seed in range(args.filter_seeds)]
            lines.append(row(f"{name}, fused, {label}", runs))
    print(f"\n{args.demo / 'bag'}: filter seeds 0-{args.filter_seeds - 1}, each method's filter "
          "fitted on the validation flights\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
