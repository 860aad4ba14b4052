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
Image -> encoder input, in exactly one place (training, map embedding and inference).

Ground images follow the paper: resized to S x 2S and split into left/right S x S halves
("split2"), or resized to S x S ("single", for narrow cameras). Map views are resized to S x S.
Both are ImageNet-normalised, channels first, float32.

Before that the model's heading policy (``ModelConfig.heading``) orients the ground image:
"north-up" rotates it by the frame's known heading so north is up, "free" by a random angle
in training (none at inference). Both then keep the largest square that every rotation
leaves free of padding (side min(H, W) / sqrt 2), so a model sees the same field of view
whatever the angle, and no invented pixels.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from jzi_ros.errors import JziError
from jzi_ros.model.config import ModelConfig

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# A frame is box-halved first while both its sides stay at least this many times the target's
# (docs/training.md "Preprocessing"): OpenCV's area filter costs ~5 ns per source pixel on a
# non-integer scale, its 2 x 2 integer path a fraction of that.
HALVE_WHILE_FACTOR = 4


def _halve(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """2 x 2 box-average ``image`` while its sides are even and stay >= 4x the target."""
    limit = 2 * HALVE_WHILE_FACTOR
    rows, cols = image.shape[:2]
    while rows % 2 == 0 and cols % 2 == 0 and rows >= limit * height and cols >= limit * width:
        rows, cols = rows // 2, cols // 2
        image = cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA)
    return image


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """
    cv2 resize; area averaging when shrinking (no aliasing), bilinear when enlarging.

    Shrinking by 8x or more first halves the image by exact 2 x 2 averages (OpenCV's fast
    integer path; while both sides are even) down to at least 4x the target, then
    area-averages: within a few grey levels of one area pass (the halves are rounded to
    uint8), 2-4x faster on 720p-4K frames; smaller reductions are one area pass as before.
    """
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = image.shape[1] > width or image.shape[0] > height
    if shrinking:
        return cv2.resize(_halve(image, width, height), (width, height),
                          interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def _check_rgb(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        dtype = getattr(image, "dtype", type(image).__name__)
        raise JziError(f"{what}: expected a uint8 numpy array, got {dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 2:
        raise JziError(f"{what}: expected an RGB array [H, W, 3] with H, W >= 2, "
                       f"got shape {tuple(image.shape)}")


def normalize(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` RGB -> ImageNet-normalised float32 ``[N, 3, H, W]``."""
    scaled = images.astype(np.float32) * np.float32(1.0 / 255.0)
    scaled = (scaled - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(0, 3, 1, 2)))


def rotate_crop(image: np.ndarray, clockwise_deg: float) -> np.ndarray:
    """
    Rotate an image clockwise about its centre; keep the central square every angle covers.

    A nadir frame shot with heading h (image top pointing h degrees east of north) rotated
    clockwise by h shows north up.
    """
    height, width = image.shape[:2]
    side = max(2, int(min(height, width) / math.sqrt(2)))
    centre = ((width - 1) / 2, (height - 1) / 2)
    matrix = cv2.getRotationMatrix2D(centre, -float(clockwise_deg), 1.0)
    matrix[:, 2] += (side - width) / 2, (side - height) / 2  # centre the output square
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def orient(image_rgb: np.ndarray, config: ModelConfig, heading_deg: float | None = None,
           rotation_deg: float = 0.0) -> np.ndarray:
    """
    Apply the model's heading policy to a ground image.

    ``heading_deg`` is the frame's heading (required by north-up models); ``rotation_deg`` the
    random rotation a heading-free model is trained with.
    """
    if config.heading == "none":
        return image_rgb
    if config.heading == "north-up":
        if heading_deg is None or not math.isfinite(heading_deg):
            raise JziError("this model is north-up (heading policy 'north-up'): every frame "
                           "needs its heading (a manifest 'heading' column, --heading, or the "
                           "node's heading source); use a heading-free model otherwise")
        return rotate_crop(image_rgb, heading_deg)
    return rotate_crop(image_rgb, rotation_deg)


def ground_crops(image_rgb: np.ndarray, config: ModelConfig) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> the uint8 crops ``[n_crops, S, S, 3]`` the encoder sees."""
    _check_rgb(image_rgb, "ground image")
    size = config.encoder.image_size
    if config.ground_crops == "split2":
        wide = resize(image_rgb, 2 * size, size)
        return np.stack([wide[:, :size], wide[:, size:]])
    return resize(image_rgb, size, size)[None]


def ground_pixels(image_rgb: np.ndarray, config: ModelConfig,
                  heading_deg: float | None = None) -> torch.Tensor:
    """uint8 RGB ``[H, W, 3]`` -> float32 ``[n_crops, 3, S, S]`` (oriented by the policy)."""
    _check_rgb(image_rgb, "ground image")
    return normalize(ground_crops(orient(image_rgb, config, heading_deg), config))


def view_pixels(views: np.ndarray, config: ModelConfig) -> torch.Tensor:
    """uint8 RGB map views ``[B, h, w, 3]`` -> float32 ``[B, 3, S, S]``."""
    views = np.asarray(views)
    if views.ndim != 4:
        raise JziError(f"map views: expected a uint8 array [B, h, w, 3], got shape "
                       f"{tuple(views.shape)}")
    if len(views):
        _check_rgb(views[0], "map view")
    size = config.encoder.image_size
    return normalize(np.stack([resize(v, size, size) for v in views])
                     if len(views) else np.zeros((0, size, size, 3), np.uint8))
