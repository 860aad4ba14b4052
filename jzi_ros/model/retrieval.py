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
The retrieval baseline's network: the zoom's image encoder plus two projection heads.

What the paper compares against (its strongest baseline, Sample4Geo, is of this kind): a
frame and a map view are each embedded into one L2-normalised vector, trained so a frame lies
nearest to the view of the cell it was taken in; localization is then a flat nearest-neighbour
search over the map's views, no zooming. The encoder is :class:`ImageEncoder` built from the
same ``ModelConfig.encoder`` as a zoom model (a ResNet-small or a DINOv2), shared by both
sides as in the zoom; only the linear heads (frame side, view side) differ, and a learnable
logit scale (the inverse temperature of the contrastive loss) turns cosine similarities into
the logits of training and the confidences of inference.

Checkpoints are one .safetensors file with the config as JSON in the header (the zoom's
container, :mod:`jzi_ros.model.checkpoint`) but another ``format``, so neither kind of file
is ever loaded where the other is expected.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from jzi_ros.config import from_mapping
from jzi_ros.errors import JziError
from jzi_ros.model.checkpoint import (load_weights_into, module_tensors, read_format_header,
                                      RETRIEVAL_FORMAT, write_safetensors)
from jzi_ros.model.config import ModelConfig
from jzi_ros.model.encoder import ImageEncoder
from jzi_ros.model.preprocess import view_pixels
from jzi_ros.model.zoom import weights_hash

# CLIP's bound on the learnt logit scale: beyond it the softmax saturates and training stalls
MAX_LOGIT_SCALE = 100.0


@dataclass
class RetrievalConfig:
    """
    The retrieval network: ``model`` (encoder, ground crops, heading policy, grid, depth).

    ``model`` is a zoom ``ModelConfig`` of which the decoder is unused: the encoder and the
    preprocessing are then exactly the zoom's. ``embed_dim`` is the width of the normalised
    embeddings; ``initial_temperature`` the softmax temperature the logit scale starts from
    (CLIP: 0.07).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    embed_dim: int = 128
    initial_temperature: float = 0.07

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = from_mapping(ModelConfig, self.model, "retrieval.model")
        if (not isinstance(self.embed_dim, int) or isinstance(self.embed_dim, bool)
                or self.embed_dim < 1):
            raise JziError(f"retrieval.embed_dim must be a positive integer, "
                           f"got {self.embed_dim!r}")
        temperature = self.initial_temperature
        if (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                or not 1.0 / MAX_LOGIT_SCALE <= temperature <= 1.0):
            raise JziError(f"retrieval.initial_temperature must be in "
                           f"[{1.0 / MAX_LOGIT_SCALE:g}, 1], got {temperature!r}")
        self.initial_temperature = float(temperature)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RetrievalConfig":
        return from_mapping(cls, data, "retrieval")


class RetrievalModel(nn.Module):
    """Frames ``[B, n_crops, 3, S, S]`` and map views ``[B, 3, S, S]`` -> unit vectors."""

    def __init__(self, config: RetrievalConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.encoder = ImageEncoder(config.model.encoder, load_weights=load_weights)
        width = self.encoder.embed_dim
        self.frame_head = nn.Linear(width, config.embed_dim)
        self.view_head = nn.Linear(width, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.initial_temperature)))

    @property
    def model_config(self) -> ModelConfig:
        """Return the preprocessing and encoder config (the zoom's helpers read it)."""
        return self.config.model

    def scale(self) -> torch.Tensor:
        """Return the inverse temperature: the learnt logit scale, at most ``MAX_LOGIT_SCALE``."""
        return self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, n_crops, 3, S, S]`` -> ``[B, E]`` unit vectors (the crops' mean, projected)."""
        if pixels.ndim != 5:
            raise JziError(f"encode_frames: expected pixels [B, n_crops, 3, S, S], "
                           f"got shape {tuple(pixels.shape)}")
        batch, crops = pixels.shape[:2]
        vectors = self.encoder(pixels.flatten(0, 1)).view(batch, crops, -1).mean(dim=1)
        return F.normalize(self.frame_head(vectors), dim=-1)

    def encode_views(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` -> ``[B, E]`` unit vectors."""
        if pixels.ndim != 4:
            raise JziError(f"encode_views: expected pixels [B, 3, S, S], "
                           f"got shape {tuple(pixels.shape)}")
        return F.normalize(self.view_head(self.encoder(pixels)), dim=-1)


def info_nce(frames: torch.Tensor, views: torch.Tensor, view_ids: torch.Tensor,
             scale: torch.Tensor) -> torch.Tensor:
    """
    Symmetric InfoNCE over a batch: frame ``i``'s positive is view ``i``, the rest negatives.

    ``frames`` and ``views`` are ``[B, E]`` unit vectors, ``view_ids`` ``[B]`` the view-table
    row of each sample's positive. Samples whose positives are the same view are no negatives
    of each other (two frames in one cell): those entries are masked out of both directions,
    so the loss never pushes a frame away from its own cell's view.
    """
    logits = scale * frames @ views.T
    same = view_ids[:, None] == view_ids[None, :]
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(len(frames), device=frames.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def finest_view_rows(tree) -> np.ndarray:
    """Return the view-table rows of the finest view level (depth - 1): what is retrieved."""
    level = tree.depth - 1
    start = tree.level_offsets[level]
    return np.arange(start, start + tree.num_actions ** level, dtype=np.int64)


@torch.no_grad()
def embed_view_rows(model: RetrievalModel, pyramid, rows: np.ndarray, batch_size: int,
                    device: torch.device, progress: bool = False,
                    desc: str = "embedding map views") -> torch.Tensor:
    """
    Return the unit embeddings ``[len(rows), E]`` of a map's views ``rows``, in eval mode.

    ``pyramid``: a :class:`~jzi_ros.maps.pyramid.MapPyramid` (its memory-mapped views). The
    trainer's validation and :class:`~jzi_ros.inference.retrieval.RetrievalLocalizer` both
    embed the map this way.
    """
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    out = []
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch",
                      disable=not progress):
        views = np.asarray(pyramid.views[rows[start:start + batch_size]])
        out.append(model.encode_views(view_pixels(views, model.model_config).to(device)).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros((0, model.config.embed_dim), device=device)


def save_retrieval(path: str | os.PathLike, model: RetrievalModel,
                   metadata: dict | None = None) -> None:
    """Write ``model`` (weights, config, weights hash, JSON-able ``metadata``) atomically."""
    metadata = dict(metadata or {})
    try:
        meta_json = json.dumps(metadata)
    except TypeError as err:
        raise JziError(f"retrieval checkpoint metadata must be JSON-serialisable: {err}") from None
    header = {"format": RETRIEVAL_FORMAT, "config": json.dumps(model.config.to_dict()),
              "weights_hash": weights_hash(model), "metadata": meta_json}
    write_safetensors(Path(path), module_tensors(model), header)


def update_retrieval_metadata(path: str | os.PathLike, **metadata) -> dict:
    """
    Merge ``metadata`` into a retrieval checkpoint's metadata (atomic rewrite).

    The weights are loaded and verified against the header's hash first, so a corrupt file is
    refused instead of being re-stamped. Returns the merged metadata.
    """
    model, stored = load_retrieval(path)
    merged = {**stored, **metadata}
    save_retrieval(path, model, merged)
    return merged


def load_retrieval(path: str | os.PathLike, device: str | torch.device = "cpu"
                   ) -> tuple[RetrievalModel, dict]:
    """
    Rebuild a retrieval model from its header's config and its tensors (nothing unpickled).

    Returns ``(model in eval mode, metadata)``. A zoom checkpoint, a corrupt header or
    weights that do not hash to the header's value are refused with a JziError.
    """
    path = Path(path)
    header = read_format_header(path, RETRIEVAL_FORMAT)
    try:
        config = RetrievalConfig.from_dict(json.loads(header["config"]))
        stored_hash = header["weights_hash"]
        metadata = json.loads(header.get("metadata", "{}"))
    except (KeyError, json.JSONDecodeError) as err:
        raise JziError(f"retrieval checkpoint {path}: corrupt header ({err})") from None
    model = RetrievalModel(config, load_weights=False)
    load_weights_into(model, path, "retrieval checkpoint")
    if weights_hash(model) != stored_hash:
        raise JziError(f"retrieval checkpoint {path}: its weights hash to "
                       f"{weights_hash(model)}, the header says {stored_hash}: the file is "
                       f"corrupt; restore it from a good copy or retrain")
    model.eval()
    return model.to(device), metadata
