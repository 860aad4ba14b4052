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

"""Beam search with the KV cache against the uncached teacher-forced forward pass."""
import numpy as np
import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.inference.decode import (beam_search, effective_beam_width, greedy_reference,
                                      path_log_probs, table_view_fn)
from support import make_tiny_map, make_tiny_model, sharpen_decoder


def _setup(tmp_path, depth, frames=6, seed=0):
    pyramid = make_tiny_map(tmp_path, depth=depth)
    model = make_tiny_model(pyramid, seed)
    sharpen_decoder(model, seed)
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        table = torch.randn(pyramid.tree.num_views, model.embed_dim, generator=rng)
        # random-weight encoders map any image to nearly the same vector: use random tokens
        ground = torch.randn(frames, model.embed_dim, generator=rng)
    return pyramid.tree, model, ground, table


def test_beam_one_is_the_papers_greedy_decoding(tmp_path):
    tree, model, ground, table = _setup(tmp_path, depth=3)
    paths, log_probs = beam_search(model, ground, table, tree, beam_width=1)
    ref_paths, ref_log_probs = greedy_reference(model, ground, table_view_fn(table, tree),
                                                tree.depth)
    assert paths.shape == (6, 1, 3) and log_probs.shape == (6, 1)
    assert torch.equal(paths[:, 0], ref_paths)
    assert torch.allclose(log_probs[:, 0], ref_log_probs, atol=1e-4)
    assert len({tuple(p) for p in ref_paths.tolist()}) > 1  # the frames really differ


def test_exhaustive_beam_enumerates_every_path_with_exact_log_probs(tmp_path):
    tree, model, ground, table = _setup(tmp_path, depth=2, frames=3)
    count = tree.num_actions ** tree.depth
    paths, log_probs = beam_search(model, ground, table, tree, beam_width=count + 50)
    assert paths.shape == (3, count, 2)  # clamped to the number of terminal cells
    for frame in range(3):
        assert len({tuple(p) for p in paths[frame].tolist()}) == count
    assert torch.all(log_probs[:, :-1] >= log_probs[:, 1:])  # best first
    assert torch.allclose(torch.logsumexp(log_probs, dim=1), torch.zeros(3), atol=1e-4)
    teacher = path_log_probs(model, ground, table, tree, paths)
    assert torch.allclose(teacher, log_probs, atol=1e-4)


def test_wider_beam_never_finds_a_worse_top_path(tmp_path):
    tree, model, ground, table = _setup(tmp_path, depth=3)
    _, greedy = beam_search(model, ground, table, tree, 1)
    paths, beam = beam_search(model, ground, table, tree, 8)
    assert torch.all(beam[:, 0] >= greedy[:, 0] - 1e-5)
    for frame in range(len(paths)):
        assert len({tuple(p) for p in paths[frame].tolist()}) == 8
    assert torch.allclose(path_log_probs(model, ground, table, tree, paths), beam, atol=1e-4)


def test_batched_search_equals_frame_by_frame(tmp_path):
    tree, model, ground, table = _setup(tmp_path, depth=3, frames=4)
    paths, log_probs = beam_search(model, ground, table, tree, 5)
    for frame in range(4):
        one_paths, one_lp = beam_search(model, ground[frame:frame + 1], table, tree, 5)
        assert torch.equal(one_paths[0], paths[frame])
        assert torch.allclose(one_lp[0], log_probs[frame], atol=1e-5)


def test_bad_arguments_are_clear_errors(tmp_path):
    tree, model, ground, table = _setup(tmp_path, depth=2, frames=1)
    with pytest.raises(JziError, match="beam_width"):
        beam_search(model, ground, table, tree, 0)
    with pytest.raises(JziError, match="view embedding table"):
        beam_search(model, ground, table[:-1], tree, 1)
    assert effective_beam_width(10**6, 4, 2) == 256
    assert np.isfinite(beam_search(model, ground, table, tree, 300)[1].numpy()).all()


def _reference_beam(model, ground, table, tree, beam):
    """
    Beam search the slow, obvious way: the uncached forward on every prefix, Python lists.

    Returns per frame ``(paths [B', D], log_probs [B'], root_lp [K], steps)`` where ``steps``
    lists, for levels 1..D-1, the beam's (level index, path log-prob, child log-probs) rows.
    """
    k, depth = tree.num_actions, tree.depth
    frames = []
    with torch.no_grad():
        for g in ground:
            beams, root_lp, steps = [((), 0.0)], None, []
            for t in range(depth):
                prefixes = np.array([p for p, _ in beams], np.int64).reshape(len(beams), t)
                index = np.stack([tree.view_indices(prefixes[:, :s]) for s in range(t + 1)], 1)
                logits = model(g.expand(len(beams), -1), table[torch.as_tensor(index)],
                               torch.as_tensor(prefixes))[:, -1]
                lp = torch.log_softmax(logits.float(), dim=-1)
                if t == 0:
                    root_lp = lp[0]
                else:
                    steps.append([(tree.view_indices(prefixes[i:i + 1])[0]
                                   - tree.level_offsets[t], score, lp[i])
                                  for i, (_, score) in enumerate(beams)])
                options = [(p + (a,), score + float(lp[i, a]))
                           for i, (p, score) in enumerate(beams) for a in range(k)]
                beams = sorted(options, key=lambda o: -o[1])[:beam]
            frames.append((np.array([p for p, _ in beams]), np.array([s for _, s in beams]),
                           root_lp, steps))
    return frames


@pytest.mark.parametrize("beam, cpu_graph", [
    (1, "eager"), (4, "eager"), (4, "jit"), (16, "jit"),
    pytest.param(4, "aoti", marks=(pytest.mark.slow, pytest.mark.cxx))])
def test_optimised_search_equals_the_uncached_reference(tmp_path, beam, cpu_graph):
    """The lean decoder (traced or compiled ahead of time) gives the reference's paths."""
    from jzi_ros.inference.backends import BackendSpec
    from jzi_ros.inference.backends.torch_backend import TorchBackend
    from jzi_ros.inference.decode import PAD_LOG_PROB
    from jzi_ros.model.checkpoint import save_checkpoint

    tree, model, ground, table = _setup(tmp_path, depth=3, frames=8)
    save_checkpoint(tmp_path / "m.safetensors", model, {"source": "test"})
    reference = _reference_beam(model, ground, table, tree, beam)
    backend = TorchBackend(BackendSpec(str(tmp_path / "m.safetensors"), table.numpy(),
                                       tree.grid, tree.depth, beam, cpu_graph=cpu_graph,
                                       export_dir=str(tmp_path / "exports")))
    paths, log_probs = backend.decode(ground.numpy())
    step_paths, step_log_probs, steps = backend.decode_steps(ground.numpy())
    packages = sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.glob("exports/aoti/*.pt2"))
    # aoti: both searches compiled (not fallen back to the trace); other modes compile none
    assert packages == (["beam-decoder", "beam-decoder-with-steps"] if cpu_graph == "aoti"
                        else [])
    assert np.array_equal(step_paths, paths)
    assert np.allclose(step_log_probs, log_probs, atol=1e-5)
    for frame, (ref_paths, ref_lp, ref_root, ref_steps) in enumerate(reference):
        assert np.array_equal(paths[frame], ref_paths)
        assert np.allclose(log_probs[frame], ref_lp, atol=1e-5)
        got = steps[frame]
        assert np.allclose(got.root_lp, ref_root.numpy(), atol=1e-5)
        for level, rows in enumerate(ref_steps):
            valid = got.prefix_lp[level] > PAD_LOG_PROB / 2
            assert valid.sum() == len(rows)
            for i, (index, score, child_lp) in enumerate(rows):
                assert got.prefix_index[level][i] == index
                assert abs(got.prefix_lp[level][i] - score) < 1e-5
                assert np.allclose(got.step_lp[level][i], child_lp.numpy(), atol=1e-5)
    backend.close()
