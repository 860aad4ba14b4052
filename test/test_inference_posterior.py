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

"""Posterior, covariance and NEES calibration on hand-computable beams."""
import math

import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.inference.calibration import calibrate, Calibration, fit_covariance_scale
from jzi_ros.inference.posterior import (apply_scale_and_floor, enu_covariance,
                                         fix_covariance, posterior_from_beam, raw_estimate)
from support import tiny_tree

TREE = tiny_tree(4, 2, size_m=1600.0)  # terminal cells of 100 m
SIDE = 100.0


def test_single_hypothesis_is_the_cell_centre_with_within_cell_variance():
    post = posterior_from_beam(TREE, [[5, 10]], [-0.5])
    position, cov = raw_estimate(post, "top")
    assert np.allclose(position, TREE.cell_center_local((5, 10)))
    assert np.allclose(cov, np.eye(2) * SIDE ** 2 / 12)
    assert math.isclose(post.confidence, math.exp(-0.5))
    assert post.normalized_entropy == 0.0


def test_two_equal_neighbours_spread_along_their_axis():
    # (0, 0) and (0, 1): neighbours 100 m apart along east
    post = posterior_from_beam(TREE, [[0, 0], [0, 1]], [math.log(0.3), math.log(0.3)])
    assert np.allclose(post.probs, [0.5, 0.5])
    assert math.isclose(post.normalized_entropy, 1.0)
    mean, cov_mean = raw_estimate(post, "mean")
    assert np.allclose(mean, np.add(TREE.cell_center_local((0, 0)), [50.0, 0.0]))
    assert np.allclose(cov_mean, np.diag([50.0 ** 2 + SIDE ** 2 / 12, SIDE ** 2 / 12]))
    top, cov_top = raw_estimate(post, "top")
    # about the top cell: the other one is 100 m off with probability 0.5
    assert np.allclose(cov_top, np.diag([0.5 * 100.0 ** 2 + SIDE ** 2 / 12, SIDE ** 2 / 12]))
    with pytest.raises(JziError, match="position mode"):
        raw_estimate(post, "median")


def test_floor_scale_and_enu_layout():
    cov = np.array([[4.0, 3.9], [3.9, 4.0]])  # nearly singular
    floored = apply_scale_and_floor(cov, 1.0, 1.0)
    assert np.all(np.linalg.eigvalsh(floored) >= 1.0 - 1e-9)
    assert np.allclose(floored, floored.T)
    assert np.allclose(apply_scale_and_floor(cov, 10.0, 0.01), cov * 10.0)
    enu = enu_covariance(floored, 50.0)
    assert enu.shape == (3, 3) and enu[2, 2] == 2500.0 and enu[0, 2] == 0.0


def test_non_finite_beams_are_rejected():
    with pytest.raises(JziError, match="non-finite"):
        posterior_from_beam(TREE, [[0, 0]], [np.nan])
    with pytest.raises(JziError, match="same non-zero"):
        posterior_from_beam(TREE, [[0, 0], [0, 1]], [0.0])


@pytest.mark.parametrize("target", ["mean", "median"])
def test_calibration_recovers_a_known_scale(target):
    rng = np.random.default_rng(0)
    raw = np.stack([np.diag(rng.uniform(50, 500, 2)) for _ in range(4000)])
    true_scale = 9.0
    errors = np.stack([rng.multivariate_normal([0, 0], true_scale * c) for c in raw])
    scale = fit_covariance_scale(errors, raw, sigma_floor_m=0.01, target=target)
    assert scale == pytest.approx(true_scale, rel=0.08)


def test_calibrate_reaches_mean_nees_two_and_round_trips():
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(500):
        raw = np.diag(rng.uniform(10, 100, 2))
        truth = rng.uniform(-500, 500, 2)
        rows.append((truth + rng.multivariate_normal([0, 0], 0.25 * raw), truth, raw))
    result = calibrate(rows, beam_width=4, position="top", sigma_floor_m=1.0)
    assert result.mean_nees == pytest.approx(2.0, rel=1e-3)
    assert result.covariance_scale == pytest.approx(0.25, rel=0.15)
    assert result.raw_mean_nees == pytest.approx(0.5, rel=0.15)
    again = Calibration.from_metadata({"calibration": result.to_dict()})
    assert again == result
    assert Calibration.from_metadata({}) is None
    with pytest.raises(JziError, match="at least 2"):
        calibrate(rows[:1], 4, "top", 1.0)


def test_one_matrix_is_floored_in_closed_form_like_the_batched_eigh():
    rng = np.random.default_rng(0)
    for i in range(300):
        a = rng.normal(size=(2, 2)) * 10.0 ** rng.integers(-1, 4)
        cov = a @ a.T if i % 3 else np.diag(rng.uniform(0, 60, 2))
        floor = float(rng.choice([0.5, 5.0, 30.0]))
        one = apply_scale_and_floor(cov, 1.7, floor)
        batched = apply_scale_and_floor(cov[None], 1.7, floor)[0]
        assert np.allclose(one, batched, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(batched).max()))


def test_the_fused_fix_covariance_is_the_floored_enu_one_bit_for_bit():
    """fix_covariance (the filter's fix, plain floats) gives the numpy functions' numbers."""
    rng = np.random.default_rng(1)
    for i in range(300):  # every branch: above the floor, below it, one eigenvalue lifted
        a = rng.normal(size=(2, 2)) * 10.0 ** rng.integers(-1, 4)
        cov = a @ a.T if i % 3 else np.diag(rng.uniform(0, 60, 2))
        scale, floor, up = float(rng.uniform(0.2, 2)), float(rng.choice([0.5, 5.0, 30.0])), 7.0
        expected = enu_covariance(apply_scale_and_floor(cov, scale, floor), up)
        got = np.array(fix_covariance(cov, scale, floor, up))
        assert got.tobytes() == expected.tobytes()
