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

"""Localizer: image in -> Fix out, bad images, map/model mismatches, thresholds, NO_FIX."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from jzi_ros.errors import BadImageError, JziError
from jzi_ros.inference.decode import greedy_reference, table_view_fn
from jzi_ros.inference.fix import FixStatus
from jzi_ros.inference.localizer import Localizer, LocalizerConfig
from jzi_ros.model.checkpoint import load_checkpoint, update_checkpoint_metadata
from jzi_ros.model.preprocess import ground_pixels
from support import make_tiny_checkpoint, make_tiny_map, world_of

CPU = LocalizerConfig(backend="torch", device="cpu", warmup_frames=0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loc")
    pyramid = make_tiny_map(tmp, depth=3)
    ckpt = make_tiny_checkpoint(tmp, pyramid, sharpen=True)
    return pyramid, ckpt


@pytest.fixture(scope="module")
def localizer(setup):
    pyramid, ckpt = setup
    return Localizer.from_paths(pyramid.path, ckpt, CPU)


def _image(pyramid, east=120.0, north=-310.0):
    return world_of(pyramid).ground_image(east, north, size=(40, 80))


def test_localize_returns_a_finite_fix_with_beam_hypotheses(localizer, setup):
    pyramid, _ = setup
    fix = localizer.localize(_image(pyramid))
    assert fix.status == FixStatus.FIX and fix.reason == ""
    half = pyramid.tree.size_m / 2
    assert abs(fix.east_m) < half and abs(fix.north_m) < half
    assert len(fix.hypotheses) == CPU.beam_width
    assert math.isclose(sum(h.probability for h in fix.hypotheses), 1.0, rel_tol=1e-6)
    top = fix.hypotheses[0]
    assert (top.east_m, top.north_m) == (fix.east_m, fix.north_m)  # "top" position mode
    assert math.isclose(fix.confidence, math.exp(top.log_prob), rel_tol=1e-6)
    lat, lon = pyramid.tree.cell_center(top.path)
    assert math.isclose(fix.latitude, lat, abs_tol=1e-9)
    cov = fix.covariance_enu
    assert np.all(np.linalg.eigvalsh(cov[:2, :2]) >= CPU.sigma_floor_m ** 2 - 1e-6)
    assert cov[2, 2] == CPU.altitude_sigma_m ** 2 and fix.altitude == CPU.altitude_m
    assert {"preprocess", "encode", "decode", "posterior", "total"} <= set(fix.timings_ms)


def test_beam_one_fix_is_the_papers_greedy_cell(setup):
    pyramid, ckpt = setup
    loc = Localizer.from_paths(pyramid.path, ckpt, dataclasses.replace(CPU, beam_width=1))
    model, _ = load_checkpoint(ckpt)
    table = torch.from_numpy(pyramid.load_embeddings(model.encoder_hash()).astype(np.float32))
    for east in (-500.0, 0.0, 450.0):
        image = _image(pyramid, east, east / 2)
        with torch.no_grad():
            ground = model.encode_ground(ground_pixels(image, model.config)[None])
        path, _ = greedy_reference(model, ground, table_view_fn(table, pyramid.tree), 3)
        fix = loc.localize(image)
        assert fix.hypotheses[0].path == tuple(path[0].tolist())
        # one hypothesis: the covariance is the within-cell variance (or the floor)
        side = pyramid.tree.cell_side(3)
        expected = max(side ** 2 / 12, CPU.sigma_floor_m ** 2)
        assert np.allclose(fix.covariance_enu[:2, :2], np.eye(2) * expected)


@pytest.mark.parametrize("bad, match", [
    ("not an image", "numpy array"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((1, 1, 3), np.uint8), "too small"),
    (np.zeros((8, 8, 2), np.uint8), "shape"),
    (np.zeros((2, 8, 8, 3), np.uint8), "shape"),
    (np.zeros((8, 8, 3), np.complex64), "dtype"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
])
def test_unusable_images_raise_bad_image_error(localizer, bad, match):
    with pytest.raises(BadImageError, match=match):
        localizer.localize(bad)


def test_convertible_images_are_localized(localizer, setup):
    pyramid, _ = setup
    rgb = _image(pyramid)
    reference = localizer.localize(rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    same = {
        "rgba": rgba,
        "float01": rgb.astype(np.float32) / 255.0,
        "uint16": rgb.astype(np.uint16) * 257,
        "non-contiguous": np.asfortranarray(rgb),
    }
    for name, image in same.items():
        fix = localizer.localize(image)
        assert fix.hypotheses[0].path == reference.hypotheses[0].path, name
        assert np.isclose(fix.confidence, reference.confidence, rtol=1e-3), name
    gray = rgb.mean(axis=2).astype(np.uint8)
    mask = np.random.default_rng(0).random((64, 64)) > 0.5  # textured (uniform is NO_FIX)
    for image in (gray, gray[:, :, None], mask):
        assert localizer.localize(image).ok
    # 20000 x 40000 px (a zero-stride view, no 2.4 GB allocation): subsampled, not an error
    row = np.random.default_rng(1).integers(0, 256, (1, 40000, 3), dtype=np.uint8)
    huge = np.broadcast_to(row, (20000, 40000, 3))
    assert huge.shape[1] > localizer.config.max_image_side
    assert localizer.localize(huge).ok


def test_confidence_threshold_gives_no_fix_with_reason(setup):
    pyramid, ckpt = setup
    loc = Localizer.from_paths(pyramid.path, ckpt,
                               dataclasses.replace(CPU, confidence_threshold=1.0))
    fix = loc.localize(_image(pyramid))
    assert fix.status == FixStatus.NO_FIX and "below threshold" in fix.reason
    assert np.all(np.isfinite(fix.covariance_enu))
    assert fix.covariance_enu[0, 0] >= pyramid.tree.size_m ** 2 / 12
    assert fix.hypotheses  # still reported for diagnostics


def test_runtime_config_change_resolves_gate_and_scale(setup):
    pyramid, ckpt = setup
    loc = Localizer.from_paths(pyramid.path, ckpt, CPU)
    assert loc.localize(_image(pyramid)).ok
    loc.config = dataclasses.replace(CPU, confidence_threshold=1.0, covariance_scale=3.0)
    assert (loc.confidence_threshold, loc.covariance_scale) == (1.0, 3.0)
    assert loc.localize(_image(pyramid)).status == FixStatus.NO_FIX
    loc.config = dataclasses.replace(CPU, confidence_threshold=0.0, sigma_floor_m=1.0)
    assert loc.confidence_threshold == 0.0 and loc.localize(_image(pyramid)).ok


def test_non_finite_decoder_output_is_no_fix(setup, monkeypatch):
    pyramid, ckpt = setup
    loc = Localizer.from_paths(pyramid.path, ckpt, CPU)
    decode = loc.backend.decode

    def broken(ground):
        paths, log_probs = decode(ground)
        return paths, np.full_like(log_probs, np.nan)
    monkeypatch.setattr(loc.backend, "decode", broken)
    fix = loc.localize(_image(pyramid))
    assert fix.status == FixStatus.NO_FIX and "non-finite" in fix.reason

    def crash(ground):
        raise RuntimeError("CUDA error: an illegal memory access")
    monkeypatch.setattr(loc.backend, "decode", crash)
    fix = loc.localize(_image(pyramid))
    assert fix.status == FixStatus.NO_FIX and "illegal memory access" in fix.reason


def test_mean_position_and_calibrated_scale(tmp_path):
    pyramid = make_tiny_map(tmp_path, depth=2)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid, sharpen=True)
    image = _image(pyramid)
    top = Localizer.from_paths(pyramid.path, ckpt, dataclasses.replace(CPU, beam_width=16))
    mean = Localizer.from_paths(pyramid.path, ckpt, dataclasses.replace(
        CPU, beam_width=16, position="mean"))
    fix_top, fix_mean = top.localize(image), mean.localize(image)
    centres = np.array([(h.east_m, h.north_m) for h in fix_mean.hypotheses])
    probs = np.array([h.probability for h in fix_mean.hypotheses])
    assert np.allclose([fix_mean.east_m, fix_mean.north_m], probs @ centres)
    assert fix_top.covariance_enu[0, 0] >= fix_mean.covariance_enu[0, 0] - 1e-6

    update_checkpoint_metadata(ckpt, calibration={
        "covariance_scale": 4.0, "target": "mean", "frames": 10, "mean_nees": 2.0,
        "median_nees": 1.4, "raw_mean_nees": 8.0, "beam_width": 16, "position": "top",
        "sigma_floor_m": 0.001, "median_error_m": 10.0})
    scaled = Localizer.from_paths(pyramid.path, ckpt, dataclasses.replace(
        CPU, beam_width=16, sigma_floor_m=0.001))
    plain = Localizer.from_paths(pyramid.path, ckpt, dataclasses.replace(
        CPU, beam_width=16, sigma_floor_m=0.001, covariance_scale=1.0))
    assert scaled.covariance_scale == 4.0
    assert np.allclose(scaled.localize(image).covariance_enu[:2, :2],
                       4.0 * plain.localize(image).covariance_enu[:2, :2])


def test_map_and_model_mismatches_are_clear_errors(tmp_path):
    map2 = make_tiny_map(tmp_path, depth=2, name="d2")
    map3 = make_tiny_map(tmp_path, depth=3, name="d3")
    ckpt2 = make_tiny_checkpoint(tmp_path, map2, name="d2.ckpt")
    with pytest.raises(JziError, match="depth 2.*depth 3"):
        Localizer.from_paths(map3.path, ckpt2, CPU)
    # same tree, but the map was embedded by another encoder
    other = make_tiny_checkpoint(tmp_path, map2, seed=1, name="other.ckpt", embed=False)
    with pytest.raises(JziError, match="jzi map embed"):
        Localizer.from_paths(map2.path, other, CPU)
    # right hash, wrong width (a hand-made table)
    from jzi_ros.model.checkpoint import read_header
    map2.write_embeddings(np.zeros((map2.tree.num_views, 32), np.float16),
                          read_header(ckpt2)["encoder_hash"])
    with pytest.raises(JziError, match="32 wide"):
        Localizer.from_paths(map2.path, ckpt2, CPU)
    with pytest.raises(JziError, match="does not exist"):
        Localizer.from_paths(map2.path, tmp_path / "missing.safetensors", CPU)
    with pytest.raises(JziError, match="beam_width"):
        LocalizerConfig(beam_width=0)
    with pytest.raises(JziError, match="unknown key"):
        LocalizerConfig.from_dict({"beam": 3})
