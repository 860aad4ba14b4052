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
Photometric and crop augmentation like the paper's, with numpy + OpenCV only.

Ground images get the full set (JPEG re-compression, random resized crop 0.7-1.0, colour
jitter, grayscale, blur or sharpen, coarse dropout). Map views get a lighter set (mild colour
jitter and JPEG) and no geometric change: a view's extent *is* its cell, so cropping it would
teach the model wrong geometry. No rotation anywhere (the paper uses none). Every function
takes an explicit ``np.random.Generator`` so results are reproducible per (seed, epoch, item).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    crop_p: float = 1.0
    crop_scale: tuple[float, float] = (0.7, 1.0)
    jitter_p: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    grayscale_p: float = 0.1
    blur_sharpen_p: float = 0.3
    dropout_p: float = 0.5
    dropout_holes: tuple[int, int] = (1, 6)
    dropout_size: tuple[float, float] = (0.05, 0.15)


GROUND = AugmentConfig()
MAP_VIEW = AugmentConfig(jpeg_p=0.3, jpeg_quality=(60, 95), crop_p=0.0, jitter_p=0.5,
                         brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02,
                         grayscale_p=0.0, blur_sharpen_p=0.1, dropout_p=0.0)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # never expected for uint8 RGB; keep the image rather than fail a batch
        return image
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


def random_resized_crop(image: np.ndarray, scale: tuple[float, float],
                        rng: np.random.Generator) -> np.ndarray:
    """
    Crop a random area fraction in ``scale`` with the image's aspect ratio (+-10%).

    The result keeps the input size so later resizing sees the same shapes.
    """
    height, width = image.shape[:2]
    area = rng.uniform(*scale) * height * width
    aspect = width / height * rng.uniform(0.9, 1.1)
    crop_w = int(round(min(width, np.sqrt(area * aspect))))
    crop_h = int(round(min(height, np.sqrt(area / aspect))))
    x = int(rng.integers(0, width - crop_w + 1))
    y = int(rng.integers(0, height - crop_h + 1))
    crop = image[y:y + crop_h, x:x + crop_w]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)


def colour_jitter(image: np.ndarray, config: AugmentConfig,
                  rng: np.random.Generator) -> np.ndarray:
    out = image.astype(np.float32)
    ops = rng.permutation(4)
    for op in ops:
        if op == 0 and config.brightness:
            out *= rng.uniform(1 - config.brightness, 1 + config.brightness)
        elif op == 1 and config.contrast:
            mean = out.mean()
            out = (out - mean) * rng.uniform(1 - config.contrast, 1 + config.contrast) + mean
        elif op == 2 and config.saturation:
            grey = out @ np.array([0.299, 0.587, 0.114], np.float32)
            factor = rng.uniform(1 - config.saturation, 1 + config.saturation)
            out = (out - grey[..., None]) * factor + grey[..., None]
        elif op == 3 and config.hue:
            hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
            shift = int(round(rng.uniform(-config.hue, config.hue) * 180))
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
        out = np.clip(out, 0, 255)
    return out.astype(np.uint8)


def grayscale(image: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def blur_or_sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.3, 1.5)))
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=1.0)
    amount = float(rng.uniform(0.3, 1.0))
    return cv2.addWeighted(image, 1 + amount, blurred, -amount, 0)


def coarse_dropout(image: np.ndarray, config: AugmentConfig,
                   rng: np.random.Generator) -> np.ndarray:
    out = image.copy()
    height, width = image.shape[:2]
    for _ in range(int(rng.integers(config.dropout_holes[0], config.dropout_holes[1] + 1))):
        hole_h = max(1, int(height * rng.uniform(*config.dropout_size)))
        hole_w = max(1, int(width * rng.uniform(*config.dropout_size)))
        y = int(rng.integers(0, height - hole_h + 1))
        x = int(rng.integers(0, width - hole_w + 1))
        out[y:y + hole_h, x:x + hole_w] = 0
    return out


def augment(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One random augmentation of a uint8 RGB image (same shape and dtype out)."""
    if rng.random() < config.crop_p:
        image = random_resized_crop(image, config.crop_scale, rng)
    if rng.random() < config.jitter_p:
        image = colour_jitter(image, config, rng)
    if rng.random() < config.grayscale_p:
        image = grayscale(image)
    if rng.random() < config.blur_sharpen_p:
        image = blur_or_sharpen(image, rng)
    if rng.random() < config.jpeg_p:
        image = jpeg(image, int(rng.integers(config.jpeg_quality[0],
                                             config.jpeg_quality[1] + 1)))
    if rng.random() < config.dropout_p:
        image = coarse_dropout(image, config, rng)
    return np.ascontiguousarray(image)
