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
FP16 drift check that runs without a GPU.

The torch backend in half precision on the CPU against fp32 (CLS cosine >= 0.999 and the
same top path on a fixed set of frames).
"""
import numpy as np
import pytest

from jzi_ros.inference.backends import BackendSpec, create_backend
from jzi_ros.inference.parity import compare
from jzi_ros.model.checkpoint import load_checkpoint
from support import make_tiny_checkpoint, make_tiny_map


@pytest.mark.slow  # two tiny-model exports
def test_fp16_encoder_and_decoder_stay_close_to_fp32(tmp_path):
    pyramid = make_tiny_map(tmp_path, depth=3)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid, sharpen=True)
    model, _ = load_checkpoint(ckpt)
    table = pyramid.load_embeddings(model.encoder_hash())
    spec = BackendSpec(str(ckpt), table, 4, 3, 4)
    half = create_backend("torch", spec, "cpu", "fp16")
    assert half.precision == "fp16" and half.dtype.itemsize == 2
    parity = compare(half, model, table, 4, frames=8)
    assert parity.ok(fp16=True), parity
    assert parity.ground_cosine_min >= 0.999
    # and fp16 is really different arithmetic (the check is not comparing fp32 with itself)
    assert parity.ground_max_abs_diff > 0 or parity.log_prob_max_abs_diff > 0
    assert np.isfinite(parity.log_prob_max_abs_diff)
