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
GPU backends against PyTorch fp32 on the CPU.

Torch CUDA (fp32, fp16, CUDA graphs) and TensorRT (FP16 encoder, engine cache). Skipped
without a CUDA GPU / TensorRT.
"""
import json

import numpy as np
import pytest

from jzi_ros.inference.backends import BackendSpec, create_backend
from jzi_ros.inference.parity import compare
from jzi_ros.model.checkpoint import load_checkpoint
from support import make_tiny_checkpoint, make_tiny_map

BEAM = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu")
    pyramid = make_tiny_map(tmp, depth=3)
    ckpt = make_tiny_checkpoint(tmp, pyramid, sharpen=True)
    model, _ = load_checkpoint(ckpt)
    table = pyramid.load_embeddings(model.encoder_hash())
    spec = BackendSpec(str(ckpt), table, 4, 3, BEAM, export_dir=str(tmp / "onnx"))
    return spec, model, table


@pytest.mark.gpu
def test_torch_cuda_fp32_matches_cpu(setup):
    spec, model, table = setup
    backend = create_backend("torch", spec, "cuda", "fp32")
    parity = compare(backend, model, table, BEAM, frames=4)
    assert parity.same_paths and parity.ground_cosine_min > 0.99999, parity


@pytest.mark.gpu
def test_torch_cuda_graph_replay_equals_eager(setup):
    import dataclasses
    spec, _, _ = setup
    graphed = create_backend("torch", spec, "cuda", "fp32")
    eager = create_backend("torch", dataclasses.replace(spec, cuda_graph=False), "cuda", "fp32")
    pixels = np.random.default_rng(0).normal(size=(1, 2, 3, 56, 56)).astype(np.float32)
    for _ in range(3):  # first call captures, later calls replay
        ground = graphed.encode(pixels)
        assert np.allclose(ground, eager.encode(pixels), atol=1e-5)
        paths, log_probs = graphed.decode(ground)
        ref_paths, ref_lp = eager.decode(ground)
        assert np.array_equal(paths, ref_paths) and np.allclose(log_probs, ref_lp, atol=1e-4)
        pixels = pixels + 0.5  # new input: the static buffer must be refreshed
    assert not graphed._encode.failed and not graphed._decode.failed


@pytest.mark.gpu
def test_torch_cuda_fp16_stays_close(setup):
    spec, model, table = setup
    backend = create_backend("torch", spec, "cuda", "fp16")
    parity = compare(backend, model, table, BEAM, frames=8)
    assert parity.ok(fp16=True), parity


@pytest.mark.tensorrt
def test_tensorrt_fp16_parity_and_engine_cache(setup):
    import dataclasses
    from pathlib import Path
    spec, model, table = setup
    backend = create_backend("tensorrt", spec, "cuda", "fp16")
    assert backend.encoder.built and backend.decoder.built
    parity = compare(backend, model, table, BEAM, frames=1)
    assert parity.ok(fp16=True), parity
    # the decoder engine is fp32: the filter's per-step measurement is torch's
    assert parity.same_prefixes and parity.step_max_abs_diff < 1e-3, parity
    assert backend.check_fp16(spec.model_path) >= 0.999
    # cached: a second backend deserialises instead of building
    again = create_backend("tensorrt", spec, "cuda", "fp16")
    assert not again.encoder.built and not again.decoder.built
    # a sidecar from another TensorRT version makes it stale: rebuilt
    plan = again.encoder.params.engine_path()
    sidecar = plan.with_name(plan.name + ".json")
    data = json.loads(sidecar.read_text())
    data["key"]["tensorrt"] = "0.0.0"
    sidecar.write_text(json.dumps(data))
    assert create_backend("tensorrt", spec, "cuda", "fp16").encoder.built
    # a corrupt plan is rebuilt too, and force_engine_update always rebuilds
    Path(plan).write_bytes(b"garbage")
    assert create_backend("tensorrt", spec, "cuda", "fp16").encoder.built
    forced = dataclasses.replace(spec, force_engine_update=True)
    assert create_backend("tensorrt", forced, "cuda", "fp16").decoder.built


@pytest.mark.gpu
def test_onnxruntime_cuda_matches_torch_fp32(setup):
    from jzi_ros.inference.backends.onnxruntime_backend import available_providers
    if "CUDAExecutionProvider" not in available_providers():
        pytest.skip("onnxruntime-gpu (CUDAExecutionProvider) is not installed")
    spec, model, table = setup
    backend = create_backend("onnxruntime", spec, "cuda", "fp32")
    parity = compare(backend, model, table, BEAM, frames=3)
    assert parity.same_paths and parity.log_prob_max_abs_diff < 1e-3, parity
    assert parity.same_prefixes and parity.step_max_abs_diff < 1e-3, parity
