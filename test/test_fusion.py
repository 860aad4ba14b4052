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

"""The temporal filter: measurement from the zoom's steps, convergence, kidnap, time jumps."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree
from jzi_ros.inference.bench_filter import simulated_steps as synthetic_steps
from jzi_ros.inference.decode import BeamSearch, BeamSteps, PAD_LOG_PROB, path_log_probs
from jzi_ros.inference.fix import Fix, FixStatus
from jzi_ros.inference.fusion import CellFilter
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.measurement import Measurement, PointMeasurement, terminal_indices_local
from support import make_tiny_map, make_tiny_model, sharpen_decoder

TREE = CellTree(45.0, 7.0, 2500.0, grid=4, depth=3)


def _level_index(path):
    index = 0
    for action in path:
        index = index * TREE.num_actions + action
    return index


def _grid_integral(tree, measurement, n=256):
    half = tree.size_m / 2
    g = np.linspace(-half, half, n, endpoint=False) + tree.size_m / n / 2
    east, north = np.meshgrid(g, g)
    dens = measurement.densities(tree, east.ravel(), north.ravel())
    return float(dens.sum() * (tree.size_m / n) ** 2), dens


def test_measurement_from_steps_is_a_density_peaking_at_the_zooms_best_cell():
    rng = np.random.default_rng(0)
    steps = synthetic_steps(TREE, 300.0, -200.0, True, rng)
    m = Measurement.from_steps(TREE, steps)
    assert m.mass.sum() == pytest.approx(1.0)
    # the pieces are disjoint cells: they tile the root exactly once
    areas = (TREE.size_m / TREE.grid ** m.levels.astype(float)) ** 2
    assert areas.sum() == pytest.approx(TREE.size_m ** 2)
    integral, dens = _grid_integral(TREE, m)
    assert integral == pytest.approx(1.0, rel=1e-6)
    truth = m.densities(TREE, np.array([300.0]), np.array([-200.0]))[0]
    assert truth == pytest.approx(dens.max())  # sharp synthetic zoom: the true cell wins
    # an unexpanded level-1 cell holds its root probability, spread over its 625 m
    unexpanded = np.flatnonzero(m.levels == 1)[0]
    assert m.mass[unexpanded] == pytest.approx(math.exp(steps.root_lp[m.indices[unexpanded]]))


def test_measurement_from_the_real_beam_search_matches_teacher_forced_probabilities(tmp_path):
    pyramid = make_tiny_map(tmp_path, depth=3)
    model = make_tiny_model(pyramid, 0)
    sharpen_decoder(model, 0)
    tree = pyramid.tree
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(tree.num_views, model.embed_dim, generator=gen)
    ground = torch.randn(3, model.embed_dim, generator=gen)
    plain = BeamSearch(model, tree.grid, tree.depth, 4)
    detailed = BeamSearch(model, tree.grid, tree.depth, 4, with_steps=True)
    with torch.no_grad():
        paths, log_probs = plain(ground, table)
        paths2, log_probs2, *steps = detailed(ground, table)
    assert torch.equal(paths, paths2) and torch.allclose(log_probs, log_probs2)
    for frame, step in enumerate(BeamSteps.split(*steps)):
        m = Measurement.from_steps(tree, step)
        # every final beam path is a terminal piece carrying its own path probability
        for path, lp in zip(paths[frame].tolist(), log_probs[frame].tolist()):
            index = _level_index_tree(tree, path)
            hit = (m.levels == tree.depth) & (m.indices == index)
            assert hit.sum() == 1 and m.mass[hit][0] == pytest.approx(math.exp(lp), rel=1e-4)
        teacher = path_log_probs(model, ground[frame:frame + 1], table, tree,
                                 paths[frame:frame + 1])
        assert torch.allclose(teacher[0], log_probs[frame], atol=1e-4)
        assert m.mass.sum() == pytest.approx(1.0)


def _level_index_tree(tree, path):
    index = 0
    for action in path:
        index = index * tree.num_actions + action
    return index


def test_terminal_indices_agree_with_the_cell_tree():
    rng = np.random.default_rng(1)
    points = rng.uniform(-1249, 1249, (200, 2))
    got = terminal_indices_local(TREE, points[:, 0], points[:, 1])
    want = [_level_index(TREE.path_of_local(e, n)) for e, n in points]
    assert got.tolist() == want


def test_measurement_from_beam_keeps_the_unexplained_mass_uniform():
    paths = np.array([[1, 2, 3], [1, 2, 4]])
    m = Measurement.from_beam(TREE, paths, np.log([0.5, 0.2]))
    assert m.background == pytest.approx(0.3)
    integral, _ = _grid_integral(TREE, m)
    assert integral == pytest.approx(1.0, rel=1e-6)


def _flight(n=120, speed=15.0, seed=0):
    """Return a straight-ish constant-speed track inside the demo-sized root (local metres)."""
    rng = np.random.default_rng(seed)
    heading = 0.6
    pos = np.array([-700.0, -500.0])
    out = []
    for _ in range(n):
        out.append(pos.copy())
        heading += rng.normal(0, 0.03)
        pos = pos + speed * np.array([math.cos(heading), math.sin(heading)])
    return np.array(out)


def _run(track, right_rate, seed, kidnap_at=None, config=None, stamps=None):
    rng = np.random.default_rng(seed)
    filt = CellFilter(TREE, config or FusionConfig(seed=seed))
    single, fused, fixes, events = [], [], [], []
    for i, (east, north) in enumerate(track):
        steps = synthetic_steps(TREE, east, north, rng.uniform() < right_rate, rng)
        m = Measurement.from_steps(TREE, steps)
        stamp = stamps[i] if stamps is not None else 10**18 + i * 10**9
        est = filt.step(stamp, m)
        fix = filt.fix(est, 0.0, 100.0)
        best = steps.step_lp.shape  # noqa: F841 (shape only documents the layout)
        top = max(zip(m.mass, m.levels, m.indices), key=lambda t: t[0] if t[1] == 3 else -1)
        single.append(np.hypot(*(_centre(top[2]) - (east, north))))
        fused.append(np.hypot(fix.east_m - east, fix.north_m - north))
        fixes.append(fix)
        events.append(est.event)
    return np.array(single), np.array(fused), fixes, events


def _centre(index):
    path = []
    for _ in range(TREE.depth):
        index, action = divmod(index, TREE.num_actions)
        path.append(action)
    return np.array(TREE.cell_center_local(tuple(reversed(path))))


def test_fusion_beats_single_frames_when_most_of_them_are_wrong():
    track = _flight()
    # a near-constant-velocity flight: the small acceleration noise that models it (the
    # default is fitted on the demo's turning flights and spreads the belief more)
    config = FusionConfig(seed=3, accel_sigma_mps2=2.0)
    single, fused, fixes, events = _run(track, right_rate=0.4, seed=3, config=config)
    assert events[0] == "init"
    assert np.mean(single <= 100) < 0.5 and np.median(single) > 300  # most land anywhere
    tail = slice(30, None)  # after convergence
    assert np.median(fused[tail]) < 60
    assert np.mean(fused[tail] <= 100) > 0.9
    assert sum(f.ok for f in fixes[tail]) > 0.6 * len(fixes[tail])
    assert all(np.all(np.isfinite(f.covariance_enu)) for f in fixes)


@pytest.mark.parametrize("proposal_fraction", [FusionConfig().proposal_fraction, 0.0])
def test_a_one_kilometre_kidnap_is_recovered(proposal_fraction):
    """By the measurement-drawn particles, or (without them) by the likelihood-ratio test."""
    track = _flight(160)
    track[80:] += np.array([1000.0, 0.0]) * (1 if track[79, 0] < 0 else -1)
    config = FusionConfig(seed=5, proposal_fraction=proposal_fraction)
    _, fused, _, events = _run(track, right_rate=0.6, seed=5, config=config)
    assert np.median(fused[60:80]) < 60
    assert np.median(fused[80:85]) > 900  # it was really lost
    recovered = next(i for i in range(80, 155) if np.all(fused[i:i + 5] < 100))
    assert recovered < 80 + 30, "the filter did not find the robot again"
    assert np.median(fused[120:]) < 60
    kidnaps = [i for i, e in enumerate(events) if e.startswith("kidnap")]
    if proposal_fraction == 0.0:
        assert kidnaps and 80 < kidnaps[0] <= recovered
    assert not [i for i in kidnaps if i < 80]  # no false alarm while tracking


def test_time_jumps_back_and_long_gaps_restart_the_filter():
    track = _flight(40)
    stamps = [10**18 + i * 10**9 for i in range(20)] * 2  # the bag played twice
    stamps[35:] = [s + 60 * 10**9 for s in stamps[35:]]  # then a one-minute gap
    _, fused, fixes, events = _run(np.concatenate([track[:20], track[:20]]), 0.7, seed=2,
                                   stamps=stamps)
    assert events[20].startswith("reset: time jumped back")
    assert events[35].startswith("reset:") and "gap" in events[35]
    assert all(np.all(np.isfinite(f.covariance_enu)) for f in fixes)
    assert np.median(fused[10:20]) < 100 and np.median(fused[30:35]) < 100


def test_no_fix_until_converged_and_a_missing_measurement_only_propagates():
    filt = CellFilter(TREE, FusionConfig())
    est = filt.step(10**18, None)
    assert not filt.initialised and not filt.fix(est, 0.0, 100.0).ok
    rng = np.random.default_rng(0)
    m = Measurement.from_steps(TREE, synthetic_steps(TREE, 0.0, 0.0, True, rng))
    first = filt.fix(filt.step(10**18, m), 0.0, 100.0)
    assert not first.ok and "not converged" in first.reason  # one frame is not enough
    before = filt.particles.copy()
    filt.step(10**18 + 10**9, None)
    assert filt.particles.shape == before.shape and not np.allclose(filt.particles, before)


def test_odometry_displacement_moves_the_cloud():
    filt = CellFilter(TREE, FusionConfig(odom_noise_fraction=0.0, odom_noise_mps=0.0))
    rng = np.random.default_rng(0)
    m = Measurement.from_steps(TREE, synthetic_steps(TREE, 0.0, 0.0, True, rng))
    filt.step(0, m)
    before = filt.weights @ filt.particles
    filt.predict(1.0, np.array([30.0, -40.0]))
    assert filt.weights @ filt.particles - before == pytest.approx([30.0, -40.0], abs=1.0)


def test_modes_are_the_belief_clusters_heaviest_first_and_the_tail_is_left_out():
    """Two clouds 1 km apart (70 / 25 %), 5 % spread thinly over the map: two modes."""
    filt = CellFilter(TREE, FusionConfig(particles=2000))
    rng = np.random.default_rng(0)
    main = rng.normal([-400.0, 300.0], 30.0, (1400, 2))
    second = rng.normal([500.0, -200.0], 40.0, (500, 2))
    tail = rng.uniform(-1200.0, 1200.0, (100, 2))
    points = np.concatenate([main, second, tail])
    filt._state = np.concatenate([points.T, np.zeros((2, 2000))])
    filt.weights = np.full(2000, 1 / 2000)
    filt.last_stamp_ns, filt._coarse = 0, None
    est = filt._estimate("")
    assert len(est.modes) == 2 and [m.mass for m in est.modes] == sorted(
        [m.mass for m in est.modes], reverse=True)
    heavy, light = est.modes
    assert heavy.mass == pytest.approx(0.7, abs=0.02)
    assert light.mass == pytest.approx(0.25, abs=0.02)
    assert heavy.mean_en == pytest.approx(main.mean(axis=0), abs=5.0)
    assert light.mean_en == pytest.approx(second.mean(axis=0), abs=5.0)
    assert np.sqrt(np.diag(heavy.cov_en)) == pytest.approx([30.0, 30.0], rel=0.15)
    # the published covariance holds the second mode's offset, not the tail
    offset = light.mean_en - heavy.mean_en
    expected = (heavy.mass * heavy.cov_en + light.mass * (light.cov_en + np.outer(offset, offset))
                ) / (heavy.mass + light.mass)
    assert est.cov_en == pytest.approx(expected, rel=1e-9)
    assert est.mean_en == pytest.approx(heavy.mean_en) and not est.converged  # 0.7 but wide
    assert est.spread_m == pytest.approx(float(np.hypot(*offset)))


@pytest.mark.parametrize("kernel", ["numpy", "auto"])
def test_the_fused_fixs_hypotheses_are_the_modes_built_when_read(kernel):
    """Two modes: the Fix knows it has two hypotheses; their cells and lat/lon come on read."""
    import copy as copy_module
    import pickle

    from jzi_ros.inference.fix import LazyHypotheses

    filt = CellFilter(TREE, FusionConfig(particles=2000, kernel=kernel))
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal([-400.0, 300.0], 30.0, (1300, 2)),
                             rng.normal([500.0, -200.0], 40.0, (700, 2))])
    filt._state = np.ascontiguousarray(np.concatenate([points.T, np.zeros((2, 2000))]))
    filt.weights = np.full(2000, 1 / 2000)
    filt.last_stamp_ns, filt._coarse = 0, None
    est = filt._estimate("")
    fix = filt.fix(est, 12.0, 100.0)
    assert isinstance(fix.hypotheses, LazyHypotheses) and fix.hypotheses._items is None
    assert len(fix.hypotheses) == len(est.modes) == 2 and fix.hypotheses  # not built yet
    assert fix.hypotheses._items is None
    for hypothesis, mode in zip(fix.hypotheses, est.modes):
        east, north = mode.mean_en.tolist()
        assert hypothesis.path == TREE.path_of_local(east, north)
        assert (hypothesis.east_m, hypothesis.north_m) == (east, north)
        assert hypothesis.probability == mode.mass
        assert hypothesis.log_prob == math.log(mode.mass)
        assert (hypothesis.latitude, hypothesis.longitude) == TREE.to_latlon(east, north)
    top = fix.hypotheses[0]
    assert (top.latitude, top.longitude, top.east_m) == (fix.latitude, fix.longitude, fix.east_m)
    copy = pickle.loads(pickle.dumps(fix))  # pickles as the tuple it built
    assert type(copy.hypotheses) is tuple and copy.hypotheses == fix.hypotheses
    assert copy_module.deepcopy(fix.hypotheses) == fix.hypotheses
    assert fix.hypotheses == tuple(fix.hypotheses) and tuple(fix.hypotheses) == fix.hypotheses
    assert Fix.no_fix("x", 1.0, 2.0, 0.0, 9.0, hypotheses=fix.hypotheses).hypotheses is (
        fix.hypotheses)  # passed on unbuilt


def test_bench_filter_alternates_with_the_encoder_and_times_both():
    from jzi_ros.inference.bench_filter import bench_filter

    calls = []
    timing = bench_filter(TREE, frames=6, warmup=2, encode=lambda: calls.append("encode"),
                          frame=lambda: calls.append("frame"))
    assert calls == ["encode", "frame"] * 8  # the frame's own localization: after the encoder
    assert timing["terminal_cells"] == TREE.num_actions ** TREE.depth
    assert timing["median"] > 0 and timing["p95"] >= timing["median"]
    assert timing["encoder_median"] >= 0 and "encoder_cpu_median" in timing
    assert "encoder_median" not in bench_filter(TREE, frames=2, warmup=0)


@pytest.mark.parametrize("field,value", [("particles", 3), ("likelihood_exponent", 0.0),
                                         ("likelihood_exponent", 1.5), ("max_gap_s", -1.0),
                                         ("uniform_weight", 1.0), ("fix_mode_mass", 0.0),
                                         ("refined_sigma_floor_m", 0.0),
                                         ("refined_outlier_prob", 0.0),
                                         ("refined_proposal_fraction", 0.96)])
def test_bad_fusion_config_is_a_clear_error(field, value):
    with pytest.raises(JziError, match=f"fusion.{field}"):
        FusionConfig(**{field: value})
    with pytest.raises(JziError, match="unknown key"):
        FusionConfig.from_dict({"particle": 10})


def test_padding_beams_are_ignored():
    k = TREE.num_actions
    steps = BeamSteps(np.log(np.full(k, 1.0 / k)), np.zeros((2, 2), np.int64),
                      np.array([[math.log(1 / k), PAD_LOG_PROB],
                                [math.log(1 / k ** 2), PAD_LOG_PROB]]),
                      np.log(np.full((2, 2, k), 1.0 / k)))
    m = Measurement.from_steps(TREE, steps)
    assert m.mass.sum() == pytest.approx(1.0)
    assert len(m.mass) == (k - 1) + (k - 1) + k


def test_localize_measured_gives_the_same_fix_and_a_full_measurement(tmp_path):
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig
    from support import make_tiny_checkpoint, world_of

    pyramid = make_tiny_map(tmp_path, depth=3)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid, sharpen=True)
    localizer = Localizer.from_paths(pyramid.path, ckpt, LocalizerConfig(backend="torch"))
    image = world_of(pyramid).ground_image(100.0, -50.0)
    plain = localizer.localize(image)
    fix, measurement = localizer.localize_measured(image)
    assert (fix.latitude, fix.longitude) == (plain.latitude, plain.longitude)
    assert np.allclose(fix.covariance_enu, plain.covariance_enu)
    assert {"encode", "decode", "posterior", "total"} <= set(fix.timings_ms)
    assert measurement.mass.sum() == pytest.approx(1.0) and measurement.background == 0.0
    # the published top cell carries its path probability in the measurement
    top = fix.hypotheses[0]
    east, north = top.east_m, top.north_m
    density = measurement.densities(pyramid.tree, np.array([east]), np.array([north]))[0]
    side = pyramid.tree.cell_side(pyramid.tree.depth)
    assert density * side ** 2 == pytest.approx(math.exp(top.log_prob), rel=1e-3)


def test_cell_codes_decode_what_they_encode():
    from jzi_ros.inference.measurement import cell_codes

    for grid, depth in ((4, 3), (4, 4), (3, 3), (2, 5)):
        codes = cell_codes(grid, depth)
        n = grid ** depth
        rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        index = codes.row_code[rows.ravel()] + codes.col_code[cols.ravel()]
        assert sorted(index.tolist()) == list(range(n * n))  # a bijection onto the cells
        assert np.array_equal(codes.decode(index), np.stack([cols.ravel(), rows.ravel()], 1))


def test_a_beam_only_measurement_leaves_its_gaps_to_the_background():
    paths = np.array([[0, 0, 5], [15, 3, 2]])
    m = Measurement.from_beam(TREE, paths, np.log([0.6, 0.1]))
    part = m.partition(TREE)
    assert part.bounds[0] == 0 and np.all(np.diff(part.bounds) > 0)
    assert part.cells.sum() == TREE.num_actions ** TREE.depth  # the runs tile the root
    centres = np.array([TREE.cell_center_local(tuple(p)) for p in paths])
    dens = m.densities(TREE, centres[:, 0], centres[:, 1])
    area = TREE.cell_side(TREE.depth) ** 2
    assert dens * area == pytest.approx(np.array([0.6, 0.1]) + 0.3 / 4096)
    elsewhere = m.densities(TREE, np.array([0.0]), np.array([0.0]))[0]
    assert elsewhere == pytest.approx(0.3 / TREE.size_m ** 2)


def _synthetic_result(seed, n=120):
    """Build a replay-like result over simulated zooms (right 40 % of the frames) of a flight."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    records = []
    for i, (east, north) in enumerate(_flight(n, seed=seed)):
        steps = synthetic_steps(TREE, east, north, rng.uniform() < 0.4, rng)
        records.append(SimpleNamespace(stamp_ns=10**18 + i * 10**9, used=True,
                                       gt=SimpleNamespace(east_m=east, north_m=north),
                                       measurement=Measurement.from_steps(TREE, steps)))
    return SimpleNamespace(records=records, tree=TREE, used=records, bag=f"synthetic{seed}",
                           fusion_track=None)


def test_fit_fusion_picks_from_its_grids_and_calibrates_the_fix_frames():
    from jzi_ros.evaluation.fusion_replay import _errors, _runs, fit_fusion
    from jzi_ros.inference.posterior import apply_scale_and_floor, nees_2d

    results = [_synthetic_result(1), _synthetic_result(2)]
    grids = {"accel_sigma_mps2": (2.0, 8.0), "likelihood_exponent": (0.2, 0.5)}
    fit = fit_fusion(results, FusionConfig(), grids=grids, seeds=2)
    values = fit["config"]
    assert values["accel_sigma_mps2"] in grids["accel_sigma_mps2"]
    assert values["likelihood_exponent"] in grids["likelihood_exponent"]
    assert "odom_covariance_scale" not in values  # no odometry in these results
    gate = f"{values['fix_mode_mass']:g}/{values['fix_sigma_m']:g}"
    assert fit["gate_right_minus_wrong"][gate] == max(fit["gate_right_minus_wrong"].values())
    # the fitted scale puts the median NEES of the FIX frames at the chi-square(2) median
    config = FusionConfig(**values)
    rows = [row for row in _runs(results, config, 2) if row[1].ok]
    cov = apply_scale_and_floor(np.array([est.cov_en for _, _, est in rows]),
                                values["covariance_scale"], config.sigma_floor_m)
    assert np.median(nees_2d(_errors(rows), cov)) == pytest.approx(2 * math.log(2), rel=0.05)


def test_fit_fusion_fits_visual_odometrys_filter_where_the_replays_have_it():
    """Steps 20 % short (a wrong height guess): noise and scale state fitted on its filter."""
    from types import SimpleNamespace

    from jzi_ros.evaluation.fusion_replay import _errors, _runs, fit_fusion, FIT_VISUAL_GRIDS

    results = [_synthetic_result(1), _synthetic_result(2)]
    for result in results:
        truth = {r.stamp_ns: np.array([r.gt.east_m, r.gt.north_m]) for r in result.records}
        result.fusion_visual = SimpleNamespace(
            displacement=lambda a, b, truth=truth: 0.8 * (truth[b] - truth[a]))
    grids = {"likelihood_exponent": (0.2,)}
    fit = fit_fusion(results, FusionConfig(), grids=grids, seeds=2)
    values = fit["config"]
    for name, grid in FIT_VISUAL_GRIDS.items():
        recall = fit["recall_100"][name]
        assert set(recall) == {f"{v:g}" for v in grid}
        assert values[name] in grid and recall[f"{values[name]:g}"] == max(recall.values())
    # the recall it kept is the visual filter's with the fitted values
    config = FusionConfig(**values)
    errors = np.hypot(*_errors(_runs(results, config, 2, visual=True)).T)
    assert np.mean(errors <= 100.0) == pytest.approx(
        fit["recall_100"]["visual_scale_sigma"][f"{values['visual_scale_sigma']:g}"], abs=1e-4)
    # without visual odometry in the replays nothing of it is fitted
    for result in results:
        result.fusion_visual = None
    assert "visual_noise_fraction" not in fit_fusion(results, FusionConfig(), grids=grids,
                                                     seeds=1)["config"]


def _tracking(seed=4, frames=40):
    """Return a filter that tracks a flight to within ~40 m, the flight, the zoom's draws."""
    track = _flight(frames + 30)
    rng = np.random.default_rng(seed)
    filt = CellFilter(TREE, FusionConfig(seed=seed, accel_sigma_mps2=2.0))
    for i, (east, north) in enumerate(track[:frames]):
        steps = synthetic_steps(TREE, east, north, rng.uniform() < 0.6, rng)
        est = filt.step(10**18 + i * 10**9, Measurement.from_steps(TREE, steps))
    return filt, est, track, rng


def _zoom(track, i, rng):
    east, north = track[i]
    return Measurement.from_steps(TREE, synthetic_steps(TREE, east, north, rng.uniform() < 0.6,
                                                        rng))


def test_refined_points_pull_a_tracking_filter_to_metres_with_a_matching_covariance():
    filt, est, track, rng = _tracking()
    before = filt.fix(est, 0.0, 100.0)
    before_err = np.hypot(before.east_m - track[39, 0], before.north_m - track[39, 1])
    assert before.ok and 5.0 < before_err < 60.0 and before.sigma_en_m[0] > 10.0
    errors, sigmas, nees = [], [], []
    for i in range(40, 60):
        truth = track[i]
        point = PointMeasurement(truth + rng.normal(0.0, 1.5, 2), np.eye(2) * 1.5 ** 2)
        est = filt.step(10**18 + i * 10**9, _zoom(track, i, rng), point=point)
        fix = filt.fix(est, 0.0, 100.0)
        assert fix.ok and est.refined
        error = np.array([fix.east_m, fix.north_m]) - truth
        errors.append(np.hypot(*error))
        sigmas.append(max(fix.sigma_en_m))
        nees.append(error @ np.linalg.solve(fix.covariance_enu[:2, :2], error))
    assert np.median(errors[2:]) < 2.5 and max(errors[2:]) < 6.0
    # the covariance follows: about the inflated point's (1.5 m and the 2 m floor: 2.5 m), not
    # the zoom belief's tens of metres, and neither over- nor (much) under-confident
    floor = FusionConfig().refined_sigma_floor_m
    assert floor <= min(sigmas) and max(sigmas[2:]) < 3.5 < 0.3 * before.sigma_en_m[0]
    assert 0.1 < np.mean(nees[2:]) < 3.0


def test_a_far_wrong_refined_fix_does_not_drag_a_confident_filter():
    filt, est, track, rng = _tracking()
    before = filt.fix(est, 0.0, 100.0)
    wrong = PointMeasurement(track[40] + (800.0, 300.0), np.eye(2))
    est = filt.step(10**18 + 40 * 10**9, _zoom(track, 40, rng), point=wrong)
    fix = filt.fix(est, 0.0, 100.0)
    assert fix.ok and not est.event and not est.refined  # no kidnap; the point is not its mode
    assert np.hypot(fix.east_m - track[40, 0], fix.north_m - track[40, 1]) < 60.0
    assert len(est.modes) == 1 and est.modes[0].mass > 0.9  # under a reported mode's 5 %
    assert max(fix.sigma_en_m) < 2 * max(before.sigma_en_m)
    # a second fix at the same place is evidence: the belief follows it (Bayes, not a veto)
    est = filt.step(10**18 + 41 * 10**9, _zoom(track, 41, rng),
                    point=PointMeasurement(track[41] + (800.0, 300.0), np.eye(2)))
    assert est.refined and np.hypot(*(est.mean_en - track[41] - (800.0, 300.0))) < 5.0


def _refined_fix(east, north, registration_en, georef_sigma_m):
    """Return a refined FIX as refinement makes it: registration covariance + georef^2 I."""
    lat, lon = TREE.to_latlon(east, north)
    cov = np.zeros((3, 3))
    cov[:2, :2] = registration_en + np.eye(2) * georef_sigma_m ** 2
    cov[2, 2] = 9.0
    return Fix(FixStatus.FIX, float(lat), float(lon), 50.0, cov, 0.9, east, north,
               refined=True, refinement="refined: test", georef_sigma_m=georef_sigma_m)


@pytest.mark.parametrize("kernel", ["numpy", "auto"])
def test_the_maps_georef_sigma_is_counted_once_however_many_refined_fixes(kernel):
    """N refined fixes of one point: the belief shrinks, the published 1-sigma stays >= s."""
    from jzi_ros.inference.motion import OnlineFusion

    s, east, north = 4.0, 210.0, -340.0
    registration = np.array([[0.25, 0.125], [0.125, 0.5]])  # + 16 - 16 in binary: exact
    config = FusionConfig(seed=3, kernel=kernel)
    plain, biased = (OnlineFusion(TREE, config, georef_sigma_m=g) for g in (0.0, s))
    published = []
    for i in range(25):
        stamp = 10**18 + i * 10**9
        a = plain.fuse(stamp, None, 50.0, 3.0, single=_refined_fix(east, north,
                                                                   registration, 0.0))
        b = biased.fuse(stamp, None, 50.0, 3.0, single=_refined_fix(east, north,
                                                                    registration, s))
        # the same belief (the point update takes the registration's covariance either way)
        np.testing.assert_array_equal(biased.filter.particles, plain.filter.particles)
        assert (b.east_m, b.north_m, b.status) == (a.east_m, a.north_m, a.status)
        if not b.ok:
            continue
        # ... published with s^2 added once: sigma = sqrt(belief^2 + s^2), never below s
        np.testing.assert_array_equal(b.covariance_enu, a.covariance_enu + np.diag([s * s,
                                                                                    s * s, 0]))
        sigma_a, sigma_b = (math.sqrt(np.linalg.eigvalsh(f.covariance_enu[:2, :2])[-1])
                            for f in (a, b))
        assert sigma_b == pytest.approx(math.hypot(sigma_a, s), rel=1e-12)
        assert sigma_b >= s and b.georef_sigma_m == s and a.georef_sigma_m == 0.0
        published.append((sigma_a, sigma_b))
    assert len(published) >= 20
    # the belief alone ends below s (at the 2 m refined floor): what averaging s^2 per fix
    # down, as before, published
    assert published[-1][0] < s and min(b for _, b in published) >= s


def test_a_fix_says_what_georef_term_its_covariance_holds():
    registration = np.diag([0.3, 0.7])
    fix = _refined_fix(1.0, 2.0, registration, 11.2)
    np.testing.assert_allclose(fix.covariance_enu[:2, :2], registration + 11.2 ** 2 * np.eye(2))
    np.testing.assert_allclose(fix.map_covariance_en, registration, rtol=0, atol=1e-12)
    np.testing.assert_allclose(PointMeasurement.from_fix(fix).cov_en_m2, registration,
                               rtol=0, atol=1e-12)
    plain = _refined_fix(1.0, 2.0, registration, 0.0)  # s = 0: the very block, as before
    assert np.shares_memory(plain.map_covariance_en, plain.covariance_enu)
    np.testing.assert_array_equal(PointMeasurement.from_fix(plain).cov_en_m2, registration)
    with pytest.raises(JziError, match="georef_sigma_m"):
        dataclasses.replace(plain, georef_sigma_m=float("nan"))
    for bad in (-1.0, float("inf")):
        with pytest.raises(JziError, match="CellFilter: georef_sigma_m"):
            CellFilter(TREE, FusionConfig(), georef_sigma_m=bad)


def test_without_points_the_refined_settings_change_nothing():
    """The existing path stays bit-identical: other refined_* values, the same numbers."""
    runs = []
    for config in (FusionConfig(seed=7), FusionConfig(seed=7, refined_sigma_floor_m=9.0,
                                                      refined_outlier_prob=0.5,
                                                      refined_proposal_fraction=0.6)):
        _, fused, fixes, events = _run(_flight(30), right_rate=0.5, seed=7, config=config)
        runs.append((fused, [f.covariance_enu for f in fixes], events))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(np.array(runs[0][1]), np.array(runs[1][1]))
    assert runs[0][2] == runs[1][2]


def test_a_refined_fix_alone_initialises_the_filter_and_online_fusion_takes_it():
    from jzi_ros.inference.motion import OnlineFusion

    online = OnlineFusion(TREE, FusionConfig(seed=1))
    east, north = 210.0, -340.0
    lat, lon = TREE.to_latlon(east, north)
    refined = Fix(FixStatus.FIX, float(lat), float(lon), 50.0, np.diag([0.5, 0.7, 9.0]), 0.9,
                  east, north, refined=True, refinement="refined: test")
    assert PointMeasurement.from_fix(dataclasses.replace(refined, refined=False)) is None
    point = PointMeasurement.from_fix(refined)
    np.testing.assert_array_equal(point.east_north_m, [east, north])
    np.testing.assert_array_equal(point.cov_en_m2, np.diag([0.5, 0.7]))
    fused = online.fuse(10**18, None, 50.0, 3.0, single=refined)  # no zoom measurement
    assert online.last_estimate.event == "init" and online.last_estimate.refined
    assert np.hypot(fused.east_m - east, fused.north_m - north) < 1.0
    fused = online.fuse(10**18 + 10**9, None, 50.0, 3.0, single=refined)
    assert fused.ok and np.hypot(fused.east_m - east, fused.north_m - north) < 3.0
    assert max(fused.sigma_en_m) < 5.0 and np.isfinite(fused.covariance_enu).all()
    with pytest.raises(JziError, match="PointMeasurement"):
        PointMeasurement(np.array([0.0, 0.0]), np.array([[1.0, 2.0], [2.0, 1.0]]))
