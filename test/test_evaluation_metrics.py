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

"""The metrics replay adds: path accuracy per level, latency stats, covariance calibration."""
import numpy as np
import pytest

from jzi_ros.evaluation.metrics import (calibration_summary, CHI2_2D_1SIGMA, CHI2_2D_2SIGMA,
                                        IDEAL_CALIBRATION, latency_summary, path_accuracy)


def test_path_accuracy_counts_prefixes():
    truth = [(1, 2, 3), (1, 2, 3), (4, 5, 6), (7, 8, 9)]
    predicted = [(1, 2, 3), (1, 2, 0), (4, 0, 6), None]
    acc = path_accuracy(predicted, truth, 3)
    # level 1: 3 of 4; level 2: 2 of 4 (third frame wrong at step 2 even though step 3 matches)
    assert acc == {1: 0.75, 2: 0.5, 3: 0.25}
    assert path_accuracy([], [], 2) == {1: None, 2: None}  # no frames: no number, not 0
    with pytest.raises(ValueError):
        path_accuracy([(1,)], [], 1)


def test_latency_summary():
    values = np.arange(1, 101, dtype=float)
    stats = latency_summary(values)
    assert stats["count"] == 100
    assert stats["median_ms"] == pytest.approx(50.5)
    assert stats["p95_ms"] == pytest.approx(np.percentile(values, 95))
    assert stats["mean_ms"] == pytest.approx(50.5)
    assert latency_summary([])["count"] == 0


def test_calibration_of_a_consistent_estimator_is_ideal():
    rng = np.random.default_rng(0)
    n = 20000
    a = rng.normal(size=(n, 2, 2)) * 10
    cov = a @ a.transpose(0, 2, 1) + np.eye(2) * 5  # random SPD covariances
    err = np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng.normal(size=(n, 2)))
    cal = calibration_summary(err, cov)
    assert cal["count"] == n
    assert cal["mean_nees"] == pytest.approx(IDEAL_CALIBRATION["mean_nees"], rel=0.05)
    assert cal["inside_1sigma"] == pytest.approx(IDEAL_CALIBRATION["inside_1sigma"], abs=0.015)
    assert cal["inside_2sigma"] == pytest.approx(IDEAL_CALIBRATION["inside_2sigma"], abs=0.01)
    # an overconfident estimator (covariance 4x too small) is flagged
    over = calibration_summary(err, cov / 4)
    assert over["mean_nees"] == pytest.approx(8.0, rel=0.05)
    assert over["inside_1sigma"] < 0.35


def test_calibration_thresholds_and_empty():
    cov = np.repeat(np.eye(2)[None], 3, axis=0)
    err = np.array([[np.sqrt(CHI2_2D_1SIGMA) * 0.99, 0], [np.sqrt(CHI2_2D_2SIGMA) * 0.99, 0],
                    [3.0, 0.0]])
    cal = calibration_summary(err, cov)
    assert cal["inside_1sigma"] == pytest.approx(1 / 3)
    assert cal["inside_2sigma"] == pytest.approx(2 / 3)
    assert cal["mean_nees"] == pytest.approx(np.mean(err[:, 0] ** 2))
    assert calibration_summary(np.zeros((0, 2)), np.zeros((0, 2, 2)))["count"] == 0
