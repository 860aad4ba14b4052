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

"""The prior-seeded zoom: the seeded beam search, the filter's seeds, the Localizer and replay."""
import json

import numpy as np
import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.inference.decode import BeamSearch, BeamSteps, PAD_LOG_PROB, Seeds
from jzi_ros.inference.fusion import CellFilter
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.measurement import Measurement
from support import make_tiny_map, make_tiny_model, sharpen_decoder

T0 = 1_700_000_000 * 10**9


def _setup(tmp_path, depth=3, frames=6, seed=0):
    pyramid = make_tiny_map(tmp_path, depth=depth)
    model = sharpen_decoder(make_tiny_model(pyramid, seed), seed)
    rng = torch.Generator().manual_seed(seed)
    table = torch.randn(pyramid.tree.num_views, model.embed_dim, generator=rng)
    ground = torch.randn(frames, model.embed_dim, generator=rng)
    return pyramid.tree, model, ground, table


def _prefix_log_probs(model, ground, table, tree, prefix):
    """Uncached teacher forcing: (log-prob of ``prefix``, child log-probs after it)."""
    prefix = np.asarray(prefix, np.int64)[None]
    views = np.stack([tree.view_indices(prefix[:, :s]) for s in range(prefix.shape[1] + 1)], 1)
    with torch.no_grad():
        logits = model(ground[None], table[torch.as_tensor(views)], torch.as_tensor(prefix))
    lp = torch.log_softmax(logits[0].float(), dim=-1)
    path_lp = sum(float(lp[t, a]) for t, a in enumerate(prefix[0]))
    return path_lp, lp[-1].numpy()


def _digits(index, level, k):
    return [index // k ** (level - 1 - t) % k for t in range(level)]


@pytest.mark.parametrize("level", [1, 2])
def test_seeded_search_keeps_the_models_beam_and_expands_the_seeds(tmp_path, level):
    tree, model, ground, table = _setup(tmp_path)
    k, beams = tree.num_actions, 4
    rng = np.random.default_rng(level)
    seeds = rng.integers(0, k ** level, (len(ground), 5))
    seeds[0, 1] = -1  # an unused slot
    seeds[1, 3] = seeds[1, 2]  # a repeated seed counts once
    with torch.no_grad():
        plain = BeamSearch(model, tree.grid, tree.depth, beams, with_steps=True)(ground, table)
        seeded = BeamSearch(model, tree.grid, tree.depth, beams, seeds=5, seed_level=level)(
            ground, table, torch.as_tensor(seeds))
    # the model's own beam is untouched: the Fix does not change with seeding
    assert torch.equal(seeded[0], plain[0])
    assert torch.allclose(seeded[1], plain[1], atol=1e-5)
    assert tuple(seeded[3].shape) == (len(ground), tree.depth - 1, beams + 5)
    for frame, steps in enumerate(BeamSteps.split(*seeded[2:])):
        valid = steps.prefix_lp > PAD_LOG_PROB / 2
        own = set(steps.prefix_index[level - 1][:beams][valid[level - 1][:beams]].tolist())
        extra = steps.prefix_index[level - 1][beams:][valid[level - 1][beams:]].tolist()
        wanted = {int(s) for s in seeds[frame] if s >= 0} - own
        assert sorted(extra) == sorted(wanted)  # each new seed once, known ones dropped
        for row in np.flatnonzero(valid[level - 1][beams:]) + beams:
            cell = int(steps.prefix_index[level - 1][row])
            path_lp, child_lp = _prefix_log_probs(model, ground[frame], table, tree,
                                                  _digits(cell, level, k))
            assert steps.prefix_lp[level - 1][row] == pytest.approx(path_lp, abs=1e-4)
            assert np.allclose(steps.step_lp[level - 1][row], child_lp, atol=1e-4)
        # still one density over the root: the pieces tile it once, the mass sums to 1
        measurement = Measurement.from_steps(tree, steps)
        sides = tree.size_m / tree.grid ** measurement.levels.astype(np.float64)
        assert (sides ** 2).sum() == pytest.approx(tree.size_m ** 2)
        assert measurement.mass.sum() == pytest.approx(1.0)
        plain_pieces = Measurement.from_steps(tree, BeamSteps.split(*plain[2:])[frame])
        assert len(measurement.mass) >= len(plain_pieces.mass) + (k - 1) * len(wanted) - 1e-9


def test_seeded_search_checks_its_arguments(tmp_path):
    tree, model, ground, table = _setup(tmp_path, frames=2)
    with pytest.raises(JziError, match="seed_level"):
        BeamSearch(model, tree.grid, tree.depth, 4, seeds=3, seed_level=tree.depth)
    search = BeamSearch(model, tree.grid, tree.depth, 4, seeds=3, seed_level=1)
    with pytest.raises(JziError, match="seeds"):
        search(ground, table, torch.zeros((2, 2), dtype=torch.long))


def _confident_filter(tree, east, north, frames=12, **overrides):
    """Return a filter after ``frames`` 1 s frames whose zoom is sure of (east, north)."""
    fused = CellFilter(tree, FusionConfig(**overrides))
    path = tree.path_of_local(east, north)
    sure = Measurement.from_beam(tree, np.array([path]), np.array([0.0]))
    for frame in range(frames):
        fused.step(T0 + frame * 10**9, sure, np.zeros(2))
    return fused, T0 + (frames - 1) * 10**9


def test_seed_cells_are_the_priors_heaviest_cell_and_its_neighbours(tmp_path):
    tree = make_tiny_map(tmp_path, depth=3).tree
    fused, last = _confident_filter(tree, 100.0, -50.0)
    before = (fused.particles.copy(), fused.weights.copy(), fused.rng.bit_generator.state)
    seeds = fused.seed_cells(last + 10**9, np.zeros(2))
    # reads the state, never changes it (no random draws either)
    assert np.array_equal(fused.particles, before[0])
    assert np.array_equal(fused.weights, before[1])
    assert fused.rng.bit_generator.state == before[2]
    level = seeds.level
    assert 1 <= level < tree.depth
    assert tree.cell_side(level) >= fused.config.fix_sigma_m
    assert level + 1 == tree.depth or tree.cell_side(level + 1) < fused.config.fix_sigma_m
    path = tree.path_of_local(100.0, -50.0)[:level]
    index = 0
    for action in path:
        index = index * tree.num_actions + action
    assert seeds.cells[0] == index  # the heaviest first
    valid = seeds.cells[seeds.cells >= 0]
    assert len(set(valid.tolist())) == len(valid) and 4 <= len(valid) <= 9
    # odometry moves the prior: one cell west, the heaviest seed is that cell
    side = tree.cell_side(level)
    moved = fused.seed_cells(last + 10**9, np.array([-side, 0.0]))
    shifted = tree.path_of_local(100.0 - side, -50.0)[:level]
    index = 0
    for action in shifted:
        index = index * tree.num_actions + action
    assert moved.cells[0] == index


def test_no_seeds_without_a_confident_prior(tmp_path):
    tree = make_tiny_map(tmp_path, depth=3).tree
    assert CellFilter(tree).seed_cells(T0) is None  # not started
    fused, last = _confident_filter(tree, 0.0, 0.0)
    assert fused.seed_cells(last - 10**9) is None  # time went back: this frame restarts it
    assert fused.seed_cells(last + int(60e9)) is None  # a gap over max_gap_s
    # started from a flat measurement: the prior is spread over the whole map
    k = tree.num_actions
    uniform = CellFilter(tree)
    uniform.step(T0, Measurement(np.ones(k, np.int64), np.arange(k, dtype=np.int64),
                                 np.full(k, 1.0 / k)))
    assert uniform.seed_cells(T0 + 10**9) is None  # a flat prior does not steer the zoom


@pytest.mark.parametrize("cpu_graph", ["eager", "jit"])
def test_localizer_seeds_change_the_measurement_not_the_fix(tmp_path, cpu_graph):
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig
    from support import make_tiny_checkpoint, world_of

    pyramid = make_tiny_map(tmp_path, depth=3)
    tree = pyramid.tree
    ckpt = make_tiny_checkpoint(tmp_path, pyramid, sharpen=True)
    localizer = Localizer.from_paths(pyramid.path, ckpt,
                                     LocalizerConfig(backend="torch", cpu_graph=cpu_graph))
    image = world_of(pyramid).ground_image(100.0, -50.0)
    fix, plain = localizer.localize_measured(image)
    # seed every level-1 cell the beam did not pick: the measurement resolves all of them
    seeds = Seeds(1, np.arange(tree.num_actions, dtype=np.int64))
    seeded_fix, seeded = localizer.localize_measured(image, seeds=seeds)
    assert (seeded_fix.latitude, seeded_fix.longitude) == (fix.latitude, fix.longitude)
    assert seeded_fix.hypotheses == fix.hypotheses
    assert seeded.mass.sum() == pytest.approx(1.0)
    assert (seeded.levels > 1).all()  # no level-1 cell is left unexpanded
    assert (plain.levels == 1).any()
    assert len(seeded.mass) > len(plain.mass)


def test_the_seeded_search_is_built_at_start_up_not_on_the_first_seeded_frame(
        tmp_path, monkeypatch):
    from jzi_ros.inference.backends.cpu_graph import CpuGraph
    from jzi_ros.inference.fusion_config import FusionConfig
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig
    from jzi_ros.inference.seeding import SEED_COUNT, seed_level
    from support import make_tiny_checkpoint, world_of

    pyramid = make_tiny_map(tmp_path, depth=3)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid, sharpen=True)
    localizer = Localizer.from_paths(pyramid.path, ckpt,
                                     LocalizerConfig(backend="torch", cpu_graph="jit"))
    sigma = FusionConfig().fix_sigma_m
    level = seed_level(pyramid.tree, sigma)
    localizer.warm_seeded(sigma)
    assert list(localizer.backend._seeded_searches) == [(SEED_COUNT, level)]

    def no_more_graphs(self, mode, inputs):
        raise AssertionError(f"{self.what} built on a camera frame")

    monkeypatch.setattr(CpuGraph, "_build_or_fall_back", no_more_graphs)
    cells = np.full(SEED_COUNT, -1, np.int64)
    cells[:2] = (0, 1)
    image = world_of(pyramid).ground_image(100.0, -50.0)
    fix, measurement = localizer.localize_measured(image, seeds=Seeds(level, cells))
    assert measurement is not None and np.isfinite(fix.latitude)


@pytest.mark.slow
def test_replay_seed_beam_reports_the_seeded_runs_next_to_the_others(tmp_path, capsys):
    from jzi_ros.cli import main as jzi_main
    from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC, write_bag
    from jzi_ros.demo.odometry import ODOM_TOPIC, simulate
    from support import make_tiny_checkpoint, world_of

    pyramid = make_tiny_map(tmp_path, depth=3)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid, sharpen=True)
    world = world_of(pyramid)
    n = 10
    stamps = T0 + np.arange(n, dtype=np.int64) * 10**9
    track = np.stack([-300 + 20.0 * np.arange(n), np.zeros(n)], axis=1)
    frames = [(int(s), world.ground_image(*p), (p[0], p[1], 100.0))
              for s, p in zip(stamps, track)]
    bag = write_bag(tmp_path / "bag", pyramid.tree, frames, odometry=simulate(0, track, stamps))
    out = tmp_path / "report"
    rc = jzi_main.main(["replay", str(bag), "--map", str(pyramid.path), "--model", str(ckpt),
                        "--image-topic", IMAGE_TOPIC, "--gt-topic", GT_TOPIC, "--out", str(out),
                        "--no-progress", "--no-plots", "--backend", "torch", "--fusion",
                        "--odom-topic", ODOM_TOPIC, "--seed-beam"])
    assert rc == 0
    assert "fused + seeded zoom, odometry" in capsys.readouterr().out
    runs = json.loads((out / "report.json").read_text())["fusion"]["runs"]
    assert set(runs) == {"single_frame", "fused_random_walk", "fused_odometry",
                         "fused_random_walk_seeded", "fused_odometry_seeded"}
    for name in ("fused_random_walk_seeded", "fused_odometry_seeded"):
        row = runs[name]
        assert row["all"]["count"] == n
        assert row["frame_ms_median"] > 0 and 0.0 <= row["seeded_fraction"] <= 1.0
    assert runs["fused_odometry"]["frame_ms_median"] is None  # unseeded: no own frames
