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

"""ZoomModel: shapes, causality, incremental decoding == teacher forcing, freezing, hashing."""
import numpy as np
import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.model import ground_pixels, ModelConfig, view_pixels, ZoomModel


def _model(**overrides) -> ZoomModel:
    torch.manual_seed(0)
    return ZoomModel(ModelConfig.preset("tiny", **overrides)).eval()


def _inputs(model: ZoomModel, batch: int, length: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    c = model.embed_dim
    return (torch.randn(batch, c, generator=gen), torch.randn(batch, length, c, generator=gen),
            torch.randint(0, model.num_actions, (batch, length - 1), generator=gen))


@pytest.mark.parametrize("grid,depth", [(2, 1), (2, 3), (3, 2), (4, 4), (5, 3)])
def test_shapes_for_several_grids_and_depths(grid, depth):
    model = _model(grid=grid, depth=depth)
    for length in range(1, depth + 1):
        ground, views, actions = _inputs(model, 3, length)
        with torch.no_grad():
            logits = model(ground, views, actions)
        assert logits.shape == (3, length, grid * grid)
        assert torch.isfinite(logits).all()


def test_encoders_shapes_and_crops():
    model = _model()
    image = np.random.default_rng(0).integers(0, 256, (90, 250, 3), dtype=np.uint8)
    pixels = ground_pixels(image, model.config)
    assert pixels.shape == (2, 3, 56, 56) and pixels.dtype == torch.float32
    single = ModelConfig.preset("tiny", ground_crops="single")
    assert ground_pixels(image, single).shape == (1, 3, 56, 56)
    views = view_pixels(np.zeros((5, 80, 80, 3), np.uint8), model.config)
    assert views.shape == (5, 3, 56, 56)
    with torch.no_grad():
        assert model.encode_ground(pixels[None].repeat(2, 1, 1, 1, 1)).shape == (2, 64)
        assert model.encode_views(views).shape == (5, 64)
        # the ground vector is the mean of the two halves' CLS vectors
        halves = model.encode_views(pixels)
        assert torch.allclose(model.encode_ground(pixels[None])[0], halves.mean(0), atol=1e-5)


def test_preprocess_normalises_with_imagenet_statistics():
    config = ModelConfig.preset("tiny")
    grey = np.full((1, 56, 56, 3), 124, np.uint8)  # ~ the ImageNet mean of the red channel
    pixels = view_pixels(grey, config)
    assert abs(float(pixels[0, 0].mean()) - (124 / 255 - 0.485) / 0.229) < 1e-5
    with pytest.raises(JziError, match="uint8"):
        ground_pixels(np.zeros((10, 10, 3), np.float32), config)
    with pytest.raises(JziError, match=r"\[H, W, 3\]"):
        ground_pixels(np.zeros((10, 10), np.uint8), config)


def test_causality_later_tokens_never_change_earlier_logits():
    model = _model()
    ground, views, actions = _inputs(model, 2, 4)
    with torch.no_grad():
        base = model(ground, views, actions)
        for step in range(1, 4):
            changed_views = views.clone()
            changed_views[:, step:] += 5.0
            changed_actions = actions.clone()
            changed_actions[:, step - 1:] = (changed_actions[:, step - 1:] + 1) % 16
            out = model(ground, changed_views, changed_actions)
            assert torch.allclose(out[:, :step], base[:, :step], atol=1e-5)
            assert not torch.allclose(out[:, step:], base[:, step:], atol=1e-3)
        # the ground token influences every step
        out = model(ground + 1.0, views, actions)
        assert not torch.allclose(out[:, 0], base[:, 0], atol=1e-3)


def test_prefix_forward_equals_full_forward_prefix():
    model = _model()
    ground, views, actions = _inputs(model, 2, 4)
    with torch.no_grad():
        full = model(ground, views, actions)
        for length in range(1, 4):
            part = model(ground, views[:, :length], actions[:, :length - 1])
            assert torch.allclose(part, full[:, :length], atol=1e-5)


@pytest.mark.parametrize("grid,depth", [(4, 4), (3, 2)])
def test_start_advance_equal_teacher_forcing(grid, depth):
    model = _model(grid=grid, depth=depth)
    ground, views, actions = _inputs(model, 3, depth)
    with torch.no_grad():
        full = model(ground, views, actions)
        logits, cache = model.start(ground, views[:, 0])
        steps = [logits]
        for t in range(depth - 1):
            logits, cache = model.advance(actions[:, t], views[:, t + 1], cache)
            steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    assert len(cache) == model.config.decoder.layers
    k, v = cache[0]
    assert k.shape == (3, model.config.decoder.heads, 2 * depth,
                       model.config.decoder_width // model.config.decoder.heads)


def test_reorder_cache_selects_beams():
    model = _model()
    ground, views, actions = _inputs(model, 3, 2)
    index = torch.tensor([2, 2, 0])
    with torch.no_grad():
        _, cache = model.start(ground, views[:, 0])
        cache = model.reorder_cache(cache, index)
        logits, _ = model.advance(actions[index, 0], views[index, 1], cache)
        full = model(ground[index], views[index], actions[index])
    assert torch.allclose(logits, full[:, 1], atol=1e-5)


def test_bad_lengths_are_rejected():
    model = _model(depth=2)
    ground, views, actions = _inputs(model, 1, 2)
    with pytest.raises(JziError, match="map views"):
        model(ground, torch.cat([views, views], 1), actions)
    with pytest.raises(JziError, match="actions shape"):
        model(ground, views, actions[:, :0])


def test_trainable_blocks_freeze_all_but_last_blocks():
    model = ZoomModel(ModelConfig.preset("tiny", encoder={"num_layers": 3,
                                                          "trainable_blocks": 1}))
    backbone = model.encoder.backbone
    assert not any(p.requires_grad for p in backbone.embeddings.parameters())
    assert not any(p.requires_grad for p in backbone.encoder.layer[1].parameters())
    assert all(p.requires_grad for p in backbone.encoder.layer[2].parameters())
    assert all(p.requires_grad for p in backbone.layernorm.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    frozen = ZoomModel(ModelConfig.preset("tiny", encoder={"trainable_blocks": 0}))
    assert frozen.config.encoder.frozen
    assert not any(p.requires_grad for p in frozen.encoder.parameters())


def test_encoder_hash_tracks_encoder_weights_only():
    a, b = _model(), _model()
    assert a.encoder_hash() == b.encoder_hash()
    with torch.no_grad():
        b.decoder.head.bias.add_(1.0)
    assert a.encoder_hash() == b.encoder_hash()
    with torch.no_grad():
        b.encoder.backbone.layernorm.bias.add_(1e-3)
    assert a.encoder_hash() != b.encoder_hash()


def test_config_round_trip_and_errors():
    config = ModelConfig.preset("demo", grid=3, encoder={"trainable_blocks": 2})
    assert config.encoder.hidden_size == 192 and config.encoder.trainable_blocks == 2
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(JziError, match="preset 'huge'"):
        ModelConfig.preset("huge")
    with pytest.raises(JziError, match=r"unknown key\(s\) \['hiden_size'\]"):
        ModelConfig.preset("tiny", encoder={"hiden_size": 3})
    with pytest.raises(JziError, match="ground_crops"):
        ModelConfig.preset("tiny", ground_crops="triple")
    with pytest.raises(JziError, match="grid"):
        ModelConfig.preset("tiny", grid=1)
    with pytest.raises(JziError, match="heads"):
        ModelConfig.preset("tiny", decoder={"width": 60})
