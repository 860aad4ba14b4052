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

"""``jzi replay`` (also ``ros2 run jzi_ros replay``): evaluate a localizer on a recorded bag."""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
import sys
from typing import Sequence

from jzi_ros.cli import (add_common_arguments, headingopts, HelpFormatter, join_negative_lists,
                         refineopts)
from jzi_ros.errors import JziError

COMMAND = "replay"
HELP = "replay a rosbag (sqlite3/mcap) through the localizer: metrics, plots, output bag"
DESCRIPTION = """\
Replay camera frames of a ROS 2 bag through the localizer (no ROS 2 needed) and score them
against a NavSatFix ground-truth topic, interpolated to each image stamp. Writes report.json,
report.md, frames.csv and PNG plots to --out; with --write-bag also a copy of the bag with the
fixes on /jzi/fix (header stamp = image stamp) for robot_localization. Ctrl-C writes the partial
report."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jzi_ros.inference.options import add_localizer_arguments

    parser.add_argument("bag", type=Path,
                        help="ROS 2 bag: a directory with metadata.yaml, or a .db3 / .mcap file")
    parser.add_argument("--map", required=True, default=argparse.SUPPRESS, type=Path,
                        help="map directory (jzi map build)")
    parser.add_argument("--model", default=None, type=Path,
                        help="checkpoint (.safetensors) the map was embedded with (needed "
                             "unless --method classical, retrieval or retrieval-refine)")
    parser.add_argument("--image-topic", required=True, default=argparse.SUPPRESS,
                        help="camera topic (sensor_msgs/Image or sensor_msgs/CompressedImage)")
    parser.add_argument("--gt-topic", required=True, default=argparse.SUPPRESS,
                        help="ground-truth sensor_msgs/NavSatFix topic (fixes with status >= 0)")
    parser.add_argument("--out", required=True, default=argparse.SUPPRESS, type=Path,
                        help="report directory to create (report.json, report.md, plots)")
    add_localizer_arguments(parser)
    parser.add_argument("--every", type=_positive_int, default=1,
                        help="use every N-th frame (in header-stamp order)")
    parser.add_argument("--start", type=_seconds, default=0.0,
                        help="skip the first S seconds after the first image stamp")
    parser.add_argument("--duration", type=_seconds, default=None,
                        help="replay only S seconds from --start; unset: to the end")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="stop after N frames; unset: no limit")
    parser.add_argument("--gt-tolerance", type=_seconds, default=0.5,
                        help="a frame is scored when a ground-truth fix lies within S seconds "
                             "of its stamp; GT is interpolated between the fixes around it "
                             "when they are at most 2 S apart, else the nearer fix is used")
    parser.add_argument("--write-bag", type=Path, default=None, metavar="OUT",
                        help="also write a copy of the bag plus the fixes as NavSatFix (header "
                             "stamp = image stamp) into this new bag directory")
    parser.add_argument("--bag-version", type=int, choices=(8, 9), default=8,
                        help="rosbag2 format of --write-bag: 8 opens in Humble, 9 needs Jazzy+")
    parser.add_argument("--bag-storage", choices=("auto", "sqlite3", "mcap"), default="auto",
                        help="storage of --write-bag (auto: same as the input bag)")
    parser.add_argument("--fix-topic", default="/jzi/fix",
                        help="topic of the fixes in --write-bag")
    refineopts.add_arguments(parser)
    fusion = parser.add_argument_group(
        "temporal fusion (docs/fusion.md) and the heading a north-up model's frames are "
        "rotated by")
    fusion.add_argument("--fusion", action="store_true",
                        help="also run the filter over the frames (random walk, and the "
                             "--odom-topic odometry when given); report both next to the "
                             "single-frame fixes")
    headingopts.add_arguments(fusion)
    fusion.add_argument("--fusion-config", type=Path, default=None,
                        help="YAML file with filter parameters (keys of FusionConfig)")
    fusion.add_argument("--seed-beam", action="store_true",
                        help="also run the filters with the prior-seeded zoom (each frame "
                             "localized again per filter, its beam seeded by that filter's "
                             "prior; FusionConfig.seed_beam) and report them next to the rest")
    fusion.add_argument("--visual-odometry", action="store_true",
                        help="also run a filter moved by the frames' own motion (consecutive "
                             "frames matched; implies --fusion): the robot's odometry from the "
                             "camera alone. Needs the frames' heading (e.g. --heading-source "
                             "fixed --heading-yaw-deg 90 for a north-up gimbal, or an IMU); "
                             "scaled by --nominal-height and --hfov / --intrinsics "
                             "(docs/fusion.md)")
    fusion.add_argument("--fit-fusion", action="store_true",
                        help="fit the filter on this (validation) bag, use and print the "
                             "values (--fusion-config keys): motion noise, likelihood "
                             "exponent, proposal, FIX gate, covariance scales; with "
                             "--visual-odometry also its noise and scale state")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out directory / --write-bag bag")


def _fusion_options(args: argparse.Namespace):
    if not (args.fusion or args.fit_fusion or args.visual_odometry):
        return None
    method = getattr(args, "method", "zoom")
    if method == "classical":
        flag = "--visual-odometry" if args.visual_odometry and not args.fusion else "--fusion"
        raise JziError(f"{flag} needs cell probabilities to fuse: use it with --method zoom, "
                       "refine or retrieval, not classical (classical registration gives "
                       "none)")
    if method.startswith("retrieval") and args.seed_beam:
        raise JziError("--seed-beam seeds the zoom's beam search: the retrieval baseline has "
                       "none (drop --seed-beam, or use --method zoom)")
    from jzi_ros.evaluation.fusion_replay import FusionOptions
    from jzi_ros.inference.fusion_config import FusionConfig

    config = FusionConfig.from_yaml(args.fusion_config) if args.fusion_config else FusionConfig()
    refineopts.refine_config(args)  # a bad --georef-sigma-m fails here, not after the frames
    if args.seed_beam:
        config = dataclasses.replace(config, seed_beam=True)
    visual = None
    if args.visual_odometry:
        from jzi_ros.inference.visual_odometry import VisualOdometryConfig

        chosen = {"height_m": args.nominal_height, "hfov_deg": args.hfov}
        visual = VisualOdometryConfig(**{k: v for k, v in chosen.items() if v is not None})
    return FusionOptions(config, args.odom_topic, args.imu_topic,
                         args.heading_source, args.heading_yaw_deg, args.fit_fusion,
                         args.georef_sigma_m,  # None: the map's, as refinement's
                         visual, refineopts.intrinsics(args))


def run(args: argparse.Namespace) -> int:
    from jzi_ros.extras import require_extra
    require_extra("replay", "replay", modules=None if not args.no_plots else ("rosbags",))
    from jzi_ros.evaluation.metrics import fmt
    from jzi_ros.evaluation.outbag import BagOutputOptions, write_fix_bag
    from jzi_ros.evaluation.replay import replay_bag, ReplayOptions
    from jzi_ros.evaluation.report import write_report
    from jzi_ros.files import refuse_overlap

    refineopts.check_sequence_options(args.method, args)
    options = ReplayOptions(args.image_topic, args.gt_topic, every=args.every,
                            start_s=args.start, duration_s=args.duration, limit=args.limit,
                            gt_tolerance_s=args.gt_tolerance, progress=not args.no_progress,
                            fusion=_fusion_options(args),
                            heading=headingopts.heading_options(args))
    options.validate()
    bag_options = BagOutputOptions(version=args.bag_version, storage=args.bag_storage,
                                   topic=args.fix_topic)
    bag_options.validate()
    # fail before minutes of inference, not after
    for path, what in ((args.out, "--out"), (args.write_bag, "--write-bag")):
        if path is not None and path.exists() and not args.overwrite:
            raise JziError(f"{what} {path} already exists (pass --overwrite to replace it)")
    if not args.bag.exists():
        raise JziError(f"bag {args.bag} does not exist")
    for path, what in ((args.out, "--out"), (args.write_bag, "--write-bag")):
        if path is not None:
            refuse_overlap(path, args.bag, what, "input bag")
    localizer = refineopts.localizer(args)
    result = replay_bag(args.bag, localizer, options)
    summary = write_report(result, args.out, getattr(localizer, "pyramid", None),
                           overwrite=args.overwrite, plots=not args.no_plots)
    top1, fix = summary["top1"], summary["fix"]
    print(f"{summary['frames']['used']} frames scored ({summary['frames']['read']} read, "
          f"backend {result.backend}): R@25/50/100/250 m "
          f"{'/'.join(fmt(v, '.0f', '', 100.0) for v in top1['recall'].values())} %, "
          f"median {fmt(top1['median_m'], '.1f', ' m')}; fix rate "
          f"{fmt(summary['fix_rate'], '.0f', ' %', 100.0)}, FIX median "
          f"{fmt(fix['median_m'], '.1f', ' m')}; report in {args.out}")
    if summary.get("fusion"):
        from jzi_ros.evaluation.fusion_replay import LABELS

        for name, row in summary["fusion"]["runs"].items():
            cal = row["calibration"]
            recall = row["all"]["recall"]["100"]
            print(f"  {LABELS.get(name, name)}: R@100 m {fmt(recall, '.1f', ' %', 100.0)}, "
                  f"median {fmt(row['all']['median_m'], '.1f', ' m')}; FIX "
                  f"{fmt(row['fix_fraction'], '.0f', ' %', 100.0)} of frames, mean NEES "
                  f"{fmt(cal['mean_nees'], '.2f')}, first FIX {row['time_to_first_fix_s']} s")
        if summary["fusion"].get("fit"):
            from jzi_ros.evaluation.fusion_replay import fitted_words

            print(f"  fitted: {fitted_words(summary['fusion']['fit'])}")
    if args.method != "zoom":
        print(_method_table(result, args.method))
    if result.interrupted:
        if args.write_bag is not None:
            print(f"interrupted: partial report written, {args.write_bag} not written",
                  file=sys.stderr)
        return 130
    if args.write_bag is not None:
        write_fix_bag(result, args.write_bag, bag_options, overwrite=args.overwrite)
        print(f"wrote {len(result.localized)} fixes on {args.fix_topic} into {args.write_bag}")
    return 0


def _method_table(result, method: str) -> str:
    """Return the side-by-side row of this method (recall 5..100 m, acceptance, latency)."""
    import math

    from jzi_ros.evaluation.classical import format_methods, method_summary

    used = result.used
    errors = [math.hypot(r.fix.east_m - r.gt.east_m, r.fix.north_m - r.gt.north_m)
              for r in used]
    row = method_summary(errors, [r.fix.ok for r in used], [r.localize_ms for r in used],
                         [r.fix.refined for r in used] if method in refineopts.REFINING
                         else None)
    return format_methods({method: row})


def _strip_ros_args(argv: Sequence[str]) -> list[str]:
    """Drop ``--ros-args ... [--]`` that ``ros2 run`` may append; this is not a ROS node."""
    out, skipping = [], False
    for arg in argv:
        if arg == "--ros-args":
            skipping = True
        elif skipping and arg == "--":
            skipping = False
        elif not skipping:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``jzi_replay`` (``ros2 run jzi_ros jzi_replay BAG --map ...``)."""
    from jzi_ros.cli.main import run_command
    from jzi_ros.threads import set_threads

    parser = argparse.ArgumentParser(prog="jzi_replay", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    add_arguments(parser)
    add_common_arguments(parser)
    argv = _strip_ros_args(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(join_negative_lists(argv))
    logging.basicConfig(level=logging.WARNING if not args.verbose_after else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    set_threads(args.threads)
    return run_command(parser.prog, run, args)


if __name__ == "__main__":
    sys.exit(main())
