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
How the shipped demo model is made: ``benchmarks/train_demo_model.sh`` runs these steps.

The command line is ``benchmarks/demo_recipe.py`` (a tool, not part of the ``jzi`` command).

``prepare``: the demo world, its map pyramid and a training/validation image set;
``finalize``: take ``jzi train``'s best checkpoint, calibrate its covariance scale on the
validation images (held-out styles), write the demo card (world, tile size) into its metadata
and copy it, with a small JSON card, to ``jzi_ros/data/`` (fp32: the model is a few MB).
"""
from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
import time

from jzi_ros.demo.dataset import DatasetSpec, make_dataset, MANIFEST
from jzi_ros.demo.flow import DEMO_CARD_KEY
from jzi_ros.demo.stages import make_map, make_world
from jzi_ros.demo.world import WorldSpec
from jzi_ros.errors import JziError
from jzi_ros.files import atomic_path, write_json
from jzi_ros.training.render import ViewSampling

GRID, DEPTH, TILE_PX = 4, 3, 112
# The demo flight's camera is yaw-stabilised north-up (FlightSpec.yaw_mode "north"); training
# views get a wider yaw spread than the flight's jitter so the model tolerates gimbal error.
# Survey-drone views like the demo flight's (jzi_ros/demo/flight.py): north-up gimbal, near
# nadir, 200-320 m up, so a frame spans ~300 m and shows layout (roads, field edges, water)
# that a small encoder trained from scratch can place; lower, oblique views of uniform fields
# or housing are ambiguous at the map's 625 m / 156 m levels.
SAMPLING = ViewSampling(heading_deg=(-20.0, 20.0), altitude_m=(200.0, 320.0),
                        pitch_deg=(82.0, 90.0))


def prepare(out: Path, spec: WorldSpec, dataset: DatasetSpec, progress: bool = True) -> None:
    """Write ``out/world.tif``, ``out/map/``, ``out/dataset/manifest.csv`` and the demo card."""
    out.mkdir(parents=True, exist_ok=True)
    tree = spec.tree(GRID, DEPTH)
    start = time.perf_counter()
    world = make_world(spec, out / "world.tif")
    print(f"world: {time.perf_counter() - start:.1f} s")
    make_map(out / "world.tif", out / "map", tree, TILE_PX, progress)
    print(f"map: {time.perf_counter() - start:.1f} s")
    make_dataset(world, tree, out / "dataset", dataset, SAMPLING, overwrite=True,
                 progress=progress)
    print(f"dataset: {time.perf_counter() - start:.1f} s")
    write_json(out / "demo_card.json", {"world": spec.to_dict(), "tile_px": TILE_PX,
                                        "grid": GRID, "depth": DEPTH})


def finalize(run_dir: Path, prepared: Path, out: Path, beam: int = 4,
             checkpoint: str = "best.safetensors") -> dict:
    """Calibrate, stamp the demo card and write ``out`` + its JSON card."""
    from jzi_ros.inference.calibration import calibrate_localizer, save_calibration
    from jzi_ros.inference.image import read_image
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig
    from jzi_ros.maps.embed import embed_map
    from jzi_ros.model.checkpoint import load_checkpoint, save_checkpoint
    from jzi_ros.training.manifest import samples_in_map

    model, metadata = load_checkpoint(run_dir / checkpoint)
    card = {**_read_card(prepared), "trained": metadata.get("metrics"),
            "created": datetime.date.today().isoformat()}
    with atomic_path(out) as tmp:
        save_checkpoint(tmp, model, {**metadata, DEMO_CARD_KEY: card})
        embed_map(prepared / "map", tmp, progress=False)
        localizer = Localizer.from_paths(prepared / "map", tmp,
                                         LocalizerConfig(device="cpu", beam_width=beam))
        samples = samples_in_map(prepared / "dataset" / MANIFEST, localizer.tree, "val")
        calibration = calibrate_localizer(
            localizer, ((read_image(s.image), s.latitude, s.longitude) for s in samples))
        save_calibration(tmp, calibration)
    info = {"file": out.name, "bytes": out.stat().st_size,
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "model_config": model.config.to_dict(), "demo": card,
            "calibration": calibration.to_dict(),
            "reproduce": "benchmarks/train_demo_model.sh"}
    write_json(out.with_suffix(".json"), info)
    return info


def fit_fusion(workdir: Path, seeds: list[int], frames: int = 200) -> dict:
    """
    Fit the fusion parameters on validation flights (other days than the demo's seed 0).

    Flies each seed over the demo world (``jzi demo``'s world and map in ``workdir``, made
    first if missing), replays it with the filters and fits the random walk's parameters,
    the FIX gate and the covariance scale pooled over all flights
    (fusion_replay.fit_fusion). The result is FusionConfig's default.
    """
    from jzi_ros.demo import stages
    from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC
    from jzi_ros.demo.flight import FlightSpec
    from jzi_ros.demo.flow import DemoOptions, model_card, run_demo, shipped_model
    from jzi_ros.demo.odometry import ODOM_TOPIC
    from jzi_ros.evaluation.fusion_replay import fit_fusion as fit, FusionOptions
    from jzi_ros.evaluation.replay import replay_bag, ReplayOptions
    from jzi_ros.inference.fusion_config import FusionConfig
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig

    if 0 in seeds:
        raise JziError("fit-fusion: seed 0 is the demo's test flight; validate on others")
    model = shipped_model()
    world_spec, tree, _ = model_card(model)
    if not (workdir / "map" / "embeddings.safetensors").exists():
        run_demo(DemoOptions(workdir=workdir, frames=frames, progress=False))
    localizer = Localizer.from_paths(workdir / "map", model, LocalizerConfig(device="cpu"))
    results = []
    for seed in seeds:
        bag = workdir / f"validation_seed{seed}"
        if not bag.exists():
            stages.make_bag(world_spec, workdir / "world.tif", tree, FlightSpec(frames=frames),
                            seed, bag)
        options = ReplayOptions(IMAGE_TOPIC, GT_TOPIC, progress=False,
                                fusion=FusionOptions(FusionConfig(), ODOM_TOPIC))
        results.append(replay_bag(bag, localizer, options))
        print(f"validation flight seed {seed}: {len(results[-1].used)} frames")
    return fit(results, FusionConfig())


def _read_card(prepared: Path) -> dict:
    from jzi_ros.files import read_json

    card = read_json(prepared / "demo_card.json", "demo card")
    return {"world": card["world"], "tile_px": card["tile_px"]}


def docs_plot(report_dir: Path, out: Path, max_side: int = 720) -> Path:
    """Write a small palette PNG of the demo's trajectory plot for the README."""
    from PIL import Image

    image = Image.open(report_dir / "trajectory.png").convert("RGB")
    image.thumbnail((max_side, max_side))
    with atomic_path(out) as tmp:
        image.quantize(colors=96).save(tmp, format="PNG", optimize=True)
    return out
