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

"""ZoomModel: the shared DINOv2 encoder plus the causal zooming decoder."""
from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from jzi_ros.errors import JziError
from jzi_ros.model.config import ModelConfig
from jzi_ros.model.decoder import KVCache, ZoomDecoder
from jzi_ros.model.encoder import ImageEncoder


class ZoomModel(nn.Module):
    """
    Encoder (ground crops and map views -> vectors) and decoder (vectors -> action logits).

    ``load_weights=False`` skips ``config.encoder.weights`` (a checkpoint carries all weights).
    """

    def __init__(self, config: ModelConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.encoder = ImageEncoder(config.encoder, load_weights=load_weights)
        self.decoder = ZoomDecoder(config)

    @property
    def embed_dim(self) -> int:
        """Width C of the encoder's vectors (what the map's embedding table stores)."""
        return self.encoder.embed_dim

    @property
    def num_actions(self) -> int:
        return self.config.num_actions

    # --- encoder -------------------------------------------------------------------------
    def encode_ground(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, n_crops, 3, S, S]`` -> ``[B, C]``: the mean of the crops' CLS vectors."""
        if pixels.ndim != 5:
            raise JziError(f"encode_ground: expected pixels [B, n_crops, 3, S, S], "
                           f"got shape {tuple(pixels.shape)}")
        batch, crops = pixels.shape[:2]
        vectors = self.encoder(pixels.flatten(0, 1))
        return vectors.view(batch, crops, -1).mean(dim=1)

    def encode_views(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` -> ``[B, C]``."""
        if pixels.ndim != 4:
            raise JziError(f"encode_views: expected pixels [B, 3, S, S], "
                           f"got shape {tuple(pixels.shape)}")
        return self.encoder(pixels)

    # --- decoder -------------------------------------------------------------------------
    def forward(self, ground: torch.Tensor, views: torch.Tensor,
                actions: torch.Tensor) -> torch.Tensor:
        """
        Teacher forcing: ``ground [B,C]``, ``views [B,L,C]``, ``actions [B,L-1]`` -> logits.

        The logits are ``[B, L, K*K]``, for any 1 <= L <= depth.
        """
        length = views.shape[1]
        if not 1 <= length <= self.config.depth:
            raise JziError(f"forward: {length} map views, expected 1..{self.config.depth}")
        if actions.shape[:2] != (views.shape[0], length - 1):
            raise JziError(f"forward: actions shape {tuple(actions.shape)}, expected "
                           f"({views.shape[0]}, {length - 1})")
        return self.decoder(ground, views, actions)

    def start(self, ground: torch.Tensor, root_view: torch.Tensor
              ) -> tuple[torch.Tensor, KVCache]:
        """Feed ``[g, m0]``: logits ``[B, K*K]`` for the first action and the KV cache."""
        return self.decoder.start(ground, root_view)

    def advance(self, actions: torch.Tensor, next_view: torch.Tensor, cache: KVCache
                ) -> tuple[torch.Tensor, KVCache]:
        """Feed ``[a_t, m_{t+1}]``: logits ``[B, K*K]`` for action t+1 and the grown cache."""
        return self.decoder.advance(actions, next_view, cache)

    @staticmethod
    def reorder_cache(cache: KVCache, index: torch.Tensor) -> KVCache:
        """Select/duplicate batch rows (beams): ``index [B']`` long -> cache of batch B'."""
        return tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in cache)

    # --- identity ------------------------------------------------------------------------
    def encoder_hash(self) -> str:
        """
        Return a SHA-256 prefix of the encoder's weights (as float32) and output shapes.

        The shapes are those that fix its outputs. Map embedding tables are keyed by it.
        Independent of device and of where the weights were loaded from.
        """
        shapes = json.dumps(self.config.encoder.shape_dict(), sort_keys=True).encode()
        return weights_hash(self.encoder, header=shapes)


def weights_hash(module: nn.Module, header: bytes = b"") -> str:
    """
    Return a SHA-256 prefix over ``header`` and every weight of ``module`` (as float32).

    Independent of device and dtype; names and shapes are hashed with the values.
    """
    digest = hashlib.sha256()
    digest.update(header)
    state = module.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]
