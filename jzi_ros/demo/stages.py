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

"""The stages of `jzi demo`, each a function of its inputs that writes one output."""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from jzi_ros.demo import odometry
from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC, write_bag
from jzi_ros.demo.flight import FlightSpec, fly
from jzi_ros.demo.layout import generate_world
from jzi_ros.demo.style import render, Style
from jzi_ros.demo.views import capture
from jzi_ros.demo.world import World, WorldSpec, write_geotiff
from jzi_ros.geo import CellTree
from jzi_ros.inference.localizer import LocalizerConfig

LOG = logging.getLogger(__name__)
VERSION = 2  # bump when the world generator or the bag renderer changes their output


@functools.lru_cache(maxsize=1)
def world_of(spec: WorldSpec) -> World:
    """Return the generated world, kept for the next stage of a run (it is deterministic)."""
    return generate_world(spec)


def make_world(spec: WorldSpec, tif: Path) -> World:
    """Generate the world and write its map-style rendering as the orthophoto GeoTIFF."""
    world = world_of(spec)
    write_geotiff(world, render(world, Style.map()), tif)
    return world


def make_map(tif: Path, map_dir: Path, tree: CellTree, tile_px: int, progress: bool) -> None:
    from jzi_ros.maps.build import build_pyramid

    # the synthetic world is its own truth: the map's georeferencing is exact (0, not unknown)
    build_pyramid(tif, map_dir, tree, tile_px=tile_px, overwrite=True, progress=progress,
                  georef_sigma_m=0.0)


def fusion_replay_options(progress: bool = False, fusion_config=None):
    """
    Return the demo's replay options: the filters next to the single frames.

    A random walk, the bag's odometry, and the frames' own motion (the demo camera: a
    north-up gimbal, so a fixed heading, at the flight's mean height).
    """
    from jzi_ros.evaluation.bag_heading import HeadingOptions
    from jzi_ros.evaluation.fusion_replay import FusionOptions
    from jzi_ros.evaluation.replay import ReplayOptions
    from jzi_ros.inference.fusion_config import FusionConfig
    from jzi_ros.inference.visual_odometry import VisualOdometryConfig

    flight = FlightSpec()
    visual = VisualOdometryConfig(height_m=sum(flight.altitude_m) / 2, hfov_deg=flight.hfov_deg)
    fusion = FusionOptions(fusion_config or FusionConfig(), odom_topic=odometry.ODOM_TOPIC,
                           visual_odometry=visual)
    return ReplayOptions(IMAGE_TOPIC, GT_TOPIC, progress=progress, fusion=fusion,
                         heading=HeadingOptions("fixed", yaw_deg=90.0))


def encoder_hash(model: Path) -> str:
    from jzi_ros.model.checkpoint import read_header

    return str(read_header(model)["encoder_hash"])


def make_embeddings(map_dir: Path, model: Path, progress: bool) -> None:
    from jzi_ros.maps.embed import embed_map

    embed_map(map_dir, model, batch_size=32, device="cpu", progress=progress)


def flight_day(seed: int) -> tuple[np.random.Generator, Style]:
    """Return the flight's random stream and the (never the map's) style of the day it is flown."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xf1, 0x9e]))
    return rng, Style.random(rng, f"flight{seed}")


def make_bag(spec: WorldSpec, tif: Path, tree: CellTree, flight: FlightSpec, seed: int,
             bag_dir: Path) -> None:
    """Fly over the world on another day and record the camera and the true position."""
    world = world_of(spec)
    rng, style = flight_day(seed)
    styled = render(world, style)
    poses, stamps = fly(rng, tree.size_m, flight)
    camera = flight.camera
    frames = ((stamp, capture(world, styled, camera, pose, rng),
               (pose.east_m, pose.north_m, pose.altitude_m))
              for stamp, pose in zip(stamps, poses))
    track = np.array([(pose.east_m, pose.north_m) for pose in poses])
    write_bag(bag_dir, tree, frames, overwrite=True,
              odometry=odometry.simulate(seed, track, stamps))


def replay(map_dir: Path, model: Path, bag_dir: Path, report_dir: Path,
           config: LocalizerConfig | None, progress: bool
           ) -> tuple[dict[str, Any], np.ndarray]:
    """
    Localize every bag frame and write the report.

    Returns its summary and the true positions (east/north metres) of the scored frames.
    """
    from jzi_ros.evaluation.replay import replay_bag
    from jzi_ros.evaluation.report import write_report
    from jzi_ros.inference.localizer import Localizer

    localizer = Localizer.from_paths(map_dir, model, config or LocalizerConfig(device="cpu"))
    result = replay_bag(bag_dir, localizer, fusion_replay_options(progress))
    summary = write_report(result, report_dir, localizer.pyramid, overwrite=True)
    truth = np.array([(r.gt.east_m, r.gt.north_m) for r in result.used], np.float64)
    return summary, truth.reshape(-1, 2)
