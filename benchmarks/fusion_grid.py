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
A joint grid over the random-walk filter's parameters: ``benchmarks/fusion_grid.py BAG... --map``.

``fit-fusion`` (``fusion_replay.fit_fusion``) fits one parameter after the other; this checks
whether a joint search over acceleration noise, likelihood exponent, uniform weight and
"anywhere" probability finds a better random-walk filter on the same validation bags. Each bag
is replayed once (its measurements stored), then every combination runs the filter over
``--filter-seeds`` seeds; prints the best combinations by pooled R@100 m (every scored frame's
estimate) with their medians, and the current defaults' line. With ``--test BAG`` it also
scores the defaults and the validation-best combination on that bag (chosen without it).
Measures and prints; numbers: docs/fusion.md "Fitting".
"""
import argparse
from dataclasses import replace
import itertools
from pathlib import Path
import sys
import time
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC  # noqa: E402
from jzi_ros.demo.odometry import ODOM_TOPIC  # noqa: E402
from jzi_ros.evaluation.fusion_replay import _errors, _runs, FusionOptions  # noqa: E402
from jzi_ros.evaluation.replay import replay_bag, ReplayOptions  # noqa: E402
from jzi_ros.inference.fusion_config import FusionConfig  # noqa: E402
from jzi_ros.inference.localizer import Localizer, LocalizerConfig  # noqa: E402

GRID = {"accel_sigma_mps2": [3.0, 4.0, 5.0], "likelihood_exponent": [0.15, 0.2, 0.3],
        "uniform_weight": [0.02, 0.05, 0.1], "anywhere_prob": [0.003, 0.01, 0.03]}


def score(results, config: FusionConfig, seeds: int) -> tuple[float, float]:
    """Pooled R@100 m and median error (m) of the random-walk filter over ``seeds`` seeds."""
    errors = np.hypot(*_errors(_runs(results, config, seeds)).T)
    return float(np.mean(errors <= 100.0)), float(np.median(errors))


def add_arguments(parser: argparse.ArgumentParser, filter_seeds: int) -> None:
    """Add the validation bags, ``--map``, ``--model`` and ``--filter-seeds`` to ``parser``."""
    parser.add_argument("bags", nargs="+", type=Path, help="validation bags (demo-style)")
    parser.add_argument("--map", type=Path, required=True, help="the demo map (DEMO/map)")
    parser.add_argument("--model", type=Path,
                        default=ROOT / "jzi_ros" / "data" / "demo_model.safetensors")
    parser.add_argument("--filter-seeds", type=int, default=filter_seeds)


def replay_once(args: argparse.Namespace, bags) -> tuple[list, Callable]:
    """Replay ``bags`` once (measurements stored); return the results and a replayer."""
    localizer = Localizer.from_paths(args.map, args.model, LocalizerConfig(device="cpu"))
    options = ReplayOptions(IMAGE_TOPIC, GT_TOPIC, progress=False,
                            fusion=FusionOptions(FusionConfig(), ODOM_TOPIC))

    def replay(bag):
        return replay_bag(bag, localizer, options)
    return [replay(bag) for bag in bags], replay


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    add_arguments(parser, filter_seeds=10)
    parser.add_argument("--test", type=Path, default=None, help="a held-out bag to score")
    parser.add_argument("--top", type=int, default=8, help="combinations to print")
    args = parser.parse_args()
    results, replay = replay_once(args, args.bags)
    base = FusionConfig()
    began, rows = time.time(), []
    for combo in itertools.product(*GRID.values()):
        values = dict(zip(GRID, combo))
        rows.append((*score(results, replace(base, **values), args.filter_seeds), values))
    rows.sort(key=lambda row: (-row[0], row[1]))
    print(f"{len(rows)} combinations x {args.filter_seeds} filter seeds on "
          f"{sum(len(r.used) for r in results)} frames in {time.time() - began:.0f} s")
    print("| R@100 m | median m | " + " | ".join(GRID) + " |")
    print("|---:|---:|" + "---:|" * len(GRID))
    for r100, median, values in rows[:args.top]:
        print(f"| {r100:.1%} | {median:.1f} | " + " | ".join(f"{v:g}" for v in values.values())
              + " |")
    defaults = {name: getattr(base, name) for name in GRID}
    r100, median = score(results, base, args.filter_seeds)
    print(f"defaults {defaults}: R@100 m {r100:.1%}, median {median:.1f} m")
    if args.test is not None:
        test = [replay(args.test)]
        for name, values in (("defaults", defaults), ("validation best", rows[0][2])):
            r100, median = score(test, replace(base, **values), args.filter_seeds)
            print(f"{args.test} with the {name}: R@100 m {r100:.1%}, median {median:.1f} m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
