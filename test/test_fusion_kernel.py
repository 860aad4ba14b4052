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

"""The compiled filter step (FusionConfig.kernel numba) against the numpy reference."""
import math
import os
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jzi_ros import inference
from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree
from jzi_ros.inference.bench_filter import simulated_steps
from jzi_ros.inference.fusion import CellFilter
from jzi_ros.inference.fusion_config import FusionConfig
from jzi_ros.inference.measurement import Measurement, PointMeasurement

try:
    import numba  # noqa: F401
    NUMBA = True
except ImportError:
    NUMBA = False
needs_numba = pytest.mark.skipif(not NUMBA, reason="numba is not installed (the optional "
                                 "'fast' extra: pip install numba); the numpy kernel runs")
TREE = CellTree(45.0, 7.0, 2500.0, grid=4, depth=3)
KIDNAP, GAP_FRAMES, ODOMETRY, POINTS, JUMP_BACK = 70, (40, 41), range(30, 60), (50, 90), 100


def _sequence(tree, seed, frames=120):
    """Frames: random walk, odometry, no measurement, refined fixes, a kidnap, a jump back."""
    rng = np.random.default_rng(seed)
    pos, heading, stamp, out = np.array([-700.0, -500.0]), 0.6, 10**18, []
    for i in range(frames):
        heading += rng.normal(0, 0.05)
        step = 15 * np.array([math.cos(heading), math.sin(heading)])
        if i == KIDNAP:  # a one-kilometre teleport
            pos = pos + [1000.0 if pos[0] < 0 else -1000.0, 0.0]
        pos = np.clip(pos + step, -0.48 * tree.size_m, 0.48 * tree.size_m)
        stamp += 10**9 - (30 * 10**9 if i == JUMP_BACK else 0)
        odometry = step + rng.normal(0, 1, 2) if i in ODOMETRY else None
        measurement = None if i in GAP_FRAMES else Measurement.from_steps(
            tree, simulated_steps(tree, *pos, rng.uniform() < 0.6, rng))
        point = (PointMeasurement(pos + rng.normal(0, 3, 2), np.eye(2) * 9.0)
                 if i in POINTS else None)
        out.append((stamp, measurement, odometry, point))
    return out


def _run(tree, config, sequence):
    cell_filter = CellFilter(tree, config)
    out = []
    for stamp, measurement, odometry, point in sequence:
        estimate = cell_filter.step(stamp, measurement, odometry, point)
        fix = cell_filter.fix(estimate, 0.0, 100.0)
        scale = cell_filter.odometry_scale
        out.append((estimate, fix, cell_filter.particles.copy(), cell_filter.weights.copy(),
                    cell_filter.cusum, None if scale is None else scale.copy()))
    return cell_filter.kernel, out


@needs_numba
@pytest.mark.parametrize("tree,seed,proposal_fraction,scale_sigma", [
    (TREE, 0, 0.05, 0.0), (TREE, 3, 0.0, 0.0),  # 0.0: the kidnap is found by the CUSUM test
    (CellTree(45.0, 7.0, 10_000.0, grid=4, depth=4), 1, 0.05, 0.0),  # 65,536 cells
    (TREE, 2, 0.05, 0.05)])  # each particle's odometry scale (visual odometry)
def test_the_compiled_step_gives_the_numpy_fixes(tree, seed, proposal_fraction, scale_sigma):
    """
    Same seed, same frames: the same particles and weights bit for bit, the same fixes.

    Modes and the kidnap test's sum agree to 1e-9 (numpy sums them through BLAS and a SIMD
    hypot, the kernel in index order with libm's), every discrete outcome is the same.
    """
    sequence = _sequence(tree, seed)
    config = {"seed": seed, "proposal_fraction": proposal_fraction,
              "odom_scale_sigma": scale_sigma}
    name_a, numpy_run = _run(tree, FusionConfig(kernel="numpy", **config), sequence)
    name_b, numba_run = _run(tree, FusionConfig(kernel="numba", **config), sequence)
    assert (name_a, name_b) == ("numpy", "numba")
    events = [e.event for e, *_ in numpy_run]
    assert events[0] == "init" and events[JUMP_BACK].startswith("reset: time jumped back")
    if proposal_fraction == 0.0:  # a kidnap on a frame without a refined fix: the kernel's
        assert any(e.startswith("kidnap") and i not in POINTS for i, e in enumerate(events))
    assert sum(fix.ok for _, fix, *_ in numpy_run) > len(sequence) / 3  # it tracked
    for i, (a, b) in enumerate(zip(numpy_run, numba_run)):
        (est_a, fix_a, particles_a, weights_a, cusum_a, scale_a) = a
        (est_b, fix_b, particles_b, weights_b, cusum_b, scale_b) = b
        np.testing.assert_array_equal(particles_a, particles_b, err_msg=f"frame {i}")
        np.testing.assert_array_equal(scale_a, scale_b, err_msg=f"frame {i}")
        if scale_sigma and ODOMETRY[-1] <= i < KIDNAP:  # the odometry steps spread the scales
            assert 0.5 <= scale_a.min() < 0.9 and 1.1 < scale_a.max() <= 2.0
        if scale_sigma and i < ODOMETRY[0]:  # a new cloud starts at scale 1
            assert np.all(scale_a == 1.0)
        np.testing.assert_array_equal(weights_a, weights_b, err_msg=f"frame {i}")
        assert est_a.event == est_b.event and est_a.odometry == est_b.odometry
        assert est_a.converged == est_b.converged and fix_a.status == fix_b.status
        assert cusum_b == pytest.approx(cusum_a, rel=1e-9, abs=1e-9)
        assert len(est_a.modes) == len(est_b.modes), f"frame {i}"
        for mode_a, mode_b in zip(est_a.modes, est_b.modes):
            assert mode_b.mass == pytest.approx(mode_a.mass, rel=1e-9)
            np.testing.assert_allclose(mode_b.mean_en, mode_a.mean_en, rtol=1e-9, atol=1e-6)
            np.testing.assert_allclose(mode_b.cov_en, mode_a.cov_en, rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose([fix_b.latitude, fix_b.longitude, fix_b.east_m,
                                    fix_b.north_m], [fix_a.latitude, fix_a.longitude,
                                                     fix_a.east_m, fix_a.north_m],
                                   rtol=1e-12, atol=1e-6)
        np.testing.assert_allclose(fix_b.covariance_enu, fix_a.covariance_enu, rtol=1e-9)


@needs_numba
def test_the_kernel_sums_weights_as_numpy_does():
    from jzi_ros.inference import numba_numpy

    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 100, 128, 129, 2047, 2048, 2150, 10_000, 70_000):
        values = rng.random(n) ** 8
        assert numba_numpy.pairwise_sum(values) == values.sum(), n


def test_kernel_choice_is_validated_and_numpy_always_works():
    with pytest.raises(JziError, match="fusion.kernel must be one of auto, numpy, numba"):
        FusionConfig(kernel="cuda")
    assert CellFilter(TREE, FusionConfig(kernel="numpy")).kernel == "numpy"
    assert CellFilter(TREE, FusionConfig()).kernel == ("numba" if NUMBA else "numpy")


def test_without_numba_auto_takes_numpy_and_numba_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" raises ImportError
    for module in ("fusion_kernel", "numba_numpy"):
        monkeypatch.delitem(sys.modules, f"jzi_ros.inference.{module}", raising=False)
        monkeypatch.delattr(inference, module, raising=False)
    assert CellFilter(TREE, FusionConfig(kernel="auto")).kernel == "numpy"
    with pytest.raises(JziError, match="pip install numba"):
        CellFilter(TREE, FusionConfig(kernel="numba"))


@needs_numba
def test_an_install_where_numba_cannot_cache_still_compiles(tmp_path):
    """
    No writable cache place (read-only install, no home): uncached kernels and a warning.

    Numba caches next to the source, else in the user's cache directory; here both are paths
    through a plain file, which no user (root included) can create a directory in.
    """
    package = tmp_path / "site" / "jzi_ros"
    shutil.copytree(Path(__file__).resolve().parents[1] / "jzi_ros", package,
                    ignore=shutil.ignore_patterns("__pycache__", "data", "demo"))
    (package / "inference" / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "home"
    blocker.write_text("not a directory")
    script = ("import warnings, numpy as np\n"
              "warnings.simplefilter('always')\n"
              "from jzi_ros.geo import CellTree\n"
              "from jzi_ros.inference.fusion import CellFilter\n"
              "from jzi_ros.inference.fusion_config import FusionConfig\n"
              "from jzi_ros.inference.measurement import Measurement\n"
              "tree = CellTree(45.0, 7.0, 2500.0, grid=4, depth=3)\n"
              "f = CellFilter(tree, FusionConfig(kernel='numba', particles=64))\n"
              "m = Measurement(np.array([1]), np.array([5]), np.array([1.0]))\n"
              "for i in range(3):\n"
              "    e = f.step(10**18 + i * 10**9, m)\n"
              "print(f.kernel, len(e.modes) > 0)\n")
    env = {**os.environ, "HOME": str(blocker / "user"), "XDG_CACHE_HOME": str(blocker / "c"),
           "PYTHONPATH": str(package.parent), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["numba", "True"]
    assert "cannot cache the filter kernels" in done.stderr


@needs_numba
def test_tied_cells_are_ordered_as_numpy_orders_them(monkeypatch):
    """Equal cell masses (a flat likelihood): the frame hands the modes' seeds to numpy."""
    from jzi_ros.inference.modes import ModeFinder

    handed = []
    original = ModeFinder.summary

    def spy(self, occupied, *found):  # found given: the compiled frame's call
        handed.extend(found)
        return original(self, occupied, *found)

    monkeypatch.setattr(ModeFinder, "summary", spy)
    flat = Measurement(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 1.0)
    sharp = Measurement.from_steps(TREE, simulated_steps(TREE, 100.0, 200.0, True,
                                                         np.random.default_rng(0)))
    runs = {}
    for kernel in ("numpy", "numba"):
        cell_filter = CellFilter(TREE, FusionConfig(kernel=kernel, particles=64, seed=4,
                                                    proposal_fraction=0.0))
        runs[kernel] = [cell_filter.step(10**18 + i * 10**9, sharp if i == 0 else flat)
                        for i in range(6)]
    assert -1 in handed  # a compiled frame met a tie and took numpy's order
    for a, b in zip(runs["numpy"], runs["numba"]):
        assert [m.mass for m in a.modes] == pytest.approx([m.mass for m in b.modes], rel=1e-9)
        np.testing.assert_allclose(a.mean_en, b.mean_en, rtol=1e-9)


@needs_numba
@pytest.mark.parametrize("tree", [TREE, CellTree(45.0, 7.0, 10_000.0, grid=4, depth=4),
                                  CellTree(45.0, 7.0, 2500.0, grid=2, depth=6)])
def test_the_compiled_measurement_is_the_numpy_one(tree, monkeypatch):
    """Measurement.from_steps once the kernels are loaded: the same arrays, bit for bit."""
    from jzi_ros.inference import fusion_kernel, measurement as measurement_module
    from jzi_ros.inference.decode import BeamSteps, PAD_LOG_PROB

    fusion_kernel.load()
    rng = np.random.default_rng(0)
    for case in range(24):
        steps = simulated_steps(tree, *rng.uniform(-1000, 1000, 2), case % 2 == 0, rng)
        if case % 3 == 1:  # the network's float32 log-probabilities
            steps = BeamSteps(steps.root_lp.astype(np.float32), steps.prefix_index,
                              steps.prefix_lp.astype(np.float32),
                              steps.step_lp.astype(np.float32))
        if case % 4 == 2:  # a padding beam and a duplicate prefix
            prefix_lp, prefix_index = steps.prefix_lp.copy(), steps.prefix_index.copy()
            prefix_lp[:, -1] = PAD_LOG_PROB
            prefix_index[:, 1] = prefix_index[:, 0]
            steps = BeamSteps(steps.root_lp, prefix_index, prefix_lp, steps.step_lp)
        compiled = Measurement.from_steps(tree, steps)
        with monkeypatch.context() as patch:
            patch.setattr(measurement_module, "_compiled_kernel", lambda: None)
            reference = Measurement.from_steps(tree, steps)
        for a, b in ((compiled.levels, reference.levels), (compiled.indices, reference.indices),
                     (compiled.mass, reference.mass)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        part, ref = compiled.partition(tree), reference.partition(tree)
        for a, b in ((part.bounds, ref.bounds), (part.density, ref.density),
                     (part.cells, ref.cells)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@needs_numba
def test_the_heaviest_cells_are_numpys_argsort_order_or_a_tie():
    """modes_kernel.heaviest: np.argsort's first cells without a sort, -1 on a tie in them."""
    from jzi_ros.inference.modes_kernel import heaviest

    rng = np.random.default_rng(0)
    for occupied in (1, 2, 7, 64, 65, 66, 300, 4096):
        for _ in range(5):
            minus_mass = -rng.random(occupied)
            count = min(occupied, 65)
            order = np.empty(65, np.intp)
            assert heaviest(minus_mass, count, order) == count
            np.testing.assert_array_equal(order[:count], np.argsort(minus_mass)[:count])
            if occupied > 1:  # two of the heaviest with the same mass: numpy must order them
                tied = minus_mass.copy()
                first, second = np.argsort(tied)[:2]
                tied[second] = tied[first]
                assert heaviest(tied, count, order) == -1
            if occupied > 66:  # a tie behind the selected cells changes nothing
                tied = minus_mass.copy()
                rest = np.argsort(tied)[count:]
                tied[rest[1]] = tied[rest[0]]
                assert heaviest(tied, count, order) == count
                np.testing.assert_array_equal(order[:count], np.argsort(tied)[:count])


@needs_numba
def test_a_frame_writes_into_the_output_set_the_filter_does_not_hold():
    """The compiled frame's two output sets in turn: the weights held stay for a frame."""
    rng = np.random.default_rng(2)
    cell_filter = CellFilter(TREE, FusionConfig(kernel="numba", seed=2))
    held = []
    for i in range(8):
        steps = simulated_steps(TREE, 100.0 + 15 * i, 200.0, True, rng)
        cell_filter.step(10**18 + i * 10**9, Measurement.from_steps(TREE, steps))
        held.append((cell_filter.weights, cell_filter.weights.copy(), cell_filter._state))
        if len(held) >= 3:  # (the first frame initialises: numpy arrays)
            weights, copy, state = held[-2]
            np.testing.assert_array_equal(weights, copy)  # read, not overwritten
            assert weights is not cell_filter.weights and state is not cell_filter._state
    assert held[-1][0] is held[-3][0] and held[-1][2] is held[-3][2]  # two sets, in turn


@needs_numba
def test_the_measurement_kernel_sorts_distinct_keys_and_leaves_repeated_ones_to_numpy():
    """steps_measurement_sorted: numpy's argsort's result, or -1 (nothing written) on a tie."""
    from jzi_ros.inference import fusion_kernel

    fusion_kernel.load()
    rng = np.random.default_rng(3)
    spans = np.array([16, 1], np.int64)
    for repeated in (False, True):
        keys = rng.permutation(np.arange(0, 60, 2))[:12] * 2 + 1  # level 1, distinct starts
        if repeated:
            keys[5] = keys[2]
        ints, reals = np.zeros((5, 12), np.int64), np.zeros((3, 12))
        ints[0], reals[0] = keys, rng.random(12)
        expected_ints, expected_reals = ints.copy(), reals.copy()
        leaves = fusion_kernel.steps_measurement(expected_ints, expected_reals, np.argsort(keys),
                                                 1, spans, 1.0)
        got = fusion_kernel.steps_measurement_sorted(ints, reals, 12, 1, spans, 1.0)
        if repeated:
            assert got == -1 and (ints[1:] == 0).all() and (reals[1:] == 0).all()
        else:
            assert got == leaves
            np.testing.assert_array_equal(ints, expected_ints)
            np.testing.assert_array_equal(reals, expected_reals)
