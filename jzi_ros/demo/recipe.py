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
The demo trains through the same generic path as any area (docs/any-area.md): its world is
"just another raster". ``prepare`` writes the demo world's map orthophoto, its map pyramid
and one GeoTIFF per training or validation *day* (the same world in another style: season,
sun, colours); ``jzi views`` writes the validation views from the validation days and
``jzi train`` with a ``render:`` block draws fresh training views from the training days on
the fly. ``finalize`` takes the trained checkpoint, calibrates its covariance scale on the
validation views, writes the demo card (world, tile size) into its metadata and copies it,
with a small JSON card, to ``jzi_ros/data/`` (fp32: the model is a few MB).

A day is named by its seed: the style :func:`jzi_ros.demo.stages.flight_day` gives it, the
same function that picks the day a demo flight is flown. Flight seeds below
``FIRST_TRAINING_DAY`` are kept for flights (``jzi demo`` flies seed 0, ``fit-fusion``
validates on seeds 1-3), so neither training nor validation ever sees their day.
"""
from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
import time

from jzi_ros.demo.flow import DEMO_CARD_KEY
from jzi_ros.demo.stages import flight_day, make_map, make_world, world_of
from jzi_ros.demo.style import render
from jzi_ros.demo.world import WorldSpec, write_geotiff
from jzi_ros.errors import JziError
from jzi_ros.files import atomic_path, write_json
from jzi_ros.training.render import ViewSampling

GRID, DEPTH, TILE_PX = 4, 3, 112
# Day seeds: flights use 0..99 (the demo flight 0, fusion validation 1-3); training days and
# validation days are disjoint ranges above.
FIRST_TRAINING_DAY = 100
TRAIN_DAYS = tuple(range(FIRST_TRAINING_DAY, FIRST_TRAINING_DAY + 24))
VAL_DAYS = (200, 201)
DAYS = "days"
# The demo flight's camera is yaw-stabilised north-up (FlightSpec.yaw_mode "north"); training
# views get a wider yaw spread than the flight's jitter so the model tolerates gimbal error.
# Survey-drone views like the demo flight's (jzi_ros/demo/flight.py): north-up gimbal, near
# nadir, 200-320 m up, so a frame spans ~300 m and shows layout (roads, field edges, water)
# that a small encoder trained from scratch can place; lower, oblique views of uniform fields
# or housing are ambiguous at the map's 625 m / 156 m levels. benchmarks/demo_model.yaml and
# benchmarks/train_demo_model.sh spell out the same ranges for `jzi train` and `jzi views`.
SAMPLING = ViewSampling(heading_deg=(-20.0, 20.0), altitude_m=(200.0, 320.0),
                        pitch_deg=(82.0, 90.0))


def day_raster(out: Path, split: str, seed: int) -> Path:
    """Return where ``prepare`` writes the GeoTIFF of day ``seed`` (split train or val)."""
    return out / DAYS / split / f"day{seed:04d}.tif"


def prepare(out: Path, spec: WorldSpec, train_days: tuple[int, ...] = TRAIN_DAYS,
            val_days: tuple[int, ...] = VAL_DAYS, progress: bool = True) -> None:
    """
    Write ``out/world.tif``, ``out/map/``, ``out/days/{train,val}/dayNNNN.tif``, the card.

    Each day is the world rendered in the style of that day's seed, written as a GeoTIFF in
    the world's own frame, so that the generic renderer (RasterGround) reads it like any
    other raster of the map's area.
    """
    clash = sorted(set(train_days) & set(val_days))
    flights = sorted(d for d in (*train_days, *val_days) if d < FIRST_TRAINING_DAY)
    if clash or flights or not train_days:
        raise JziError(f"demo recipe: training days {list(train_days)} and validation days "
                       f"{list(val_days)} must be non-empty (training), disjoint and >= "
                       f"{FIRST_TRAINING_DAY} (lower seeds are flight days: the demo flies "
                       f"seed 0); overlapping {clash}, flight seeds {flights}")
    out.mkdir(parents=True, exist_ok=True)
    tree = spec.tree(GRID, DEPTH)
    start = time.perf_counter()
    make_world(spec, out / "world.tif")
    print(f"world: {time.perf_counter() - start:.1f} s")
    make_map(out / "world.tif", out / "map", tree, TILE_PX, progress)
    print(f"map: {time.perf_counter() - start:.1f} s")
    world = world_of(spec)
    styles = {}
    for split, days in (("train", train_days), ("val", val_days)):
        (out / DAYS / split).mkdir(parents=True, exist_ok=True)
        for old in (out / DAYS / split).glob("*.tif"):
            old.unlink()  # training reads every raster of the folder
        for seed in days:
            style = flight_day(seed)[1]
            write_geotiff(world, render(world, style), day_raster(out, split, seed))
            styles[seed] = style.to_dict()
    print(f"{len(styles)} days: {time.perf_counter() - start:.1f} s")
    write_json(out / "demo_card.json", {"world": spec.to_dict(), "tile_px": TILE_PX,
                                        "grid": GRID, "depth": DEPTH,
                                        "train_days": list(train_days),
                                        "val_days": list(val_days), "styles": styles})


def finalize(run_dir: Path, prepared: Path, val_manifest: Path, out: Path, beam: int = 4,
             checkpoint: str = "best.safetensors") -> dict:
    """Calibrate on ``val_manifest``'s val rows, stamp the demo card, write ``out`` + card."""
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
        samples = samples_in_map(val_manifest, localizer.tree, "val")
        calibration = calibrate_localizer(
            localizer, ((read_image(s.image), s.latitude, s.longitude) for s in samples))
        save_calibration(tmp, calibration)
    return _write_card(out, model, card, calibration, "validation views")


def _write_card(out: Path, model, card: dict, calibration, calibrated_on: str) -> dict:
    """Write the JSON card beside the shipped checkpoint ``out`` (hash, size, calibration)."""
    info = {"file": out.name, "bytes": out.stat().st_size,
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "model_config": model.config.to_dict(), "demo": card,
            "calibration": calibration.to_dict(), "calibrated_on": calibrated_on,
            "reproduce": "benchmarks/train_demo_model.sh"}
    write_json(out.with_suffix(".json"), info)
    return info


def validation_bags(workdir: Path, seeds: list[int], model: Path, frames: int = 200
                    ) -> list[Path]:
    """
    Return the validation flights' bags in ``workdir`` (flown first if missing).

    Each seed flies the demo world (the model card's) on another day than the demo's test
    flight (seed 0, refused); the world and the map are ``jzi demo``'s, made if missing.
    """
    from jzi_ros.demo import stages
    from jzi_ros.demo.flight import FlightSpec
    from jzi_ros.demo.flow import DemoOptions, model_card, run_demo

    if 0 in seeds:
        raise JziError("validation flights: seed 0 is the demo's test flight; use others")
    world_spec, tree, _ = model_card(model)
    if not (workdir / "map" / "embeddings.safetensors").exists():
        run_demo(DemoOptions(workdir=workdir, frames=frames, model=model, progress=False))
    bags = []
    for seed in seeds:
        bag = workdir / f"validation_seed{seed}"
        if not bag.exists():
            stages.make_bag(world_spec, workdir / "world.tif", tree, FlightSpec(frames=frames),
                            seed, bag)
        bags.append(bag)
    return bags


def calibrate_on_flights(workdir: Path, seeds: list[int], model: Path, beam: int = 4,
                         frames: int = 200) -> dict:
    """
    Calibrate ``model``'s confidence gate and covariance scale on validation flights.

    The flights see the demo's camera on other days than the test flight, so they are closer
    to what the demo scores than ``jzi views`` validation views (another camera model and
    sampling). Same as ``jzi localize --calibrate BAG ...`` on each bag; rewrites the card.
    """
    import itertools

    from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC
    from jzi_ros.evaluation.replay import labelled_frames, ReplayOptions
    from jzi_ros.inference.calibration import calibrate_localizer, save_calibration
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig
    from jzi_ros.model.checkpoint import load_checkpoint

    bags = validation_bags(workdir, seeds, model, frames)
    localizer = Localizer.from_paths(workdir / "map", model,
                                     LocalizerConfig(device="cpu", beam_width=beam))
    options = ReplayOptions(IMAGE_TOPIC, GT_TOPIC, progress=False)
    calibration = calibrate_localizer(localizer, itertools.chain(
        *(labelled_frames(bag, localizer.tree, options) for bag in bags)))
    save_calibration(model, calibration)
    loaded, metadata = load_checkpoint(model)
    return _write_card(model, loaded, metadata[DEMO_CARD_KEY], calibration,
                       f"validation flights (seeds {', '.join(map(str, seeds))})")


def fit_fusion(workdir: Path, seeds: list[int], frames: int = 200) -> dict:
    """
    Fit the fusion parameters on validation flights (other days than the demo's seed 0).

    Flies each seed over the demo world (``jzi demo``'s world and map in ``workdir``, made
    first if missing), replays it with the filters and fits the random walk's parameters,
    the FIX gate, the covariance scales and visual odometry's filter noise, pooled over all
    flights (fusion_replay.fit_fusion). The result is FusionConfig's default.
    """
    from jzi_ros.demo.flow import shipped_model
    from jzi_ros.demo.stages import fusion_replay_options
    from jzi_ros.evaluation.fusion_replay import fit_fusion as fit
    from jzi_ros.evaluation.replay import replay_bag
    from jzi_ros.inference.fusion_config import FusionConfig
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig

    model = shipped_model()
    bags = validation_bags(workdir, seeds, model, frames)
    localizer = Localizer.from_paths(workdir / "map", model, LocalizerConfig(device="cpu"))
    results = []
    for seed, bag in zip(seeds, bags):  # the demo's filters, visual odometry's too
        results.append(replay_bag(bag, localizer, fusion_replay_options()))
        print(f"validation flight seed {seed}: {len(results[-1].used)} frames")
    return fit(results, FusionConfig())


def _read_card(prepared: Path) -> dict:
    from jzi_ros.files import read_json

    card = read_json(prepared / "demo_card.json", "demo card")
    return {"world": card["world"], "tile_px": card["tile_px"],
            "train_days": card["train_days"], "val_days": card["val_days"]}


def docs_plot(report_dir: Path, out: Path, max_side: int = 1000,
              plot: str = "fusion_tracks.png") -> Path:
    """Write a small palette PNG of one of the demo report's plots for the README."""
    from PIL import Image

    if not (report_dir / plot).is_file():
        raise JziError(f"{report_dir / plot} does not exist: run `jzi demo` first (the "
                       "fusion plot needs its temporal filters, on by default)")
    image = Image.open(report_dir / plot).convert("RGB")
    image.thumbnail((max_side, max_side))
    with atomic_path(out) as tmp:
        image.quantize(colors=96).save(tmp, format="PNG", optimize=True)
    return out
