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

"""``jzi train-retrieval``: train the retrieval baseline on the data a zoom model trains on."""
from __future__ import annotations

import argparse
import json

from jzi_ros.errors import JziError

COMMAND = "train-retrieval"
EXTRA_POSITIONALS = "overrides"  # key=value overrides may also follow options
HELP = "train the retrieval baseline (contrastive embeddings, flat view search)"
DESCRIPTION = """\
Train the baseline the paper compares zooming against (docs/retrieval.md): the zoom's image
encoder (the config's model.encoder: a ResNet or a DINOv2) with two linear heads, trained with
a symmetric InfoNCE loss so a frame's embedding is nearest to the map view of the finest view
level's cell it lies in (in-batch negatives; frames sharing a view are not each other's
negatives). It takes the same config as `jzi train --config FILE.yaml [key=value ...]`: a
labelled manifest (its val rows, or val_fraction of its train rows, validate) or a render:
block of rasters, the map, out, the model preset and overrides (the decoder's are unused),
epochs, batch_size, lr, warmup, weight_decay, grad_clip, device, num_workers, augment and the
budgets max_steps / max_minutes. The run directory gets best.safetensors (the highest
validation recall@1 of the view search; ship this), last.safetensors (written every epoch),
metrics.jsonl and summary.json. Score it with `jzi evaluate MANIFEST --map MAP --method
retrieval --retrieval-model OUT/best.safetensors --out REPORT` or `jzi replay BAG ... --method
retrieval --retrieval-model ...`."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override config entries, e.g. epochs=5 batch_size=64 "
                             "max_minutes=15")
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="a jzi train config (examples: jzi_ros/training/configs/*.yaml, "
                             "benchmarks/demo_model.yaml)")
    parser.add_argument("--embed-dim", type=int, default=128, metavar="N",
                        help="width of the normalised embeddings")
    parser.add_argument("--temperature", type=float, default=0.07, metavar="T",
                        help="initial softmax temperature of the contrastive loss (learnt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    if not args.config and not args.overrides:
        raise JziError("jzi train-retrieval needs --config FILE.yaml (and/or key=value "
                       "overrides naming manifest, map and out)")
    from jzi_ros.training.config import load_train_config
    from jzi_ros.training.retrieval import train_retrieval

    config = load_train_config(args.config, args.overrides)
    summary = train_retrieval(config, embed_dim=args.embed_dim,
                              initial_temperature=args.temperature,
                              progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0
