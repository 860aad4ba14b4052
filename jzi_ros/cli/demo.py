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

"""``jzi demo``: the whole pipeline on a generated world, on the CPU, in a few minutes."""
from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = "demo"
HELP = "run the localizer on a generated demo world (no data, GPU or ROS 2 needed)"
DESCRIPTION = """\
Generates what is missing in the work directory (an aerial world GeoTIFF, its map pyramid, the
map's embeddings for the demo model, and a bag of a drone flight over the world on another day:
other season, sun and colours), replays the bag through the localizer, prints Recall@1 and
what chance would score on this map, and writes a report with plots. Outputs are cached and
rebuilt only when their parameters change (or with --force).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jzi_ros.demo.flow import default_workdir, ENV_DIR
    from jzi_ros.inference.options import add_localizer_arguments

    parser.add_argument("--workdir", type=Path, default=None,
                        help=f"where the world, map, bag and report go (default: ${ENV_DIR} or "
                             f"{default_workdir()})")
    parser.add_argument("--frames", type=int, default=200,
                        help="camera frames in the demo flight (1 per second)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the flight path and of the day it is flown (season, sun, "
                             "colours); the world itself is the one the model was trained on")
    parser.add_argument("--force", action="store_true",
                        help="rebuild every cached output")
    parser.add_argument("--model", type=Path, default=None,
                        help="checkpoint to use instead of the shipped demo model")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_localizer_arguments(parser, device="cpu")


def format_table(summary: dict, chance: dict) -> str:
    """Return the metrics table: Recall@1 at each distance for the localizer and for chance."""
    from jzi_ros.evaluation.metrics import fmt

    top1, fix = summary["top1"], summary["fix"]
    distances = list(top1["recall"])
    head = "| | " + " | ".join(f"R@{d} m" for d in distances) + " | median error |"
    rule = "|---|" + "---:|" * (len(distances) + 1)
    rows = [head, rule]
    rows.append("| jzi (best cell, all frames) | "
                + " | ".join(fmt(top1["recall"][d], ".1f", " %", 100.0) for d in distances)
                + f" | {fmt(top1['median_m'], '.1f', ' m')} |")
    rows.append(f"| jzi (published fixes, {fix['count']} frames) | "
                + " | ".join(fmt(fix["recall"][d], ".1f", " %", 100.0) for d in distances)
                + f" | {fmt(fix['median_m'], '.1f', ' m')} |")
    rows.append("| chance (random terminal cell) | "
                + " | ".join(f"{100 * chance.get(d, 0.0):.1f} %" for d in distances) + " | |")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    from jzi_ros.demo.flow import default_workdir, DemoOptions, run_demo
    from jzi_ros.errors import JziError
    from jzi_ros.evaluation.metrics import fmt
    from jzi_ros.inference.options import localizer_config

    if args.frames < 1:
        raise JziError(f"--frames must be >= 1, got {args.frames}")
    from jzi_ros.extras import require_extra
    require_extra("jzi demo", "maps", "replay")  # the world GeoTIFF, the bag, the plots
    # every option is checked here, before minutes of world, map and bag generation
    options = DemoOptions(workdir=args.workdir or default_workdir(), frames=args.frames,
                          seed=args.seed, force=args.force, model=args.model,
                          progress=not args.no_progress, localizer=localizer_config(args))
    result = run_demo(options)
    s = result.summary
    cal = s["calibration"]
    print()
    print(format_table(s, result.chance))
    print()
    print(f"frames scored: {s['frames']['used']} of {s['frames']['in_bag']}; fix rate "
          f"{fmt(s['fix_rate'], '.0f', ' %', 100.0)}; mean NEES {fmt(cal['mean_nees'], '.2f')} "
          f"(ideal 2.0); "
          f"backend {s['backend']}, {s['frames_per_s']:.1f} frames/s")
    if s.get("fusion"):
        from jzi_ros.evaluation.fusion_replay import fusion_markdown

        print()
        print("\n".join(fusion_markdown(s["fusion"])[:-3]))
    total = sum(result.timings_s.values())
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings_s.items())
    print(f"time: {total:.0f} s ({stages})")
    plots = ", ".join(sorted(p.name for p in result.report_dir.glob("*.png")))
    print(f"report: {result.report_dir / 'report.md'}" + (f" (plots: {plots})" if plots else ""))
    return 0
