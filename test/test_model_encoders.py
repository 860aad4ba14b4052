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

"""CNN encoders (ResNet, ConvNeXt from transformers configs): build, freeze, save, export."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.model import (EncoderConfig, load_checkpoint, ModelConfig, save_checkpoint,
                           view_pixels, ZoomModel)
from support import embed_views_into, make_tiny_map

SHIPPED = Path(__file__).resolve().parents[1] / "jzi_ros" / "data" / "demo_model.safetensors"
CNN = {"kind": "resnet", "hidden_size": 64, "stage_depths": [1, 1, 1, 1], "image_size": 64}


def _model(kind: str, grid: int = 4, depth: int = 2, **encoder) -> ZoomModel:
    torch.manual_seed(5)
    config = ModelConfig.preset("tiny", grid=grid, depth=depth,
                                encoder=dict(CNN, kind=kind, **encoder))
    return ZoomModel(config).eval()


def _pixels(model: ZoomModel, count: int = 3) -> torch.Tensor:
    size = model.config.encoder.image_size
    rgb = np.random.default_rng(1).integers(0, 256, (count, size, size, 3), np.uint8)
    return view_pixels(rgb, model.config)


@pytest.mark.parametrize("kind", ["resnet", "convnext"])
def test_cnn_encoder_round_trips_through_a_checkpoint(tmp_path, kind):
    model = _model(kind)
    assert model.config.encoder.stage_widths == [8, 16, 32, 64]  # hidden_size / 8, 4, 2, 1
    with torch.no_grad():
        vectors = model.encode_views(_pixels(model))
    assert vectors.shape == (3, 64) and torch.isfinite(vectors).all()
    assert not torch.allclose(vectors[0], vectors[1])  # a function of the image
    path = tmp_path / "cnn.safetensors"
    save_checkpoint(path, model, {"kind": kind})
    loaded, _ = load_checkpoint(path)
    assert loaded.config.encoder.kind == kind
    assert loaded.config.encoder.stage_depths == [1, 1, 1, 1]
    assert loaded.encoder_hash() == model.encoder_hash()
    with torch.no_grad():
        assert torch.equal(loaded.encode_views(_pixels(model)), vectors)


def test_encoder_kinds_hash_apart_and_vit_hashes_as_before():
    assert _model("resnet").encoder_hash() != _model("convnext").encoder_hash()
    # a ViT's shape header has no CNN keys, so checkpoints made before them still verify
    assert "kind" not in EncoderConfig().shape_dict()


def test_shipped_demo_model_loads_as_its_card_says():
    # the demo model comes from the generic path (benchmarks/train_demo_model.sh): a ResNet
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    model, _ = load_checkpoint(SHIPPED)  # verifies the encoder hash and every tensor's hash
    assert model.config.to_dict() == card["model_config"]
    assert model.config.encoder.kind == "resnet"


@pytest.mark.parametrize("kind", ["resnet", "convnext"])
def test_cnn_trainable_blocks_freeze_all_but_the_last_stages(kind):
    model = _model(kind, trainable_blocks=1)
    backbone = model.encoder.backbone
    stem = backbone.embedder if kind == "resnet" else backbone.embeddings
    assert not any(p.requires_grad for p in stem.parameters())
    assert not any(p.requires_grad for p in backbone.encoder.stages[2].parameters())
    assert all(p.requires_grad for p in backbone.encoder.stages[3].parameters())
    if kind == "convnext":
        assert all(p.requires_grad for p in backbone.layernorm.parameters())
    model.encoder.apply_trainable_blocks(None)
    assert all(p.requires_grad for p in backbone.parameters())


@pytest.mark.parametrize("bad, words", [
    ({"kind": "transformer"}, "encoder.kind must be one of"),
    ({"kind": "resnet", "hidden_size": 64, "stage_widths": [8, 16, 32, 48]},
     "must equal encoder.hidden_size 64"),
    ({"kind": "convnext", "hidden_size": 60}, "not divisible by 8"),
    ({"kind": "resnet", "hidden_size": 64, "stage_depths": [1, 1, 1]}, "four positive"),
    ({"kind": "resnet", "hidden_size": 64, "weights": "dinov2"}, r"vit \(DINOv2\) only"),
    ({"kind": "resnet", "hidden_size": 64, "image_size": 28}, "below 32 px"),
    ({"stage_depths": [1, 1, 1, 1]}, "not vit"),
])
def test_bad_encoder_configs_name_the_field(bad, words):
    with pytest.raises(JziError, match=words):
        EncoderConfig(**bad)


@pytest.mark.parametrize("kind", ["resnet", "convnext"])
def test_cnn_model_localizes_the_same_traced_and_eager(tmp_path, kind):
    import dataclasses

    from jzi_ros.inference.localizer import Localizer, LocalizerConfig

    pyramid = make_tiny_map(tmp_path, depth=2)
    model = _model(kind)
    path = tmp_path / "cnn.safetensors"
    save_checkpoint(path, model, {})
    embed_views_into(pyramid, model)
    frame = np.random.default_rng(2).integers(0, 256, (48, 96, 3), np.uint8)
    base = LocalizerConfig(backend="torch", device="cpu", beam_width=3, warmup_frames=0)
    fixes = [Localizer.from_paths(pyramid.path, path, dataclasses.replace(
        base, cpu_graph=graph)).localize(frame) for graph in ("jit", "eager")]
    assert fixes[0].ok and np.isfinite([fixes[0].latitude, fixes[0].longitude]).all()
    assert [h.probability for h in fixes[0].hypotheses] == pytest.approx(
        [h.probability for h in fixes[1].hypotheses], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["resnet", "convnext"])
def test_cnn_encoder_exports_to_onnx_with_parity(tmp_path, kind):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from jzi_ros.inference.backends import BackendSpec, create_backend
    from jzi_ros.inference.export import export_model
    from jzi_ros.inference.parity import compare

    pyramid = make_tiny_map(tmp_path, depth=2)
    model = _model(kind)
    path = tmp_path / "cnn.safetensors"
    save_checkpoint(path, model, {})
    table = embed_views_into(pyramid, model)
    export_model(path, None, beam_width=2, batch_size=1)
    spec = BackendSpec(str(path), table, 4, 2, 2)
    parity = compare(create_backend("onnxruntime", spec, "cpu", "fp32"), model, table, 2,
                     frames=2)
    assert parity.ok(), parity


@pytest.mark.slow
def test_training_a_cnn_encoder_lowers_the_loss_and_records_its_kind(tmp_path):
    import json

    from jzi_ros.maps.pyramid import MapPyramid
    from jzi_ros.training.config import load_train_config
    from jzi_ros.training.loop import train
    from test_training_loop import make_dataset

    pyramid = make_tiny_map(tmp_path, grid=4, depth=2)
    manifest = make_dataset(tmp_path, pyramid, 16, repeat=4)
    out = tmp_path / "run"
    config = load_train_config(None, [
        f"manifest={manifest}", f"map={pyramid.path}", f"out={out}", "model_preset=tiny",
        "num_workers=0", "augment=false", "epochs=6", "batch_size=16", "lr=3e-3",
        "val_fraction=0", "label_smoothing=0", "model.encoder.kind=convnext",
        "model.encoder.hidden_size=64", "model.encoder.stage_depths=[1, 1, 1, 1]"])
    summary = train(config, progress=False)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    model, _ = load_checkpoint(out / "best.safetensors")
    assert model.config.encoder.kind == "convnext"
    # the map was re-embedded by the trained CNN: the localizer finds its table
    assert MapPyramid.open(pyramid.path).load_embeddings(model.encoder_hash()).shape[1] == 64
    assert summary["encoder_hash"] == model.encoder_hash()
