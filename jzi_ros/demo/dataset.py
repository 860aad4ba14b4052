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
Training and validation images of the demo world, with a dataset manifest for `jzi train`.

Camera positions are uniform over the map root; each image comes from one of several random
styles (season, sun, colours) that are never the map's, and training and validation use
disjoint styles so validation measures generalisation to an unseen day.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import time

import cv2
import numpy as np
from tqdm import tqdm

from jzi_ros.demo.style import render, Style
from jzi_ros.demo.views import capture
from jzi_ros.demo.world import World
from jzi_ros.errors import JziError
from jzi_ros.files import atomic_directory, write_json
from jzi_ros.geo import CellTree
from jzi_ros.training.render import sample_pose, ViewSampling

MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class DatasetSpec:
    train: int = 6000
    val: int = 600
    train_styles: int = 8
    val_styles: int = 2
    seed: int = 1
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.train < 1 or self.val < 0 or self.train_styles < 1 or (
                self.val > 0 and self.val_styles < 1):
            raise JziError(f"demo dataset: need train >= 1, val >= 0 and at least one style "
                           f"per split, got {self}")


def make_dataset(world: World, tree: CellTree, out_dir: str | os.PathLike,
                 spec: DatasetSpec = DatasetSpec(),
                 sampling: ViewSampling = ViewSampling(), overwrite: bool = False,
                 progress: bool = True) -> Path:
    """Render the images into ``out_dir/images`` and write ``out_dir/manifest.csv``."""
    from jzi_ros.training.manifest import Sample, write_manifest

    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, world.spec.seed, 0xda7a]))
    styles = [Style.random(rng, f"train{i}") for i in range(spec.train_styles)]
    styles += [Style.random(rng, f"val{i}") for i in range(spec.val_styles if spec.val else 0)]
    half = tree.size_m / 2
    jobs = ([("train", i % spec.train_styles) for i in range(spec.train)]
            + [("val", spec.train_styles + i % spec.val_styles) for i in range(spec.val)])
    out_dir = Path(out_dir)
    start = time.perf_counter()
    samples = []
    with atomic_directory(out_dir, overwrite) as tmp:
        (tmp / "images").mkdir()
        bar = tqdm(total=len(jobs), desc="demo dataset", unit="img", disable=not progress)
        for style_index, style in enumerate(styles):
            styled = render(world, style)
            for number, (split, k) in enumerate(jobs):
                if k != style_index:
                    continue
                east, north = rng.uniform(-half, half, 2)
                camera, pose = sample_pose(rng, sampling, east, north)
                image = capture(world, styled, camera, pose, rng, sampling.degrade)
                name = f"images/{number:06d}.jpg"
                cv2.imwrite(str(tmp / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
                lat, lon = tree.to_latlon(east, north)
                samples.append((number, Sample(image=tmp / name, latitude=float(lat),
                                               longitude=float(lon),
                                               heading=round(pose.heading_deg, 2),
                                               split=split)))
                bar.update()
        bar.close()
        ordered = [s for _, s in sorted(samples, key=lambda item: item[0])]
        # paths are stored relative to the manifest, so they survive the final rename
        write_manifest(tmp / MANIFEST, ordered)
        write_json(tmp / "dataset.json", {
            "world": world.spec.to_dict(), "tree": tree.to_dict(),
            "dataset": {"train": spec.train, "val": spec.val, "seed": spec.seed,
                        "jpeg_quality": spec.jpeg_quality},
            "sampling": sampling.to_dict(), "styles": [s.to_dict() for s in styles],
            "seconds": round(time.perf_counter() - start, 1)})
    return out_dir
