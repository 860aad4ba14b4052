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
Backend selection and its errors.

CPU-only checks; GPU/TensorRT ones are in test_backends_gpu.py.
"""
import importlib.util

import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.inference.backends import auto_candidates, BackendSpec, create_backend
from support import LoggerRecords, make_tiny_checkpoint, make_tiny_map


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sel")
    pyramid = make_tiny_map(tmp, depth=2)
    ckpt = make_tiny_checkpoint(tmp, pyramid, embed=False)
    table = np.zeros((pyramid.tree.num_views, 64), np.float16)
    return BackendSpec(str(ckpt), table, 4, 2, 2, export_dir=str(tmp / "no-export"))


def test_auto_without_export_or_gpu_picks_torch_cpu_and_says_why(spec):
    with LoggerRecords("jzi_ros.inference.backends") as log:
        backend = create_backend("auto", spec, "auto", "auto")
    if backend.device.startswith("cuda"):
        pytest.skip("a CUDA device is present")
    assert (backend.name, backend.device, backend.precision) == ("torch", "cpu", "fp32")
    assert "picked torch on cpu" in log.text
    assert "no ONNX export" in log.text or "onnxruntime is not installed" in log.text
    order = [c[:2] for c in auto_candidates(spec, "auto", "auto")]
    assert order == [("tensorrt", "cuda"), ("onnxruntime", "cuda"), ("torch", "cuda"),
                     ("onnxruntime", "cpu"), ("torch", "cpu")]


def test_explicit_choices_fail_clearly(spec):
    with pytest.raises(JziError, match="unknown"):
        create_backend("openvino", spec)
    with pytest.raises(JziError, match="fp32 export"):
        create_backend("onnxruntime", spec, "cpu", "fp16")
    with pytest.raises(JziError, match="device 'tpu'"):
        create_backend("torch", spec, "tpu", "fp32")
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(JziError, match="tensorrt Python package is not installed"):
            create_backend("tensorrt", spec, "cuda", "fp16")


def test_auto_respects_an_explicit_cpu_device(spec):
    reasons = {f"{b}/{d}": r for b, d, _, r in auto_candidates(spec, "cpu", "auto")}
    assert reasons["tensorrt/cuda"] == "device cpu was requested"
    assert reasons["torch/cpu"] is None
