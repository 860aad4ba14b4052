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

"""``jzi train``: train a zoom model, or import the paper's dataset layout into a manifest."""
from __future__ import annotations

import argparse
import json

from jzi_ros.errors import JziError

COMMAND = "train"
EXTRA_POSITIONALS = "overrides"  # key=value overrides may also follow options
HELP = "train a zoom model on geotagged ground images and a map"
DESCRIPTION = """\
Train with `jzi train --config FILE.yaml [key=value ...]` (overrides use dotted keys, e.g.
epochs=5 model.encoder.trainable_blocks=0). The run directory gets best.safetensors (ship
this), last.safetensors + last.state.safetensors (for --resume), metrics.jsonl and
summary.json. Multi-GPU: `torchrun --nproc_per_node N -m jzi_ros.cli.main train ...`.

Import the paper's benchmark layout with `jzi train --import-paper META.csv --images DIR
--manifest-out OUT.csv`: labels are recomputed with the paper's cell tree and checked against
the CSV's `sequence` column."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override config entries, e.g. epochs=5 batch_size=16 "
                             "model.encoder.trainable_blocks=0")
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="training config (examples: jzi_ros/training/configs/*.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the config's 'out' directory from its "
                             "last.safetensors and last.state.safetensors")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    paper = parser.add_argument_group("paper dataset import")
    paper.add_argument("--import-paper", metavar="META.csv",
                       help="convert the paper's metadata CSV (image_id, latitude, longitude, "
                            "sequence) into a manifest instead of training")
    paper.add_argument("--images", metavar="DIR",
                       help="directory holding <image_id>_undistorted.jpg (with --import-paper)")
    paper.add_argument("--manifest-out", metavar="OUT.csv",
                       help="manifest to write (with --import-paper)")
    paper.add_argument("--split", default="train", choices=("train", "val", "test"),
                       help="split recorded for every imported row")
    paper.add_argument("--allow-missing-images", action="store_true",
                       help="import rows whose image file does not exist yet")


def _import_paper(args: argparse.Namespace) -> int:
    from jzi_ros.training.paper import import_paper

    if not args.images or not args.manifest_out:
        raise JziError("--import-paper needs --images DIR and --manifest-out OUT.csv")
    report = import_paper(args.import_paper, args.images, args.manifest_out, split=args.split,
                          require_images=not args.allow_missing_images)
    print(f"wrote {args.manifest_out}: {report.summary()}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.import_paper:
        return _import_paper(args)
    if not args.config and not args.overrides:
        raise JziError("jzi train needs --config FILE.yaml (and/or key=value overrides "
                       "naming manifest, map and out)")
    from jzi_ros.training.config import load_train_config
    from jzi_ros.training.loop import train

    config = load_train_config(args.config, args.overrides)
    summary = train(config, resume=args.resume, progress=not args.no_progress)
    if summary:  # empty on non-zero DDP ranks
        print(json.dumps(summary, indent=2))
    return 0
