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
The encoder's resize: one area pass below 8x, exact 2 x 2 halves first above it.

Large camera frames are halved while both sides are even and stay at least 4x the target,
then area averaged: the result stays within a few grey levels of a single area pass over a
textured image, and reductions under 8x (the demo's and the benchmark's frames) or with an
odd side are that single pass bit for bit.
"""
import cv2
import numpy as np
import pytest

from jzi_ros.model import preprocess
from jzi_ros.model.preprocess import resize


def _scene(height: int, width: int) -> np.ndarray:
    """Return a smooth random field with fine texture, something like aerial imagery."""
    rng = np.random.default_rng(height * 7 + width)
    coarse = rng.integers(0, 256, (max(2, height // 40), max(2, width // 40), 3), np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = rng.normal(0, 12, (height, width, 3))
    return np.clip(smooth + texture, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("width, height, side", [(320, 240, 70), (640, 480, 70),
                                                 (1280, 720, 112), (1921, 1081, 112)])
def test_reductions_under_8x_or_odd_are_one_area_pass(width, height, side):
    frame = _scene(height, width)
    expected = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(resize(frame, side, side), expected)


@pytest.mark.parametrize("width, height, side", [(1280, 720, 70), (1920, 1080, 112),
                                                 (2400, 1200, 140), (3840, 2160, 70)])
def test_large_reductions_halve_first_and_stay_within_grey_levels(width, height, side,
                                                                  monkeypatch):
    frame = _scene(height, width)
    expected = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
    halves = []
    real_resize = cv2.resize

    def counting(image, size, interpolation):
        if size == (image.shape[1] // 2, image.shape[0] // 2):
            halves.append(image.shape[:2])
        return real_resize(image, size, interpolation=interpolation)

    monkeypatch.setattr(preprocess.cv2, "resize", counting)
    out = resize(frame, side, side)
    assert out.shape == expected.shape and out.dtype == np.uint8
    assert halves, "a reduction of 8x or more is halved first"
    last = halves[-1]  # the last half still leaves at least 4x the target on both sides
    assert last[0] // 2 >= 4 * side and last[1] // 2 >= 4 * side
    diff = np.abs(out.astype(int) - expected)
    assert diff.max() <= 4 and diff.mean() < 0.5


def test_enlarging_is_bilinear():
    frame = _scene(40, 30)
    np.testing.assert_array_equal(resize(frame, 70, 70), cv2.resize(
        frame, (70, 70), interpolation=cv2.INTER_LINEAR))
