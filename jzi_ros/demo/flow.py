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
`jzi demo`: world -> map pyramid -> embeddings -> bag -> replay -> report, all cached.

Each stage's output is keyed by the parameters it was made from (and the keys of the stages
it depends on) in ``state.json``; a stage runs again only when its key changed, its output is
missing, or ``force`` is set. The world's geometry comes from the model's card (the shipped
model was trained on one particular world); ``seed`` picks the flight and the day it is flown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
from importlib import resources
import json
import logging
import os
from pathlib import Path
import time
from typing import Any, Callable

import numpy as np

from jzi_ros.demo.flight import FlightSpec
from jzi_ros.demo.world import WorldSpec
from jzi_ros.errors import JziError
from jzi_ros.files import read_json, write_json
from jzi_ros.geo import CellTree
from jzi_ros.inference.localizer import LocalizerConfig

LOG = logging.getLogger(__name__)
DEMO_MODEL = "data/demo_model.safetensors"
DEMO_CARD_KEY = "demo"  # checkpoint metadata: {"world": WorldSpec dict, "tile_px": int}
ENV_DIR = "JZI_DEMO_DIR"
THRESHOLDS_M = (25.0, 50.0, 100.0, 250.0)


def default_workdir() -> Path:
    return Path(os.environ.get(ENV_DIR) or Path.home() / ".cache" / "jzi_ros" / "demo")


def shipped_model() -> Path:
    """Return the demo model inside the installed package."""
    return Path(str(resources.files("jzi_ros").joinpath(DEMO_MODEL)))


@dataclass
class DemoOptions:
    workdir: Path = field(default_factory=default_workdir)
    frames: int = 200
    seed: int = 0
    force: bool = False
    model: Path | None = None  # None: the shipped demo model
    progress: bool = True
    localizer: LocalizerConfig | None = None  # None: LocalizerConfig(device="cpu")
    flight: FlightSpec | None = None  # None: FlightSpec() with ``frames``
    world: WorldSpec | None = None    # None: the world named by the model's card


@dataclass
class DemoResult:
    workdir: Path
    report_dir: Path
    summary: dict[str, Any]
    chance: dict[str, float]
    timings_s: dict[str, float]
    ran: list[str]


def _key(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _State:
    """state.json: the key each cached stage output was made with."""

    def __init__(self, workdir: Path, force: bool) -> None:
        self.path = workdir / "state.json"
        self.force = force
        try:
            self.keys = read_json(self.path, "demo state") if self.path.exists() else {}
        except JziError:
            self.keys = {}  # a damaged state file only means: rebuild everything

    def fresh(self, stage: str, key: str, output: Path) -> bool:
        return not self.force and self.keys.get(stage) == key and output.exists()

    def done(self, stage: str, key: str) -> None:
        self.keys[stage] = key
        write_json(self.path, self.keys)


def model_card(model_path: Path) -> tuple[WorldSpec, CellTree, int]:
    """World spec, cell tree and tile size the model was trained for (from its metadata)."""
    from jzi_ros.model.checkpoint import read_header

    header = read_header(model_path)
    card = header["metadata"].get(DEMO_CARD_KEY) or {}
    config = header["config"]
    try:
        world = WorldSpec(**card["world"]) if "world" in card else WorldSpec()
    except TypeError as err:
        raise JziError(f"checkpoint {model_path}: metadata '{DEMO_CARD_KEY}.world' is "
                       f"malformed ({err})") from None
    tile_px = int(card.get("tile_px", config["encoder"]["image_size"]))
    return world, world.tree(int(config["grid"]), int(config["depth"])), tile_px


def chance_recall(tree: CellTree, truth_en: np.ndarray,
                  thresholds_m=THRESHOLDS_M) -> dict[str, float]:
    """
    Compute the recall of a uniformly random terminal cell centre on these positions.

    For each true position, the fraction of terminal cell centres within d, averaged.
    """
    n = tree.grid ** tree.depth
    side = tree.cell_side(tree.depth)
    coords = -tree.size_m / 2 + side * (np.arange(n) + 0.5)
    ce, cn = np.meshgrid(coords, coords)
    centres = np.stack([ce.ravel(), cn.ravel()], axis=1)
    truth = np.asarray(truth_en, dtype=np.float64).reshape(-1, 2)
    if len(truth) == 0:
        return {f"{d:g}": 0.0 for d in thresholds_m}
    dist = np.hypot(*(truth[:, None, :] - centres[None]).transpose(2, 0, 1))
    return {f"{d:g}": float((dist <= d).mean()) for d in thresholds_m}


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> DemoResult:
    """Make what is missing, replay the bag through the localizer, write the report."""
    from jzi_ros.demo import stages

    workdir = Path(options.workdir).expanduser()
    workdir.mkdir(parents=True, exist_ok=True)
    model = Path(options.model) if options.model else shipped_model()
    if not model.is_file():
        raise JziError(f"demo model {model} does not exist (reproduce it with "
                       "benchmarks/train_demo_model.sh, or pass --model)")
    world_spec, tree, tile_px = model_card(model)
    if options.world is not None:
        world_spec = options.world
        tree = world_spec.tree(tree.grid, tree.depth)
    flight = options.flight or FlightSpec(frames=options.frames)
    state = _State(workdir, options.force)
    timings: dict[str, float] = {}
    ran: list[str] = []

    def stage(name: str, key: str, output: Path, make: Callable[[], Any]) -> None:
        if state.fresh(name, key, output):
            say(f"[demo] {name}: cached ({output})")
            return
        start = time.perf_counter()
        make()
        timings[name] = time.perf_counter() - start
        ran.append(name)
        state.done(name, key)
        say(f"[demo] {name}: {timings[name]:.1f} s ({output})")

    world_key = _key({"world": world_spec.to_dict(), "v": stages.VERSION})
    tif = workdir / "world.tif"
    stage("world", world_key, tif, lambda: stages.make_world(world_spec, tif))
    map_dir = workdir / "map"
    map_key = _key({"world": world_key, "tree": tree.to_dict(), "tile_px": tile_px,
                    "imagery": 1})
    stage("map", map_key, map_dir,
          lambda: stages.make_map(tif, map_dir, tree, tile_px, options.progress))
    embed_key = _key({"map": map_key, "model": stages.encoder_hash(model)})
    stage("embeddings", embed_key, map_dir / "embeddings.safetensors",
          lambda: stages.make_embeddings(map_dir, model, options.progress))
    bag_dir = workdir / "bag"
    bag_key = _key({"world": world_key, "flight": flight.to_dict(), "seed": options.seed,
                    "tree": tree.to_dict(), "v": stages.VERSION})
    stage("bag", bag_key, bag_dir,
          lambda: stages.make_bag(world_spec, tif, tree, flight, options.seed, bag_dir))

    start = time.perf_counter()
    report_dir = workdir / "report"
    summary, truth_en = stages.replay(map_dir, model, bag_dir, report_dir, options.localizer,
                                      options.progress)
    timings["replay"] = time.perf_counter() - start
    chance = chance_recall(tree, truth_en)
    summary_path = report_dir / "demo.json"
    write_json(summary_path, {"chance_recall": chance, "timings_s": timings, "ran": ran,
                              "model": str(model), "world": world_spec.to_dict(),
                              "flight": flight.to_dict(), "seed": options.seed})
    return DemoResult(workdir, report_dir, summary, chance, timings, ran)
