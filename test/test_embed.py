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

"""maps.embed: the stored table equals the encoder's output and is keyed by its hash."""
import numpy as np
import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.maps.embed import embed_map, embed_views
from jzi_ros.maps.pyramid import MapPyramid
from jzi_ros.model import load_checkpoint, view_pixels
from support import make_tiny_checkpoint, make_tiny_map, make_tiny_model


def test_embed_map_writes_table_matching_the_encoder(tmp_path):
    pyramid = make_tiny_map(tmp_path)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid, seed=5, embed=False)
    assert pyramid.embeddings_hash() is None
    out = embed_map(pyramid.path, ckpt, batch_size=5, progress=False)
    assert out == pyramid.embeddings_path and out.is_file()
    model, _ = load_checkpoint(ckpt)
    table = MapPyramid.open(pyramid.path).load_embeddings(model.encoder_hash())
    assert table.dtype == np.float16 and table.shape == (pyramid.tree.num_views, 64)
    index = pyramid.tree.view_index((3,))
    with torch.no_grad():
        expected = model.encode_views(view_pixels(pyramid.views[index:index + 1],
                                                  model.config))
    np.testing.assert_allclose(table[index].astype(np.float32), expected[0].numpy(),
                               rtol=2e-3, atol=2e-3)
    # distinct views give distinct vectors (the batching did not mix rows up)
    assert not np.allclose(table[1], table[2])


def test_embed_views_independent_of_batch_size(tmp_path):
    pyramid = make_tiny_map(tmp_path)
    model = make_tiny_model(pyramid)
    a = embed_views(pyramid, model, batch_size=1, progress=False)
    b = embed_views(pyramid, model, batch_size=64, progress=False)
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)
    with pytest.raises(JziError, match="batch_size"):
        embed_views(pyramid, model, batch_size=0)


def test_grid_depth_mismatch_is_a_clear_error(tmp_path):
    pyramid = make_tiny_map(tmp_path, grid=4, depth=2)
    other = make_tiny_map(tmp_path, grid=2, depth=3, name="other")
    ckpt = make_tiny_checkpoint(tmp_path, other, embed=False)
    with pytest.raises(JziError, match=r"2x2 grid with depth 3.*grid 4 and depth 2"):
        embed_map(pyramid.path, ckpt, progress=False)
    with pytest.raises(JziError, match="does not exist"):
        embed_map(pyramid.path, tmp_path / "missing.safetensors", progress=False)
