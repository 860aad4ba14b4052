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

"""``jzi localize``: images in, fixes out; ``--calibrate`` fits the covariance scale."""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
import sys

from jzi_ros.cli import headingopts
from jzi_ros.errors import JziError

COMMAND = "localize"
HELP = "localize images on a map (or calibrate the covariance with --calibrate)"
DESCRIPTION = """\
Localize one or more ground images with a trained checkpoint over an embedded map and print
one fix per image (status, lat/lon, 1-sigma East/North, confidence, top path, latency).

With --calibrate MANIFEST the validation frames of a dataset manifest (split 'val', or all
frames with --split all) are localized with the given beam/position/floor settings, the
confidence gate and the covariance scale that makes the mean 2-D NEES equal 2 are fitted, and
they are stored in the checkpoint's metadata, where every Localizer built from it picks them
up. --calibrate also takes recorded flights: a ROS 2 bag (directory, .mcap or .db3) with a
camera topic and a NavSatFix ground-truth topic (--image-topic, --gt-topic), e.g. a validation
flight with RTK GPS. Calibrate on data like the deployment's (same camera, other days), never
on the flight you evaluate. Several manifests and bags are pooled. With --retrieval-model
instead of --model the same is done for a retrieval baseline checkpoint (jzi
train-retrieval): its fixes, gate and covariance scale.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jzi_ros.inference.options import add_localizer_arguments

    parser.add_argument("images", nargs="*", type=Path, help="image files (any OpenCV format)")
    parser.add_argument("--map", required=True, type=Path, dest="map_dir",
                        help="map directory built by `jzi map build` and embedded by "
                             "`jzi map embed` with this model")
    parser.add_argument("--model", type=Path, help="zoom checkpoint (.safetensors)")
    parser.add_argument("--retrieval-model", type=Path, default=None, metavar="PATH",
                        help="localize (or --calibrate) with the retrieval baseline instead "
                             "of the zoom: a checkpoint written by jzi train-retrieval for "
                             "this map (docs/retrieval.md); replaces --model")
    add_localizer_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per image instead of a text line")
    parser.add_argument("--heading", type=float, default=None, metavar="DEG",
                        help="the images' heading (degrees clockwise from north; needed by "
                             "north-up models)")
    parser.add_argument("--calibrate", type=Path, nargs="+", action="extend", default=None,
                        metavar="MANIFEST_OR_BAG",
                        help="fit and store the confidence gate and covariance scale on these "
                             "dataset manifests' validation frames and/or bags' frames with "
                             "ground truth, instead of localizing IMAGES")
    parser.add_argument("--image-topic", default=None,
                        help="--calibrate with a bag: the camera topic (sensor_msgs/Image or "
                             "CompressedImage)")
    parser.add_argument("--gt-topic", default=None,
                        help="--calibrate with a bag: the ground-truth sensor_msgs/NavSatFix "
                             "topic")
    parser.add_argument("--gt-tolerance", type=float, default=0.5, metavar="S",
                        help="--calibrate with a bag: the largest gap (s) between a frame and "
                             "the ground truth it is paired with (default 0.5)")
    headingopts.add_arguments(parser.add_argument_group(
        "--calibrate with a bag and a north-up model: the heading its frames are rotated by"))
    parser.add_argument("--split", choices=("val", "test", "train", "all"), default="val",
                        help="manifest split used by --calibrate")
    parser.add_argument("--target", choices=("mean", "median"), default="mean",
                        help="--calibrate: match the mean NEES to 2, or the median to 1.386 "
                             "(robust to a few gross errors)")
    parser.add_argument("--no-progress", action="store_true",
                        help="--calibrate: no progress bar")
    parser.add_argument("--dry-run", action="store_true",
                        help="--calibrate: print the fitted scale without writing it")


def fix_to_dict(fix, image: str) -> dict:
    """Return a JSON-able summary of a Fix (what --json prints)."""
    return {"image": image, "status": fix.status.name, "reason": fix.reason,
            "latitude": fix.latitude, "longitude": fix.longitude, "altitude": fix.altitude,
            "east_m": fix.east_m, "north_m": fix.north_m, "confidence": fix.confidence,
            "covariance_enu": fix.covariance_enu.reshape(-1).tolist(),
            "hypotheses": [{"path": list(h.path), "probability": h.probability,
                            "log_prob": h.log_prob, "latitude": h.latitude,
                            "longitude": h.longitude} for h in fix.hypotheses],
            "timings_ms": fix.timings_ms}


def _line(fix, image: str) -> str:
    sigma_e, sigma_n = fix.sigma_en_m
    path = ",".join(str(a) for a in fix.hypotheses[0].path) if fix.hypotheses else "-"
    head = (f"{image}: {fix.status.name} {fix.latitude:.7f} {fix.longitude:.7f} "
            f"sigma {sigma_e:.1f}/{sigma_n:.1f} m conf {fix.confidence:.3f} path {path} "
            f"({fix.timings_ms.get('total', 0.0):.1f} ms)")
    return head + (f" [{fix.reason}]" if fix.reason else "")


def run(args: argparse.Namespace) -> int:
    from jzi_ros.errors import BadImageError
    from jzi_ros.inference.image import read_image
    from jzi_ros.inference.localizer import Localizer
    from jzi_ros.inference.options import localizer_config

    if args.calibrate is None and not args.images:
        raise JziError("give IMAGE files to localize, or --calibrate MANIFEST_OR_BAG")
    if (args.model is None) == (args.retrieval_model is None):
        raise JziError("give one model: --model (a zoom checkpoint, jzi train) or "
                       "--retrieval-model (a retrieval checkpoint, jzi train-retrieval)")
    if args.retrieval_model is not None:
        from jzi_ros.inference.retrieval import RetrievalLocalizer

        localizer = RetrievalLocalizer(args.map_dir, args.retrieval_model,
                                       device=args.device or "cpu",
                                       progress=not args.no_progress,
                                       config=localizer_config(args))
    else:
        localizer = Localizer.from_paths(args.map_dir, args.model, localizer_config(args))
    if args.calibrate is not None:
        return _calibrate(localizer, args)
    if localizer.model_config.heading == "north-up" and args.heading is None:
        raise JziError(f"model {localizer.model_path} is north-up: pass --heading DEG (the "
                       f"images' heading, degrees clockwise from north) or use a heading-free "
                       f"model")
    failures = 0
    for path in args.images:
        try:
            fix = localizer.localize(read_image(path), heading_deg=args.heading)
        except (BadImageError, JziError) as err:
            failures += 1
            print(json.dumps({"image": str(path), "error": str(err)}) if args.json
                  else f"{path}: error: {err}", file=sys.stdout if args.json else sys.stderr)
            continue
        print(json.dumps(fix_to_dict(fix, str(path))) if args.json else _line(fix, str(path)))
    return 1 if failures else 0


def _calibrate(localizer, args: argparse.Namespace) -> int:
    from jzi_ros.evaluation.metrics import fmt
    from jzi_ros.inference.calibration import calibrate_localizer, save_calibration
    from jzi_ros.inference.image import read_image
    from jzi_ros.training.manifest import samples_in_map

    sources = []  # (rows, frame count or None)
    for path in args.calibrate:
        if _is_bag(path):
            sources.append((_bag_rows(localizer, path, args), None))
            continue
        inside = samples_in_map(path, localizer.tree, args.split)
        if len(inside) < 2:
            raise JziError(f"manifest {path}: {len(inside)} '{args.split}' frame(s) inside the "
                           "map; calibration needs at least 2 (try --split all)")
        sources.append((((read_image(s.image), s.latitude, s.longitude, s.heading)
                         for s in inside), len(inside)))
    counts = [count for _, count in sources]
    result = calibrate_localizer(localizer, itertools.chain(*(rows for rows, _ in sources)),
                                 args.target, progress=not args.no_progress,
                                 total=None if None in counts else sum(counts))
    print(f"calibration on {result.frames} frames (beam {result.beam_width}, position "
          f"{result.position}, floor {result.sigma_floor_m:g} m): scale "
          f"{result.covariance_scale:.4g}; mean NEES {result.raw_mean_nees:.2f} -> "
          f"{result.mean_nees:.2f} (median {result.median_nees:.2f}); median error "
          f"{result.median_error_m:.1f} m")
    print(f"confidence gate {result.confidence_threshold:.3g}: {result.gate_fix_rate:.0%} of "
          f"the frames are FIX, median error {result.gate_median_error_m:.1f} m (all frames "
          f"{result.median_error_m:.1f} m); placed = error <= {result.placed_radius_m:g} m")
    for row in result.gate_tradeoff:
        print(f"  threshold {row['threshold']:.3g}: fix rate {row['fix_rate']:.0%}, median "
              f"error {fmt(row['median_error_m'], '.1f', ' m')}, placed "
              f"{fmt(row['placed'], '.0%')}")
    if args.dry_run:
        print("dry run: checkpoint not modified")
    else:
        save_calibration(localizer.model_path, result)
        print(f"stored in {localizer.model_path} (metadata 'calibration')")
    return 0


def _is_bag(path: Path) -> bool:
    """Tell a ROS 2 bag (a directory with metadata.yaml, a .mcap or .db3 file) from a manifest."""
    return (path / "metadata.yaml").is_file() or path.suffix in (".mcap", ".db3")


def _bag_rows(localizer, bag: Path, args: argparse.Namespace):
    """Read the frames of ``bag`` with ground truth inside the map (and headings if north-up)."""
    from jzi_ros.evaluation.replay import is_north_up, labelled_frames, ReplayOptions

    missing = [flag for flag, value in (("--image-topic", args.image_topic),
                                        ("--gt-topic", args.gt_topic)) if not value]
    if missing:
        raise JziError(f"--calibrate {bag}: a bag needs {' and '.join(missing)} (the camera "
                       "topic and the NavSatFix ground-truth topic)")
    options = ReplayOptions(args.image_topic, args.gt_topic, gt_tolerance_s=args.gt_tolerance,
                            progress=False, heading=headingopts.heading_options(args))
    return labelled_frames(bag, localizer.tree, options, is_north_up(localizer))
