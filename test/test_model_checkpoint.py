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

"""Checkpoints round-trip exactly; pretrained encoder weights load from HF dirs and .pth."""
import re

import numpy as np
import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.model import (load_checkpoint, ModelConfig, read_header, save_checkpoint,
                           update_checkpoint_metadata, view_pixels, ZoomModel)


def _tiny(**overrides) -> ZoomModel:
    torch.manual_seed(3)
    return ZoomModel(ModelConfig.preset("tiny", **overrides)).eval()


def test_round_trip_identical_logits_and_hash(tmp_path):
    model = _tiny(grid=3, depth=3)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, {"tree": {"grid": 3}, "epoch": 7})
    loaded, metadata = load_checkpoint(path)
    assert metadata == {"tree": {"grid": 3}, "epoch": 7}
    assert loaded.config == model.config
    assert loaded.encoder_hash() == model.encoder_hash()
    assert read_header(path)["encoder_hash"] == model.encoder_hash()
    gen = torch.Generator().manual_seed(0)
    ground, views = torch.randn(2, 64, generator=gen), torch.randn(2, 3, 64, generator=gen)
    actions = torch.randint(0, 9, (2, 2), generator=gen)
    pixels = view_pixels(np.random.default_rng(0).integers(0, 256, (2, 56, 56, 3), np.uint8),
                         model.config)
    with torch.no_grad():
        assert torch.equal(model(ground, views, actions), loaded(ground, views, actions))
        assert torch.equal(model.encode_views(pixels), loaded.encode_views(pixels))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary behind


def test_update_metadata_keeps_weights(tmp_path):
    model = _tiny()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, {"a": 1})
    merged = update_checkpoint_metadata(path, calibration={"scale": 1.5})
    assert merged == {"a": 1, "calibration": {"scale": 1.5}}
    loaded, metadata = load_checkpoint(path)
    assert metadata == merged
    assert loaded.encoder_hash() == model.encoder_hash()


def test_bad_files_raise_jzi_error(tmp_path):
    with pytest.raises(JziError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(JziError, match="not a readable"):
        load_checkpoint(junk)
    with pytest.raises(JziError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "x.safetensors", _tiny(), {"bad": object()})


def test_config_mismatch_is_reported(tmp_path):
    from safetensors.torch import load_file, save_file
    model = _tiny()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model)
    tensors = load_file(str(path))
    header = read_header(path)
    header["config"]["decoder"]["layers"] = 3
    import json
    save_file(tensors, str(path), metadata={
        "format": "jzi-zoom-model/1", "config": json.dumps(header["config"]),
        "encoder_hash": header["encoder_hash"], "metadata": "{}"})
    with pytest.raises(JziError, match="do not match its config"):
        load_checkpoint(path)


def _to_dinov2_names(model: ZoomModel) -> dict:
    """Return a DINOv2-release-style state dict (fused qkv, ls1.gamma, ...) from a HF model."""
    out = {}
    state = model.encoder.backbone.state_dict()
    renames = {"embeddings.cls_token": "cls_token", "embeddings.mask_token": "mask_token",
               "embeddings.position_embeddings": "pos_embed",
               "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
               "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
               "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
    for key, value in state.items():
        if key in renames:
            out[renames[key]] = value
            continue
        index, rest = re.match(r"encoder\.layer\.(\d+)\.(.+)", key).groups()
        rest = (rest.replace("attention.o_proj", "attn.proj")
                .replace("layer_scale1.lambda1", "ls1.gamma")
                .replace("layer_scale2.lambda1", "ls2.gamma"))
        if rest.startswith("mlp.gate_proj"):  # SwiGLU: DINOv2 fuses gate and up into w12
            kind = rest.rsplit(".", 1)[1]
            up = state[f"encoder.layer.{index}.mlp.up_proj.{kind}"]
            out[f"blocks.{index}.mlp.w12.{kind}"] = torch.cat([value, up], 0)
        elif rest.startswith("mlp.down_proj"):
            out[f"blocks.{index}.{rest.replace('down_proj', 'w3')}"] = value
        elif rest.startswith("mlp.up_proj"):
            continue
        elif rest.startswith("attention.q_proj"):
            kind = rest.rsplit(".", 1)[1]
            parts = [state[f"encoder.layer.{index}.attention.{p}.{kind}"]
                     for p in ("q_proj", "k_proj", "v_proj")]
            out[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat(parts, 0)
        elif not rest.startswith("attention."):
            out[f"blocks.{index}.{rest}"] = value
    return {"model": {"backbone." + k: v for k, v in out.items()}}


@pytest.mark.parametrize("swiglu", [False, True])
def test_pth_and_hf_directory_weights_load(tmp_path, swiglu):
    # heads = hidden / 64 in every DINOv2 release, which the .pth loader relies on
    source = _tiny(encoder={"hidden_size": 128, "num_heads": 2, "use_swiglu_ffn": swiglu})
    pixels = view_pixels(np.random.default_rng(1).integers(0, 256, (2, 56, 56, 3), np.uint8),
                         source.config)
    with torch.no_grad():
        expected = source.encode_views(pixels)

    pth = tmp_path / "dinov2.pth"
    torch.save(_to_dinov2_names(source), pth)
    from_pth = ZoomModel(ModelConfig.preset("tiny", encoder={"weights": str(pth)})).eval()
    assert from_pth.config.encoder.hidden_size == 128  # shapes adopted from the weights
    hf_dir = tmp_path / "hf"
    source.encoder.backbone.save_pretrained(hf_dir, safe_serialization=True)
    from_hf = ZoomModel(ModelConfig.preset("tiny", encoder={"weights": str(hf_dir)})).eval()
    with torch.no_grad():
        assert torch.allclose(from_pth.encode_views(pixels), expected, atol=1e-5)
        assert torch.allclose(from_hf.encode_views(pixels), expected, atol=1e-5)
    assert from_pth.encoder_hash() == source.encoder_hash() == from_hf.encoder_hash()

    with pytest.raises(JziError, match="expected a local Hugging Face directory"):
        ZoomModel(ModelConfig.preset("tiny", encoder={"weights": str(tmp_path / "nope")}))
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, bad)
    with pytest.raises(JziError, match="cls_token"):
        ZoomModel(ModelConfig.preset("tiny", encoder={"weights": str(bad)}))
