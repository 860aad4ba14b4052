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

"""Ground truth: status filter, header-stamp order, interpolation in the local metric frame."""
import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.evaluation.bags import open_bag
from jzi_ros.evaluation.groundtruth import read_ground_truth
from replay_support import BagSpec, code_image, T0, write_bag
from support import tiny_tree


def _bag(tmp_path, gt, corrupt_gt=(), name="bag"):
    spec = BagSpec([T0], [T0], [code_image(0)], gt, corrupt_gt=list(corrupt_gt))
    return write_bag(tmp_path / name, spec)


def test_reads_valid_fixes_sorted_and_counts_the_rest(tmp_path):
    tree = tiny_tree()
    lat, lon = tree.to_latlon(np.array([0.0, 100.0, 200.0]), np.array([0.0, 50.0, -50.0]))
    gt = [(T0 + 2 * 10**9, float(lat[2]), float(lon[2]), 0),
          (T0, float(lat[0]), float(lon[0]), 2),  # GBAS fix counts (status >= 0)
          (T0 + 10**9, float(lat[1]), float(lon[1]), 1),
          (T0 + 1_500_000_000, 10.0, 10.0, -1),  # NO_FIX: ignored whatever its position
          (T0 + 10**9, 0.0, 0.0, 0),  # duplicate stamp: the first (by stamp sort) wins
          (T0 + 3 * 10**9, float("nan"), 0.0, 0)]
    bag = _bag(tmp_path, gt, corrupt_gt=[T0 + 5])
    with open_bag(bag) as reader:
        truth = read_ground_truth(reader, bag, "/gps/fix", tree)
    assert truth.counts == {"messages": 7, "used": 3, "no_fix": 1, "corrupt": 1,
                            "non_finite": 1, "duplicate_stamp": 1}
    assert truth.stamps_ns.tolist() == [T0, T0 + 10**9, T0 + 2 * 10**9]
    np.testing.assert_allclose(truth.east_m, [0, 100, 200], atol=1e-6)
    np.testing.assert_allclose(truth.north_m, [0, 50, -50], atol=1e-6)


def test_lookup_interpolates_holds_and_refuses(tmp_path):
    tree = tiny_tree()
    east, north = np.array([0.0, 100.0, 100.0]), np.array([0.0, 0.0, 300.0])
    lat, lon = tree.to_latlon(east, north)
    stamps = [T0, T0 + 10**9, T0 + 4 * 10**9]
    bag = _bag(tmp_path, [(s, float(a), float(o), 0) for s, a, o in zip(stamps, lat, lon)])
    with open_bag(bag) as reader:
        truth = read_ground_truth(reader, bag, "/gps/fix", tree)
    # exactly on a fix: that fix, not interpolated
    exact = truth.lookup(T0 + 10**9, 0.5)
    assert not exact.interpolated and exact.east_m == pytest.approx(100, abs=1e-6)
    assert exact.latitude == pytest.approx(float(lat[1]), abs=1e-12)
    # 0.3 s between the first two fixes: linear in metres, lat/lon consistent with the frame
    mid = truth.lookup(T0 + 300_000_000, 0.8)
    assert mid.interpolated
    assert (mid.east_m, mid.north_m) == pytest.approx((30.0, 0.0), abs=1e-6)
    back = tree.to_local(mid.latitude, mid.longitude)
    assert back == pytest.approx((30.0, 0.0), abs=1e-4)
    # fixes 1 s apart are interpolated down to a 0.5 s tolerance ...
    assert truth.lookup(T0 + 300_000_000, 0.5).interpolated
    # ... not with 0.4 s (1 s > 2 x 0.4 s): the nearer fix (0.3 s away) is taken as is
    held = truth.lookup(T0 + 300_000_000, 0.4)
    assert not held.interpolated and held.east_m == pytest.approx(0.0, abs=1e-6)
    # in the 3 s gap, 1.5 s from both sides: no ground truth, with the gaps in the reason
    reason = truth.lookup(T0 + 2_500_000_000, 1.0)
    assert isinstance(reason, str) and "1.500 s before" in reason and "within 1 s" in reason
    # after the end: hold the last fix within tolerance, refuse beyond it
    assert truth.lookup(T0 + 4_200_000_000, 0.5).north_m == pytest.approx(300, abs=1e-6)
    assert isinstance(truth.lookup(T0 + 5 * 10**9, 0.5), str)
    assert isinstance(truth.lookup(T0 - 10**9, 0.5), str)


def test_no_usable_fix_and_wrong_map_are_clear_errors(tmp_path):
    tree = tiny_tree()
    bag = _bag(tmp_path, [(T0, 38.9, -77.03, -1)], name="nofix")
    with open_bag(bag) as reader, pytest.raises(JziError, match="no usable fix.*1 with status"):
        read_ground_truth(reader, bag, "/gps/fix", tree)
    far = _bag(tmp_path, [(T0, 48.0, 11.0, 0)], name="far")
    with open_bag(far) as reader, pytest.raises(JziError, match="outside the map's root square"):
        read_ground_truth(reader, far, "/gps/fix", tree)
