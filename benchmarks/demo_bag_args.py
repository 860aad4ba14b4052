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

"""The map, model and topics of a demo-style bag, shared by the fusion benchmarks."""
import argparse
from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's jzi_ros, installed or not

from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC  # noqa: E402
from jzi_ros.demo.odometry import ODOM_TOPIC  # noqa: E402
from jzi_ros.inference.localizer import Localizer, LocalizerConfig  # noqa: E402

SHIPPED_MODEL = ROOT / "jzi_ros" / "data" / "demo_model.safetensors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--map``, ``--model`` and the demo bag's topics to ``parser``."""
    parser.add_argument("--map", type=Path, required=True, help="the demo map (DEMO/map)")
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL,
                        help="checkpoint (default: the shipped demo model)")
    parser.add_argument("--image-topic", default=IMAGE_TOPIC)
    parser.add_argument("--gt-topic", default=GT_TOPIC)
    parser.add_argument("--odom-topic", default=ODOM_TOPIC)
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"),
                        help="CPU backend of the zoom (default torch, as the fusion numbers "
                             "were taken)")


def localizer(args: argparse.Namespace) -> Localizer:
    """Return the CPU localizer on one thread (torch unless ``--backend`` says otherwise)."""
    return Localizer.from_paths(args.map, args.model, LocalizerConfig(
        backend=getattr(args, "backend", "torch"), device="cpu", threads=1))
