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

"""``jzi evaluate``: the replay report from a labelled manifest of images, with baselines."""
from __future__ import annotations

import argparse
from pathlib import Path

from jzi_ros.errors import JziError

COMMAND = "evaluate"
HELP = "score a model on a labelled image manifest (the replay report, no bag needed)"
DESCRIPTION = """\
Localize the rows of MANIFEST (split --split; e.g. a test set written by `jzi views`) with
--method (the zoom, the zoom + geometric refinement against the map imagery, classical
registration against the whole map, or the retrieval baseline with --retrieval-model) and
write the replay report (report.json, report.md, frames.csv, plots) to --out, with two
baselines measured on the same rows: chance (a uniform terminal cell) and a no-image prior (the
best constant guess from --prior-manifest's training rows, or the map's centre). Calibrate
first on held-out views (`jzi localize --calibrate VAL.csv`): the report says when the test
NEES drifts from the calibration."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="labelled manifest (.csv or .jsonl)")
    parser.add_argument("--map", required=True, type=Path, help="map directory")
    parser.add_argument("--model", type=Path, default=None,
                        help="checkpoint the map was embedded with (not for --method "
                             "classical or retrieval)")
    parser.add_argument("--out", required=True, type=Path, help="report directory to create")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                        help="manifest rows to score")
    parser.add_argument("--prior-manifest", type=Path, default=None, metavar="TRAIN.csv",
                        help="training manifest for the no-image prior; unset: the map's "
                             "centre (right for views rendered uniformly over the root)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N rows")
    parser.add_argument("--backend", default="auto",
                        help="inference backend: auto, torch, onnxruntime or tensorrt")
    parser.add_argument("--device", default=None, help="torch device (cpu, cuda)")
    parser.add_argument("--beam", type=int, default=None, help="beam width")
    parser.add_argument("--position", choices=("top", "mean"), default=None,
                        help="published position (unset: the localizer's default)")
    parser.add_argument("--confidence-threshold", type=float, default=None,
                        help="confidence below which a frame is NO_FIX")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    from jzi_ros.cli import refineopts
    refineopts.add_arguments(parser, sequence=False)  # independent views: nothing to track


def run(args: argparse.Namespace) -> int:
    from jzi_ros.cli import refineopts
    from jzi_ros.evaluation.images import (baselines, calibration_check, replay_manifest,
                                           training_positions)
    from jzi_ros.evaluation.metrics import fmt
    from jzi_ros.evaluation.report import score, summarize, write_report
    from jzi_ros.training.manifest import read_manifest

    if args.out.exists() and not args.overwrite:
        raise JziError(f"--out {args.out} already exists (pass --overwrite to replace it)")
    rows = [s for s in read_manifest(args.manifest) if args.split in ("all", s.split)]
    if not rows:
        raise JziError(f"manifest {args.manifest} has no '{args.split}' rows (try --split all)")
    prior_rows = None
    if args.prior_manifest is not None:
        train_rows = [s for s in read_manifest(args.prior_manifest) if s.split == "train"]
        if not train_rows:
            raise JziError(f"prior manifest {args.prior_manifest} has no 'train' rows")
    localizer = refineopts.localizer(args)
    if args.prior_manifest is not None:
        prior_rows = training_positions(train_rows, localizer.tree)
    result = replay_manifest(args.manifest, rows[:args.limit] if args.limit else rows,
                             localizer, progress=not args.no_progress,
                             row_intrinsics=args.method != "zoom" and args.hfov is None
                             and args.intrinsics is None)
    truth = score(result).gt_en
    if not len(truth):
        raise JziError(f"manifest {args.manifest}: no '{args.split}' row could be scored")
    extra = {"baselines": baselines(localizer.tree, truth, prior_rows),
             "calibration_check": calibration_check(getattr(localizer, "calibration", None),
                                                    summarize(result)["calibration"])}
    summary = write_report(result, args.out, localizer.pyramid, overwrite=args.overwrite,
                           plots=not args.no_plots, extra=extra)
    check = extra["calibration_check"]
    step1 = summary["path_accuracy"]["1"]
    rows = {"zoom": [("model", summary["top1"], step1)],
            "refine": [("model", summary["top1"], step1),
                       ("refined", summary["estimate"], None)],
            "classical": [("classical", summary["estimate"], None)],
            "retrieval": [("retrieval", summary["top1"], step1)],
            "retrieval-refine": [("retrieval", summary["top1"], step1),
                                 ("refined", summary["estimate"], None)]}[args.method]
    rows += [(name, extra["baselines"][name], extra["baselines"][name]["path_accuracy"]["1"])
             for name in ("chance", "prior")]
    print(f"{summary['frames']['used']} images scored; report in {args.out}")
    print(f"{'':9s} {'R@25':>6s} {'R@50':>6s} {'R@100':>6s} {'R@250':>6s} {'median':>9s} "
          f"{'step 1':>7s}")
    for name, block, step in rows:
        recall = " ".join(f"{100 * v:5.1f}%" for v in block["recall"].values())
        first = "" if step is None else f"{100 * step:6.1f}%"
        print(f"{name:9s} {recall} {block['median_m']:8.1f}m {first:>7s}")
    if summary.get("refinement"):
        block = summary["refinement"]
        nees = block["accepted_calibration"]
        print(f"refinement: {block['accepted']}/{block['frames']} frames accepted, "
              f"{block['false_acceptances']} more than {block['false_m']:g} m off; "
              f"their NEES mean {fmt(nees['mean_nees'], '.2f')}, median "
              f"{fmt(nees['median_nees'], '.2f')} (ideal 2, 1.39)")
    if check:
        print(f"calibration: {check['verdict']}")
    return 0
