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
Encode every map view once and store the table next to the map (keyed by encoder hash).

The decoder only ever sees one vector per map view, and the views are fixed, so the localizer
looks them up instead of running the encoder on up to D views per frame.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from jzi_ros.errors import JziError
from jzi_ros.maps.pyramid import MapPyramid
from jzi_ros.model.checkpoint import load_checkpoint
from jzi_ros.model.preprocess import view_pixels
from jzi_ros.model.zoom import ZoomModel


def check_config_matches_tree(config, tree, map_name: str, model_name: str) -> None:
    """Check a tree against a model config's head (K*K) and length (D), fixed at training."""
    if (config.grid, config.depth) != (tree.grid, tree.depth):
        raise JziError(f"model {model_name} was built for a {config.grid}x{config.grid} grid "
                       f"with depth {config.depth}, but map {map_name} has grid "
                       f"{tree.grid} and depth {tree.depth}; use a model trained on this map's "
                       f"tree")


def check_model_matches_tree(model: ZoomModel, pyramid: MapPyramid, model_name: str) -> None:
    """Check the map against the decoder's head (K*K) and length (D), fixed at training."""
    check_config_matches_tree(model.config, pyramid.tree, str(pyramid.path), model_name)


@torch.no_grad()
def embed_views(pyramid: MapPyramid, model: ZoomModel, batch_size: int = 32,
                device: str | torch.device = "cpu", progress: bool = True) -> np.ndarray:
    """Every view of ``pyramid`` through ``model``'s encoder: float16 ``[num_views, C]``."""
    if batch_size < 1:
        raise JziError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    total = pyramid.tree.num_views
    table = np.empty((total, model.embed_dim), np.float16)
    try:
        with tqdm(total=total, desc="embedding map views", unit="view",
                  disable=not progress) as bar:
            for start in range(0, total, batch_size):
                # a slice of the memmap: only this batch's tiles are read from disk
                views = np.asarray(pyramid.views[start:start + batch_size])
                pixels = view_pixels(views, model.config).to(device)
                vectors = model.encode_views(pixels).float().cpu().numpy()
                table[start:start + len(views)] = vectors
                bar.update(len(views))
    finally:
        model.train(was_training)
    if not np.all(np.isfinite(table)):
        raise JziError(f"encoder produced non-finite embeddings for map {pyramid.path} "
                       f"(fp16 overflow? values exceed 65504)")
    return table


def embed_map(map_dir: str | os.PathLike, model_path: str | os.PathLike, batch_size: int = 32,
              device: str = "cpu", progress: bool = True) -> Path:
    """Embed the map at ``map_dir`` with the checkpoint's encoder; returns the table's path."""
    pyramid = MapPyramid.open(map_dir)
    model, _ = load_checkpoint(model_path, device=device)
    check_model_matches_tree(model, pyramid, str(model_path))
    return write_map_embeddings(pyramid, model, batch_size, device, progress,
                                {"model": str(Path(model_path).resolve())})


def write_map_embeddings(pyramid: MapPyramid, model: ZoomModel, batch_size: int = 32,
                         device: str | torch.device = "cpu", progress: bool = True,
                         info: dict | None = None) -> Path:
    """Embed ``pyramid`` with an in-memory model (the trainer's final encoder) and store it."""
    table = embed_views(pyramid, model, batch_size, device, progress)
    pyramid.write_embeddings(table, model.encoder_hash(),
                             {**(info or {}), "embed_dim": int(model.embed_dim),
                              "image_size": int(model.config.encoder.image_size)})
    return pyramid.embeddings_path
