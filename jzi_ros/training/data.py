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
Torch dataset and batch collation for training the zoom model.

A sample is (ground crops, action path, the view-table rows of its D map views). When the
encoder is trained, the collate function also loads the batch's *unique* map views (the root
view is shared by every sample, level-1 views by many) so each is encoded once per batch; it
runs inside the DataLoader workers, in parallel with the training step.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree
from jzi_ros.inference.image import as_rgb_uint8, read_image
from jzi_ros.maps.pyramid import MapPyramid
from jzi_ros.model.config import ModelConfig
from jzi_ros.model.preprocess import ground_crops, normalize, orient, resize
from jzi_ros.training.augment import augment, GROUND, MAP_VIEW
from jzi_ros.training.manifest import LabeledSamples


def read_rgb(path: Path) -> np.ndarray:
    """Read a ground image as uint8 RGB with the one image reader (same rules as localize)."""
    return as_rgb_uint8(read_image(path))


def _rotation(config: ModelConfig, rng: np.random.Generator) -> float:
    """Return the random rotation of a heading-free model's training image (else none drawn)."""
    return float(rng.uniform(0.0, 360.0)) if config.heading == "free" else 0.0


def prefix_view_indices(tree: CellTree, paths: np.ndarray) -> np.ndarray:
    """Rows of the view table seen along each path: ``int [N, D]`` (m_0 .. m_{D-1})."""
    return np.stack([tree.view_indices(paths[:, :t]) for t in range(tree.depth)], axis=1)


class ZoomDataset(Dataset):
    """Ground crops ``float [n_crops, 3, S, S]``, path ``long [D]``, view rows ``long [D]``."""

    def __init__(self, data: LabeledSamples, tree: CellTree, config: ModelConfig,
                 augment: bool, seed: int = 0) -> None:
        self.data = data
        self.config = config
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.view_rows = prefix_view_indices(tree, data.paths)
        missing = [s for s in data.samples if s.heading is None]
        if config.heading == "north-up" and missing:
            raise JziError(f"a north-up model (model.heading 'north-up') needs every row's "
                           f"heading; {len(missing)} row(s) have none (first: "
                           f"{missing[0].image}); fill the manifest's 'heading' column or "
                           f"train with model.heading=free")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        sample = self.data.samples[index]
        image = read_rgb(sample.image)
        if self.augment:
            # a generator per (seed, epoch, item): reproducible whatever the worker count
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image = orient(image, self.config, sample.heading, _rotation(self.config, rng))
            image = augment(image, GROUND, rng)
        else:
            image = orient(image, self.config, sample.heading)
        return {"ground": normalize(ground_crops(image, self.config)),
                "path": torch.from_numpy(self.data.paths[index].copy()),
                "view_rows": torch.from_numpy(self.view_rows[index].copy()),
                "index": index}


class Collate:
    """
    Stack samples.

    With ``load_views`` also add ``views [U, 3, S, S]`` for the batch's unique view rows and
    ``view_slots [B, D]`` pointing into them.
    """

    def __init__(self, map_dir: Path, config: ModelConfig, load_views: bool,
                 augment_views: bool, seed: int = 0) -> None:
        self.map_dir = Path(map_dir)
        self.config = config
        self.load_views = load_views
        self.augment_views = augment_views
        self.seed = seed
        self._pyramid: MapPyramid | None = None  # opened lazily in each worker process

    def __getstate__(self) -> dict:
        # never pickle the memmap into workers (that would copy the whole view file)
        return {**self.__dict__, "_pyramid": None}

    def __call__(self, items: list[dict]) -> dict:
        batch = {"ground": torch.stack([i["ground"] for i in items]),
                 "path": torch.stack([i["path"] for i in items]),
                 "view_rows": torch.stack([i["view_rows"] for i in items]),
                 "index": torch.tensor([i["index"] for i in items])}
        if self.load_views:
            unique, slots = torch.unique(batch["view_rows"], return_inverse=True)
            batch["views"] = self._views(unique.numpy(), int(batch["index"].sum()))
            batch["view_slots"] = slots
        return batch

    def _views(self, rows: np.ndarray, salt: int) -> torch.Tensor:
        if self._pyramid is None:
            self._pyramid = MapPyramid.open(self.map_dir)
        size = self.config.encoder.image_size
        rng = np.random.default_rng([self.seed, salt, len(rows)])
        images = []
        for row in rows:
            view = np.asarray(self._pyramid.views[row])
            if self.augment_views and row > 0:  # the root view is left as the map shows it
                view = augment(view, MAP_VIEW, rng)
            images.append(resize(view, size, size))
        return normalize(np.stack(images))


class RenderedZoomDataset(Dataset):
    """
    Fresh views rendered on the fly from rasters (:mod:`jzi_ros.training.render`).

    Item ``i`` of epoch ``e`` is drawn with a generator seeded by (seed, e, i), so a run is
    reproducible whatever the worker count and every epoch sees new views; nothing is written
    to disk. The rasters are opened lazily in each DataLoader worker (datasets cannot be
    pickled).
    """

    def __init__(self, spec: "RenderSpec", tree: CellTree, config: ModelConfig,  # noqa: F821
                 augment: bool, seed: int = 0) -> None:
        self.spec = spec
        self.tree = tree
        self.config = config
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._renderer = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_renderer": None}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.spec.samples_per_epoch

    def __getitem__(self, index: int) -> dict:
        from jzi_ros.training.render import ViewRenderer

        if self._renderer is None:
            self._renderer = ViewRenderer.from_spec(self.spec, self.tree)
        rng = np.random.default_rng([self.seed, self.epoch, index, 0x4e4d])
        view = self._renderer.draw(rng)
        rotation = _rotation(self.config, rng) if self.augment else 0.0
        image = orient(view.image, self.config, view.heading_deg, rotation)
        image = augment(image, GROUND, rng) if self.augment else image
        path = np.asarray(self.tree.path_of_local(view.east_m, view.north_m), np.int64)
        return {"ground": normalize(ground_crops(image, self.config)),
                "path": torch.from_numpy(path),
                "view_rows": torch.from_numpy(prefix_view_indices(self.tree, path[None])[0]),
                "index": index}


def training_dataset(config, train_set: LabeledSamples, tree: CellTree,
                     model_config: ModelConfig, render=None) -> Dataset:
    """
    Return the training dataset of a ``jzi train`` config (``TrainConfig``).

    The manifest's training rows, or views rendered on the fly when ``render`` (the config's
    ``RenderSpec``) is given; augmented as the config says, seeded by its seed.
    """
    if render is None:
        return ZoomDataset(train_set, tree, model_config, augment=config.augment,
                           seed=config.seed)
    return RenderedZoomDataset(render, tree, model_config, augment=config.augment,
                               seed=config.seed)
