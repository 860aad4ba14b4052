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
Turn whatever array a camera/driver/user hands over into the uint8 RGB the encoder needs.

Handled (converted): 2-D grayscale, [H, W, 1], RGBA (alpha dropped), uint16 (scaled),
float images in [0, 1] or [0, 255], bool masks, non-contiguous views, and huge images
(subsampled before the resize so memory and time stay bounded). Everything else raises
:class:`BadImageError` with a one-line reason: the ROS node counts and skips such frames.
"""
from __future__ import annotations

import os

import numpy as np

from jzi_ros.errors import BadImageError, JziError

MIN_SIDE = 2


def as_rgb_uint8(image, max_side: int = 4096) -> np.ndarray:
    """Return a contiguous uint8 ``[H, W, 3]`` RGB copy/view of ``image``; BadImageError if bad."""
    if not isinstance(image, np.ndarray):
        raise BadImageError(f"image must be a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise BadImageError(f"image is empty (shape {tuple(image.shape)})")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise BadImageError(f"image must be [H, W], [H, W, 1], [H, W, 3] RGB or [H, W, 4] "
                            f"RGBA, got shape {tuple(image.shape)}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise BadImageError(f"image is too small: {image.shape[1]} x {image.shape[0]} px "
                            f"(need at least {MIN_SIDE} x {MIN_SIDE})")
    step = -(-max(image.shape[:2]) // int(max_side))  # ceil: subsample huge images first
    if step > 1:
        image = image[::step, ::step]
    if image.shape[2] == 4:
        image = image[:, :, :3]
    image = _to_uint8(image)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    kind = image.dtype.kind
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if kind == "f":
        if not np.all(np.isfinite(image)):
            raise BadImageError("image contains NaN or infinite pixel values")
        peak = float(image.max())
        scale = 255.0 if peak <= 1.0 else 1.0  # [0, 1] floats vs [0, 255] floats
        return np.clip(image.astype(np.float32) * scale, 0, 255).round().astype(np.uint8)
    raise BadImageError(f"image dtype {image.dtype} is not supported; expected uint8 "
                        "(also accepted: uint16, float in [0, 1] or [0, 255], bool)")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any OpenCV-readable file as RGB(A)/gray, as stored (:func:`as_rgb_uint8` converts)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise JziError(f"image {path} is missing or not a readable image file")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image
