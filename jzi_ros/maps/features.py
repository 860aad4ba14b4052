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
Local image features (SIFT or ORB through OpenCV), one definition for map and frame.

The map's feature index (:mod:`jzi_ros.maps.imagery`), geometric refinement and the classical
baseline must detect features the same way, or their descriptors would not match.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

DETECTORS = ("sift", "orb")


SIFT_CONTRAST_THRESHOLD = 0.04  # OpenCV's default


@functools.lru_cache(maxsize=8)
def _detector(name: str, max_features: int, contrast_scale: float = 1.0):
    if name == "sift":
        return cv2.SIFT_create(nfeatures=int(max_features),
                               contrastThreshold=SIFT_CONTRAST_THRESHOLD * contrast_scale)
    return cv2.ORB_create(nfeatures=int(max_features))


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB/grey uint8 -> grey uint8."""
    image = np.asarray(image)
    if image.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image)


def detect_features(image: np.ndarray, detector: str, max_features: int,
                    valid: np.ndarray | None = None, contrast_scale: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """
    Return keypoint pixels float32 [N, 2] and descriptors [N, D] (none: N = 0).

    ``contrast_scale`` scales SIFT's contrast threshold (below 1: weaker corners count too).
    """
    gray = to_gray(image)
    mask = None
    if valid is not None:
        # stay clear of the edge of the covered area (a nodata border makes strong corners)
        mask = cv2.erode(valid.astype(np.uint8) * 255, np.ones((7, 7), np.uint8))
    keypoints, descriptors = _detector(detector, int(max_features),
                                       float(contrast_scale)).detectAndCompute(gray, mask)
    if descriptors is None or not keypoints:
        width, dtype = (32, np.uint8) if detector == "orb" else (128, np.float32)
        return np.zeros((0, 2), np.float32), np.zeros((0, width), dtype)
    return np.float32([k.pt for k in keypoints]), descriptors
