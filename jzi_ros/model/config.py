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
Model configuration: dataclasses for the encoder, the decoder and the combined zoom model.

A config fully describes the network's shapes, so a checkpoint (config JSON + safetensors
weights) can be rebuilt without executing any stored code.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from jzi_ros.config import from_mapping
from jzi_ros.errors import JziError

GROUND_CROPS = ("split2", "single")
# image encoder families: a DINOv2 ViT (pretrained weights or random), or a small CNN built
# from transformers' ResNet / ConvNeXt configs (random init: they learn faster from scratch)
ENCODER_KINDS = ("vit", "resnet", "convnext")
# CNN kinds: channels double at each of the four stages; widths default to hidden_size / 8..1
_CNN_WIDTH_DIVISORS = (8, 4, 2, 1)
HEADINGS = ("none", "north-up", "free")


def _check_positive(what: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise JziError(f"{what}.{name} must be a positive integer, got {value!r}")


@dataclass
class EncoderConfig:
    """
    The image encoder's shapes plus where its weights come from.

    ``kind``: ``vit`` (a DINOv2 ViT: the fields ``num_layers`` .. ``layer_norm_eps``) or a CNN
    built from transformers' configs with random weights, ``resnet`` (basic blocks, batch norm)
    or ``convnext`` (layer norm); a CNN has four stages of ``stage_depths`` blocks and
    ``stage_widths`` channels (default: ``hidden_size`` / 8, 4, 2, 1; the last must be
    ``hidden_size``, the width of the vector it outputs: the spatial mean of the last stage)
    and ignores the ViT fields.
    ``image_size`` is the input resolution the model is run at (paper: 384);
    ``pos_embed_size`` is the resolution the position table was trained for (518 for the
    public DINOv2 checkpoints; transformers interpolates it to ``image_size``).
    ``weights``: a local Hugging Face directory (config.json + model.safetensors) or a DINOv2
    ``.pth`` state dict; None builds a randomly initialised encoder.
    ``trainable_blocks``: None trains every parameter, N >= 0 freezes all but the last N
    transformer blocks and the final norm (paper: 4; 0 freezes the whole encoder).
    """

    hidden_size: int = 384
    num_layers: int = 12
    num_heads: int = 6
    mlp_ratio: int = 4
    image_size: int = 384
    patch_size: int = 14
    pos_embed_size: int | None = None
    use_swiglu_ffn: bool = False
    layer_norm_eps: float = 1e-6
    weights: str | None = None
    trainable_blocks: int | None = None
    kind: str = "vit"
    stage_depths: list[int] | None = None
    stage_widths: list[int] | None = None

    def __post_init__(self) -> None:
        _check_positive("encoder", hidden_size=self.hidden_size, num_layers=self.num_layers,
                        num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                        image_size=self.image_size, patch_size=self.patch_size)
        if self.kind not in ENCODER_KINDS:
            raise JziError(f"encoder.kind must be one of {ENCODER_KINDS}, got {self.kind!r}")
        if self.trainable_blocks is not None and not 0 <= self.trainable_blocks:
            raise JziError(f"encoder.trainable_blocks must be null or >= 0, "
                           f"got {self.trainable_blocks!r}")
        if self.kind != "vit":
            self._check_cnn()
            return
        if self.stage_depths is not None or self.stage_widths is not None:
            raise JziError("encoder.stage_depths / stage_widths apply to encoder.kind resnet "
                           "or convnext, not vit (set encoder.kind, or drop them)")
        if self.hidden_size % self.num_heads:
            raise JziError(f"encoder.hidden_size {self.hidden_size} is not divisible by "
                           f"encoder.num_heads {self.num_heads}")
        if self.image_size < self.patch_size:
            raise JziError(f"encoder.image_size {self.image_size} is smaller than "
                           f"encoder.patch_size {self.patch_size}")

    def _check_cnn(self) -> None:
        if self.weights is not None:
            raise JziError(f"encoder.weights {self.weights}: pretrained weights load into "
                           f"encoder.kind vit (DINOv2) only; a {self.kind} encoder starts from "
                           f"random weights (drop encoder.weights)")
        if self.stage_depths is None:
            self.stage_depths = [2, 2, 2, 2]
        if self.stage_widths is None:
            if self.hidden_size % 8:
                raise JziError(f"encoder.hidden_size {self.hidden_size} is not divisible by "
                               f"8: set encoder.stage_widths (four channel counts) explicitly")
            self.stage_widths = [self.hidden_size // d for d in _CNN_WIDTH_DIVISORS]
        for name in ("stage_depths", "stage_widths"):
            value = getattr(self, name)
            if (not isinstance(value, (list, tuple)) or len(value) != 4 or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
                raise JziError(f"encoder.{name} must be four positive integers (one per "
                               f"stage), got {value!r}")
        self.stage_depths, self.stage_widths = list(self.stage_depths), list(self.stage_widths)
        if self.stage_widths[-1] != self.hidden_size:
            raise JziError(f"encoder.stage_widths {self.stage_widths}: the last stage's width "
                           f"must equal encoder.hidden_size {self.hidden_size} (the width of "
                           f"the vector the encoder outputs)")
        if self.image_size < 32:
            raise JziError(f"encoder.image_size {self.image_size} is below 32 px, the "
                           f"{self.kind} encoder's total stride")

    @property
    def frozen(self) -> bool:
        return self.trainable_blocks == 0

    def shape_dict(self) -> dict:
        """Return the fields that determine the encoder's outputs (not where weights came from)."""
        data = dataclasses.asdict(self)
        if self.kind != "vit":
            return {key: data[key] for key in ("kind", "hidden_size", "image_size",
                                               "stage_depths", "stage_widths")}
        for key in ("weights", "trainable_blocks", "kind", "stage_depths", "stage_widths"):
            data.pop(key)  # a ViT hashes as before the CNN kinds existed
        data["pos_embed_size"] = self.pos_embed_size or self.image_size
        return data


@dataclass
class DecoderConfig:
    """Causal transformer over ``[g, m0, a0, m1, ..., m_{D-1}]``; ``width`` None = encoder's."""

    layers: int = 6
    heads: int = 8
    width: int | None = None
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        _check_positive("decoder", layers=self.layers, heads=self.heads)
        if self.width is not None:
            _check_positive("decoder", width=self.width)
        if not 0.0 <= self.dropout < 1.0:
            raise JziError(f"decoder.dropout must be in [0, 1), got {self.dropout!r}")
        if self.mlp_ratio <= 0:
            raise JziError(f"decoder.mlp_ratio must be > 0, got {self.mlp_ratio!r}")


@dataclass
class ModelConfig:
    """Encoder + decoder + the cell tree's grid K and depth D (they fix the head and length)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    grid: int = 4
    depth: int = 4
    ground_crops: str = "split2"
    # heading policy (the model card): "none" = frames as they come (no rotation);
    # "north-up" = every frame is rotated to north-up from its known heading, in training and
    # inference alike; "free" = trained with random rotations, so no heading is needed
    heading: str = "none"

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = from_mapping(EncoderConfig, self.encoder, "model.encoder")
        if isinstance(self.decoder, dict):
            self.decoder = from_mapping(DecoderConfig, self.decoder, "model.decoder")
        _check_positive("model", depth=self.depth)
        if not isinstance(self.grid, int) or self.grid < 2:
            raise JziError(f"model.grid must be an integer >= 2, got {self.grid!r}")
        if self.ground_crops not in GROUND_CROPS:
            raise JziError(f"model.ground_crops must be one of {GROUND_CROPS}, "
                           f"got {self.ground_crops!r}")
        if self.heading not in HEADINGS:
            raise JziError(f"model.heading must be one of {HEADINGS}, got {self.heading!r}")
        width = self.decoder_width
        if width % self.decoder.heads or (width // self.decoder.heads) % 2:
            raise JziError(f"decoder width {width} must split into {self.decoder.heads} heads "
                           f"of even size (rotary embeddings rotate pairs)")

    @property
    def decoder_width(self) -> int:
        return self.decoder.width or self.encoder.hidden_size

    @property
    def num_actions(self) -> int:
        return self.grid * self.grid

    @property
    def n_crops(self) -> int:
        return 2 if self.ground_crops == "split2" else 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return from_mapping(cls, data, "model")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """Named sizes: tiny (tests), demo (CPU training), dinov2-s14 / dinov2-b14 (paper)."""
        if name not in PRESETS:
            raise JziError(f"model preset {name!r} is unknown; expected one of {sorted(PRESETS)}")
        return cls.from_dict(deep_merge(PRESETS[name](), overrides))


def deep_merge(base: dict, overrides: dict) -> dict:
    """Return ``base`` with ``overrides`` applied; nested dicts merge key by key, not replace."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _paper(hidden: int, layers: int, heads: int) -> dict:
    return {"encoder": {"hidden_size": hidden, "num_layers": layers, "num_heads": heads,
                        "image_size": 384, "pos_embed_size": 518, "trainable_blocks": 4},
            "decoder": {"layers": 6, "heads": 8, "dropout": 0.1}}


PRESETS = {
    # milliseconds per forward pass on a CPU: unit tests and pipelines' smoke tests
    "tiny": lambda: {"encoder": {"hidden_size": 64, "num_layers": 2, "num_heads": 4,
                                 "image_size": 56},
                     "decoder": {"layers": 2, "heads": 4, "dropout": 0.0}},
    # trains from scratch on a couple of CPU cores in minutes (the synthetic demo world)
    "demo": lambda: {"encoder": {"hidden_size": 192, "num_layers": 4, "num_heads": 3,
                                 "image_size": 112},
                     "decoder": {"layers": 4, "heads": 4, "dropout": 0.1}},
    # the paper's model sizes: DINOv2 ViT-S/14 and ViT-B/14 at 384 px, last 4 blocks trained
    "dinov2-s14": lambda: _paper(384, 12, 6),
    "dinov2-b14": lambda: _paper(768, 12, 12),
}
