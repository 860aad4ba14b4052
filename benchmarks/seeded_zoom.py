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
The prior-seeded zoom against the plain fused runs: ``benchmarks/seeded_zoom.py BAG... --map``.

Replays each bag once per filter seed with ``FusionConfig(seed=s, seed_beam=True)`` and the
bag's odometry (the demo's ``/odom``), so single frame, fused (random walk, odometry) and fused
+ seeded zoom (random walk, odometry) come from the same frames and the same filter seed; prints
per bag and pooled (mean of the bags) the mean over filter seeds, with the min-max range of
R@100 m and the median. The demo's test flight is ``DEMO/bag``; validation flights (other days)
are made by ``benchmarks/demo_recipe.py fit-fusion --workdir DEMO --seeds 1 2 3``
(``DEMO/validation_seed1`` ...). Numbers: docs/fusion.md "Prior-seeded zoom".
"""
import argparse
from pathlib import Path
import sys

import demo_bag_args  # benchmarks/, next to this file (puts the checkout on sys.path)
import numpy as np

from jzi_ros.evaluation.fusion_replay import fusion_summary, FusionOptions, LABELS
from jzi_ros.evaluation.replay import replay_bag, ReplayOptions
from jzi_ros.inference.fusion_config import FusionConfig

KEYS = ("R@25", "R@50", "R@100", "R@250", "median m", "FIX share", "FIX mean NEES",
        "first FIX s", "seeded frames", "frame ms")


def _row(run: dict) -> dict:
    recall = run["all"]["recall"]
    return {"R@25": 100 * recall["25"], "R@50": 100 * recall["50"],
            "R@100": 100 * recall["100"], "R@250": 100 * recall["250"],
            "median m": run["all"]["median_m"], "FIX share": 100 * run["fix_fraction"],
            "FIX mean NEES": run["calibration"]["mean_nees"],
            "first FIX s": run["time_to_first_fix_s"],
            "seeded frames": (None if run.get("seeded_fraction") is None
                              else 100 * run["seeded_fraction"]),
            "frame ms": run.get("frame_ms_median")}


def _mean(rows: list[dict]) -> dict:
    out = {}
    for key in KEYS:
        values = [r[key] for r in rows if r[key] is not None and np.isfinite(r[key])]
        out[key] = float(np.mean(values)) if values else None
    for key in ("R@100", "median m"):
        values = [r[key] for r in rows if r[key] is not None]
        out[key + " range"] = (min(values), max(values)) if values else None
    return out


def _table(title: str, means: dict) -> str:
    lines = [f"### {title}", "", "| run | " + " | ".join(KEYS) + " |",
             "|---|" + "---:|" * len(KEYS)]
    for name, m in means.items():
        cells = []
        for key in KEYS:
            value = m[key]
            text = "-" if value is None else f"{value:.2f}" if "NEES" in key else f"{value:.1f}"
            if m.get(key + " range"):
                low, high = m[key + " range"]
                text += f" ({low:.0f}-{high:.0f})"
            cells.append(text)
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Replay every bag per filter seed and print the tables."""
    parser = argparse.ArgumentParser(prog="benchmarks/seeded_zoom.py", description=__doc__)
    parser.add_argument("bags", nargs="+", type=Path, help="demo-style bags")
    demo_bag_args.add_arguments(parser)
    parser.add_argument("--filter-seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    localizer = demo_bag_args.localizer(args)
    per_bag = {}
    for bag in args.bags:
        rows: dict[str, list[dict]] = {}
        for seed in args.filter_seeds:
            options = ReplayOptions(args.image_topic, args.gt_topic, progress=False,
                                    fusion=FusionOptions(FusionConfig(seed=seed,
                                                                      seed_beam=True),
                                                         args.odom_topic))
            runs = fusion_summary(replay_bag(bag, localizer, options))["runs"]
            for name, run in runs.items():
                rows.setdefault(name, []).append(_row(run))
        per_bag[bag] = {name: _mean(values) for name, values in rows.items()}
        print(_table(f"{bag} (filter seeds {args.filter_seeds})", per_bag[bag]), "\n",
              flush=True)
    if len(per_bag) > 1:
        names = next(iter(per_bag.values())).keys()
        pooled = {}
        for name in names:
            pooled[name] = {key: (float(np.mean([b[name][key] for b in per_bag.values()]))
                                  if all(b[name][key] is not None for b in per_bag.values())
                                  else None) for key in KEYS}
        print(_table(f"mean of the {len(per_bag)} bags", pooled))
    return 0


if __name__ == "__main__":
    sys.exit(main())
