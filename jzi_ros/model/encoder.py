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
The shared image encoder: one vector per image, from a ViT or a small CNN.

``kind: vit`` is a transformers ``Dinov2Model`` (the CLS vector). Its weights come from a
local Hugging Face directory, from a DINOv2 ``.pth`` state dict (the format of the original
facebookresearch release, mapped onto transformers' parameter names), or nowhere (random
initialisation at any size: tests and the demo). ``kind: resnet`` / ``convnext`` are
transformers' ``ResNetModel`` / ``ConvNextModel`` built from a config with random weights
(the spatial mean of the last stage): without pretrained weights a small CNN's locality
prior learns faster than a ViT on a CPU budget (docs/any-area.md has the comparison). All
kinds are plain transformers modules, so checkpoints stay safetensors and ONNX export works.
"""
from __future__ import annotations

import math
from pathlib import Path
import re

import torch
from torch import nn
from transformers import (ConvNextConfig, ConvNextModel, Dinov2Config, Dinov2Model,
                          ResNetConfig, ResNetModel)

from jzi_ros.errors import JziError
from jzi_ros.model.config import EncoderConfig

# DINOv2 .pth parameter names -> transformers Dinov2Model names (per block, then global).
_BLOCK_RENAMES = {
    "norm1": "norm1", "norm2": "norm2",
    "attn.proj": "attention.o_proj",
    "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
    "mlp.w3": "mlp.down_proj",
}
_GLOBAL_RENAMES = {
    "cls_token": "embeddings.cls_token",
    "mask_token": "embeddings.mask_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}


def hf_config(config: EncoderConfig) -> Dinov2Config:
    return Dinov2Config(
        hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
        image_size=config.pos_embed_size or config.image_size, patch_size=config.patch_size,
        use_swiglu_ffn=config.use_swiglu_ffn, layer_norm_eps=config.layer_norm_eps)


def _random_backbone(config: EncoderConfig) -> nn.Module:
    if config.kind == "resnet":
        # ResNet-18/34 style basic blocks; the stem is one 7x7/2 convolution and a 3x3/2 pool
        return ResNetModel(ResNetConfig(
            embedding_size=config.stage_widths[0], hidden_sizes=config.stage_widths,
            depths=config.stage_depths, layer_type="basic", downsample_in_first_stage=False))
    if config.kind == "convnext":
        return ConvNextModel(ConvNextConfig(
            hidden_sizes=config.stage_widths, depths=config.stage_depths,
            image_size=config.image_size))
    return Dinov2Model(hf_config(config))


class ImageEncoder(nn.Module):
    """Pixels ``[B, 3, S, S]`` (ImageNet-normalised) -> CLS vectors ``[B, C]``."""

    def __init__(self, config: EncoderConfig, load_weights: bool = True) -> None:
        super().__init__()
        if load_weights and config.weights:
            self.backbone = _load_pretrained(config)
        else:
            self.backbone = _random_backbone(config)
        self.config = config
        self.apply_trainable_blocks(config.trainable_blocks)

    @property
    def embed_dim(self) -> int:
        return self.config.hidden_size

    def apply_trainable_blocks(self, trainable_blocks: int | None) -> None:
        """
        Freeze all but the last N blocks and the final norm (None: train everything).

        A block is a transformer layer of a ViT, a stage of a CNN.
        """
        self.config.trainable_blocks = trainable_blocks
        if trainable_blocks is None:
            self.backbone.requires_grad_(True)
            return
        self.backbone.requires_grad_(False)
        if self.config.kind == "vit":
            layers = self.backbone.encoder.layer
        else:
            layers = self.backbone.encoder.stages
        if trainable_blocks > 0:
            for block in layers[max(0, len(layers) - trainable_blocks):]:
                block.requires_grad_(True)
            final_norm = getattr(self.backbone, "layernorm", None)  # ResNet has none
            if final_norm is not None:
                final_norm.requires_grad_(True)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.backbone(pixel_values=pixels)
        if self.config.kind == "vit":
            # last_hidden_state already went through the final layernorm in Dinov2Model
            return out.last_hidden_state[:, 0]
        # ResNet pools to [B, C, 1, 1]; ConvNeXt pools and layer-normalises to [B, C]
        return out.pooler_output.flatten(1)


def _load_pretrained(config: EncoderConfig) -> Dinov2Model:
    path = Path(config.weights).expanduser()
    if path.is_dir():
        model = _load_hf_dir(path)
    elif path.is_file() and path.suffix in (".pth", ".pt"):
        model = _load_pth(path)
    else:
        raise JziError(f"encoder.weights {path}: expected a local Hugging Face directory "
                       f"(config.json + model.safetensors) or a DINOv2 .pth file")
    _adopt_shapes(config, model.config)
    return model


def _adopt_shapes(config: EncoderConfig, loaded: Dinov2Config) -> None:
    """Record the weights' architecture in the config so checkpoints rebuild it."""
    config.hidden_size = loaded.hidden_size
    config.num_layers = loaded.num_hidden_layers
    config.num_heads = loaded.num_attention_heads
    config.mlp_ratio = int(loaded.mlp_ratio)
    config.patch_size = loaded.patch_size
    config.pos_embed_size = loaded.image_size
    config.use_swiglu_ffn = bool(loaded.use_swiglu_ffn)
    config.layer_norm_eps = float(loaded.layer_norm_eps)


def _load_hf_dir(path: Path) -> Dinov2Model:
    if not (path / "config.json").is_file():
        raise JziError(f"encoder.weights {path}: no config.json (expected a Hugging Face "
                       f"DINOv2 directory)")
    try:
        model = Dinov2Model.from_pretrained(str(path), local_files_only=True,
                                            use_safetensors=True)
    except (OSError, ValueError) as err:
        raise JziError(f"encoder.weights {path}: cannot load a DINOv2 model "
                       f"({str(err).splitlines()[0]})") from None
    if model.config.model_type != "dinov2":
        raise JziError(f"encoder.weights {path}: model_type is {model.config.model_type!r}, "
                       f"expected 'dinov2'")
    return model


def _load_pth(path: Path) -> Dinov2Model:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad/unsafe files
        raise JziError(f"encoder.weights {path}: not a readable tensor-only .pth file "
                       f"({str(err).splitlines()[0]})") from None
    for key in ("model", "teacher", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or "cls_token" not in _strip_prefixes(state):
        raise JziError(f"encoder.weights {path}: no DINOv2 'cls_token' entry; expected a "
                       f"DINOv2 ViT state dict")
    state = _strip_prefixes(state)
    if any(k.startswith("register_tokens") for k in state):
        raise JziError(f"encoder.weights {path}: DINOv2 with registers is not supported; use "
                       f"a plain DINOv2 ViT checkpoint")
    hidden = state["cls_token"].shape[-1]
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if blocks and any(re.match(r"blocks\.\d+\.\d+\.", k) for k in state):
        raise JziError(f"encoder.weights {path}: chunked block layout is not supported")
    swiglu = "blocks.0.mlp.w12.weight" in state
    # SwiGLU (ViT-g) shrinks a ratio-4 hidden size by 2/3 internally in both implementations
    mlp_ratio = 4 if swiglu else round(state["blocks.0.mlp.fc1.weight"].shape[0] / hidden)
    grid = math.isqrt(state["pos_embed"].shape[1] - 1)
    patch = state["patch_embed.proj.weight"].shape[-1]
    config = Dinov2Config(
        hidden_size=hidden, num_hidden_layers=len(blocks),
        # every released DINOv2 ViT uses 64-dimensional heads
        num_attention_heads=hidden // 64, mlp_ratio=mlp_ratio,
        image_size=grid * patch, patch_size=patch, use_swiglu_ffn=swiglu)
    model = Dinov2Model(config)
    mapped = _map_pth_names(state)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    # the mask token is unused at inference and absent from some exports
    missing = [k for k in missing if k != "embeddings.mask_token"]
    if missing or unexpected:
        raise JziError(f"encoder.weights {path}: state dict does not match a DINOv2 ViT "
                       f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model


def _strip_prefixes(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone.", "encoder."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _map_pth_names(state: dict) -> dict:
    mapped = {}
    for key, value in state.items():
        if key in _GLOBAL_RENAMES:
            mapped[_GLOBAL_RENAMES[key]] = value
            continue
        match = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias|gamma)$", key)
        if not match:
            mapped[key] = value  # reported as unexpected by load_state_dict
            continue
        index, name, kind = match.groups()
        prefix = f"encoder.layer.{index}."
        if name == "attn.qkv":
            # one fused projection in DINOv2, three separate ones in transformers
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                mapped[f"{prefix}attention.{part}.{kind}"] = chunk.clone()
        elif name == "mlp.w12":
            # DINOv2's fused SwiGLU input: first half gates (silu), second half is "up"
            for part, chunk in zip(("gate_proj", "up_proj"), value.chunk(2, dim=0)):
                mapped[f"{prefix}mlp.{part}.{kind}"] = chunk.clone()
        elif f"{name}.{kind}" in _BLOCK_RENAMES:
            mapped[prefix + _BLOCK_RENAMES[f"{name}.{kind}"]] = value
        elif name in _BLOCK_RENAMES:
            mapped[f"{prefix}{_BLOCK_RENAMES[name]}.{kind}"] = value
        else:
            mapped[key] = value
    return mapped
