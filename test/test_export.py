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

"""ONNX export: files + description, ONNX Runtime parity with PyTorch fp32, staleness."""
import dataclasses

import numpy as np
import pytest
import torch

from jzi_ros.inference.backends import BackendSpec, create_backend
from jzi_ros.inference.backends.onnxruntime_backend import run_in_chunks
from jzi_ros.inference.export import (DECODER_OUTPUTS, default_export_dir, EXPORT_JSON,
                                      export_model, FORMAT, read_export, weights_hash)
from jzi_ros.inference.localizer import Localizer, LocalizerConfig
from jzi_ros.inference.measurement import Measurement
from jzi_ros.inference.parity import compare
from jzi_ros.model.checkpoint import load_checkpoint
from support import LoggerRecords, make_tiny_checkpoint, make_tiny_map, world_of

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.slow  # one ONNX export (~5 s idle, more on a loaded machine)
BEAM = 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    pyramid = make_tiny_map(tmp, depth=2)
    ckpt = make_tiny_checkpoint(tmp, pyramid, sharpen=True)
    info = export_model(ckpt, None, beam_width=BEAM, batch_size=1)
    return pyramid, ckpt, info


def test_export_writes_graphs_and_a_description(exported):
    onnx = pytest.importorskip("onnx")
    pyramid, ckpt, info = exported
    folder = default_export_dir(ckpt)
    assert (folder / EXPORT_JSON).is_file()
    encoder = folder / info["encoder"]["file"]
    decoder = folder / info["decoders"][f"b{BEAM}_n1"]["file"]
    for path in (encoder, decoder):
        onnx.checker.check_model(str(path))
    size = info["image_size"]
    assert info["encoder"]["inputs"][0]["shape"] == [1, 2, 3, size, size]
    assert info["decoders"][f"b{BEAM}_n1"]["outputs"][0]["shape"] == [1, BEAM, 2]
    assert info["num_views"] == pyramid.tree.num_views
    assert info["preprocessing"]["resize"] == [size, 2 * size]
    graph = onnx.load(str(decoder)).graph
    assert [i.name for i in graph.input] == ["ground", "view_table"]
    assert [o.name for o in graph.output] == list(DECODER_OUTPUTS)
    described = info["decoders"][f"b{BEAM}_n1"]["outputs"]
    assert [o["name"] for o in described] == list(DECODER_OUTPUTS)
    assert described[-1]["shape"] == [1, 1, BEAM, 16]  # step_lp [N, D-1, B, K]


def test_onnxruntime_gives_the_filter_every_step_as_torch_does(exported):
    """The exported graph's steps are torch's: the filter fuses the same measurement."""
    pyramid, ckpt, _ = exported
    model, _ = load_checkpoint(ckpt)
    table = pyramid.load_embeddings(model.encoder_hash())
    spec = BackendSpec(str(ckpt), table, 4, 2, BEAM, cpu_graph="eager")
    runtimes = {name: create_backend(name, spec, "cpu", "fp32")
                for name in ("torch", "onnxruntime")}
    ground = np.random.default_rng(3).normal(size=(3, model.embed_dim)).astype(np.float32)
    (paths_t, lp_t, steps_t), (paths_o, lp_o, steps_o) = (
        runtimes[name].decode_steps(ground) for name in ("torch", "onnxruntime"))
    assert np.array_equal(paths_t, paths_o) and np.allclose(lp_t, lp_o, atol=1e-4)
    assert len(steps_o) == 3
    for a, b in zip(steps_t, steps_o):
        assert b.prefix_index.dtype == a.prefix_index.dtype == np.int64  # as torch gives them
        assert np.array_equal(a.prefix_index, b.prefix_index)
        for name in ("root_lp", "prefix_lp", "step_lp"):
            assert np.allclose(getattr(a, name), getattr(b, name), atol=1e-4), name
    # decode() still returns the beam alone, the same as decode_steps' beam
    paths, log_probs = runtimes["onnxruntime"].decode(ground)
    assert np.array_equal(paths, paths_o) and np.array_equal(log_probs, lp_o)
    # the graph takes no seeds: the model's own steps, with one warning
    with LoggerRecords("jzi_ros.inference.backends") as log:
        seeded = runtimes["onnxruntime"].decode_steps(ground, np.zeros((3, 2), np.int64))
        runtimes["onnxruntime"].decode_steps(ground, np.zeros((3, 2), np.int64))
    assert log.text.count("takes no seeds") == 1
    assert np.allclose(seeded[2][0].step_lp, steps_o[0].step_lp)


def test_tensorrt_backend_hands_the_engines_steps_on_in_chunks(exported):
    """Check TensorRT's output plumbing, the engine replaced by the graph's torch module."""
    from jzi_ros.inference.backends.tensorrt_backend import TensorRTBackend
    from jzi_ros.inference.export import DecoderGraph

    pyramid, ckpt, _ = exported
    model, _ = load_checkpoint(ckpt)
    table = torch.as_tensor(np.asarray(pyramid.load_embeddings(model.encoder_hash()),
                                       np.float32))
    graph = DecoderGraph(model.float().eval(), BEAM)
    buffers = {}

    def engine(ground):  # the engine's contract: named outputs in reused buffers
        with torch.inference_mode():
            for name, value in zip(DECODER_OUTPUTS, graph(ground, table)):
                buffers.setdefault(name, torch.empty_like(value)).copy_(value)
        return buffers

    backend = object.__new__(TensorRTBackend)  # no TensorRT here: only the Python around it
    backend.device, backend.batch, backend.decoder = "cpu", 2, engine
    ground = np.random.default_rng(5).normal(size=(3, model.embed_dim)).astype(np.float32)
    paths, log_probs, steps = backend.decode_steps(ground)  # 3 frames in chunks of 2
    reference = BackendSpec(str(ckpt), table.numpy(), 4, 2, BEAM, cpu_graph="eager")
    ref_paths, ref_lp, ref_steps = create_backend("torch", reference, "cpu",
                                                  "fp32").decode_steps(ground)
    assert paths.dtype == np.int64 and np.array_equal(paths, ref_paths)
    assert np.allclose(log_probs, ref_lp, atol=1e-5) and len(steps) == 3
    for a, b in zip(steps, ref_steps):
        assert a.prefix_index.dtype == np.int64
        assert np.array_equal(a.prefix_index, b.prefix_index)
        assert np.allclose(a.step_lp, b.step_lp, atol=1e-5)
    assert np.array_equal(backend.decode(ground)[0], paths)


def test_localizer_on_onnxruntime_measures_every_step(exported):
    pyramid, ckpt, _ = exported
    config = LocalizerConfig(beam_width=BEAM, device="cpu", warmup_frames=0)
    locs = [Localizer.from_paths(pyramid.path, ckpt, dataclasses.replace(config, backend=name))
            for name in ("torch", "onnxruntime")]
    image = world_of(pyramid).ground_image(120.0, -80.0, size=(40, 80))
    (_, torch_m), (_, onnx_m) = (loc.localize_measured(image) for loc in locs)
    beam_only = Measurement.from_beam(pyramid.tree, *(
        np.array(v) for v in zip(*[(h.path, h.log_prob) for h in locs[1].localize(
            image).hypotheses])))
    assert len(onnx_m.mass) > len(beam_only.mass)  # not the final beam alone
    assert np.array_equal(torch_m.levels, onnx_m.levels)
    assert np.array_equal(torch_m.indices, onnx_m.indices)
    assert np.allclose(torch_m.mass, onnx_m.mass, atol=1e-5)


def test_onnxruntime_cpu_matches_torch_fp32(exported):
    pyramid, ckpt, _ = exported
    model, _ = load_checkpoint(ckpt)
    table = pyramid.load_embeddings(model.encoder_hash())
    spec = BackendSpec(str(ckpt), table, 4, 2, BEAM)
    backend = create_backend("onnxruntime", spec, "cpu", "fp32")
    parity = compare(backend, model, table, BEAM, frames=3)
    assert parity.ok(), parity
    assert parity.same_paths and parity.log_prob_max_abs_diff < 1e-3
    assert parity.same_prefixes and parity.step_max_abs_diff < 1e-3


def test_localizer_on_onnxruntime_equals_torch_and_auto_prefers_it(exported):
    pyramid, ckpt, _ = exported
    base = LocalizerConfig(beam_width=BEAM, device="cpu", warmup_frames=0)
    torch_loc = Localizer.from_paths(pyramid.path, ckpt,
                                     dataclasses.replace(base, backend="torch"))
    with LoggerRecords("jzi_ros.inference.backends") as log:
        auto = Localizer.from_paths(pyramid.path, ckpt, base)
    assert auto.backend_name == "onnxruntime"
    assert "picked onnxruntime" in log.text and "device cpu was requested" in log.text
    world = world_of(pyramid)
    for east in (-300.0, 50.0, 420.0):
        image = world.ground_image(east, -east, size=(40, 80))
        a, b = torch_loc.localize(image), auto.localize(image)
        assert [h.path for h in a.hypotheses] == [h.path for h in b.hypotheses]
        assert np.allclose([h.log_prob for h in a.hypotheses],
                           [h.log_prob for h in b.hypotheses], atol=1e-3)


def test_export_is_reused_until_the_weights_change(exported):
    pyramid, ckpt, info = exported
    folder = default_export_dir(ckpt)
    stamp = (folder / "encoder.onnx").stat().st_mtime_ns
    again = export_model(ckpt, None, beam_width=BEAM)
    assert again["weights_hash"] == info["weights_hash"]
    assert (folder / "encoder.onnx").stat().st_mtime_ns == stamp
    model, _ = load_checkpoint(ckpt)
    assert weights_hash(model) == info["weights_hash"]
    with torch.no_grad():
        model.decoder.head.bias.add_(1e-3)  # a decoder-only change (frozen encoder training)
    assert weights_hash(model) != info["weights_hash"]


def test_an_export_from_before_the_step_outputs_is_redone_with_the_reason(tmp_path):
    (tmp_path / EXPORT_JSON).write_text('{"format": "jzi-onnx-export/1", "decoders": {}}')
    with LoggerRecords("jzi_ros.inference.export") as log:
        assert read_export(tmp_path) is None  # export_model then exports everything again
    assert "jzi-onnx-export/1" in log.text and "exporting again" in log.text
    (tmp_path / EXPORT_JSON).write_text('{"format": "%s", "decoders": {}}' % FORMAT)
    assert read_export(tmp_path)["format"] == FORMAT


def test_static_batch_chunks_and_pads():
    calls = []

    def run(chunk):
        calls.append(chunk.shape[0])
        return [chunk * 2, chunk[:, :1]]
    out = run_in_chunks(run, np.arange(10, dtype=np.float32).reshape(5, 2), 2)
    assert calls == [2, 2, 2]
    assert np.array_equal(out[0], np.arange(10).reshape(5, 2) * 2) and out[1].shape == (5, 1)
