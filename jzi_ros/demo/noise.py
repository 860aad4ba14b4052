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
Smooth random fields (value-noise octaves) made by upsampling small random grids.

cv2.resize with bicubic interpolation is the cheap way to get band-limited noise over a
multi-megapixel canvas; summing a few octaves gives natural-looking variation.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def value_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """One octave of zero-mean noise, features about ``scale_px`` pixels wide, std ~1."""
    height, width = shape
    small = (max(2, int(np.ceil(height / scale_px)) + 2),
             max(2, int(np.ceil(width / scale_px)) + 2))
    grid = rng.standard_normal(small).astype(np.float32)
    big = cv2.resize(grid, (int(small[1] * scale_px), int(small[0] * scale_px)),
                     interpolation=cv2.INTER_CUBIC)
    # A random crop hides the grid alignment of the small lattice.
    oy = int(rng.integers(0, max(1, big.shape[0] - height)))
    ox = int(rng.integers(0, max(1, big.shape[1] - width)))
    out = big[oy:oy + height, ox:ox + width]
    if out.shape != (height, width):
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    return out


def fbm(rng: np.random.Generator, shape: tuple[int, int], scales_px: Sequence[float],
        gain: float = 0.5) -> np.ndarray:
    """Sum of octaves (largest first), each ``gain`` times weaker; normalised to std ~1."""
    total = np.zeros(shape, np.float32)
    weight, norm = 1.0, 0.0
    for scale in scales_px:
        total += weight * value_noise(rng, shape, scale)
        norm += weight ** 2
        weight *= gain
    return total / np.float32(np.sqrt(norm))
