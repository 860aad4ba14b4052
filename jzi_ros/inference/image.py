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
from pathlib import Path

import numpy as np

from jzi_ros.errors import BadImageError

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


def _truncated(data: np.ndarray) -> bool:
    """
    Return True for a JPEG without its end-of-image marker.

    libjpeg fills the missing rows with grey and only prints "Premature end of JPEG file", so
    the decoder alone would hand a half-grey frame to the model.
    """
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return False  # not a JPEG: PNG and the others fail to decode when truncated
    end = data.size
    while end > 2 and data[end - 1] in (0x00, 0x0A, 0x0D, 0x20):  # padding some writers add
        end -= 1
    return not (data[end - 2] == 0xFF and data[end - 1] == 0xD9)


def decode_image(data, what: str) -> np.ndarray:
    """
    Decode encoded image bytes (JPEG, PNG, anything OpenCV reads) as stored: RGB(A) or gray.

    The one rule for files, bag messages and camera messages: empty, undecodable and truncated
    data raise :class:`BadImageError` naming ``what``.
    """
    import cv2

    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
        else np.asarray(data, dtype=np.uint8).reshape(-1)
    if data.size == 0:
        raise BadImageError(f"{what} is empty (expected JPEG, PNG or another image format)")
    if _truncated(data):
        raise BadImageError(f"{what} is a truncated JPEG (no end-of-image marker after "
                            f"{data.size} bytes)")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise BadImageError(f"{what} ({data.size} bytes) is not a readable image (corrupt, "
                            "truncated or a format OpenCV does not read)")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """
    Read an image file as RGB(A)/gray, as stored (:func:`as_rgb_uint8` converts).

    JziError (a :class:`BadImageError`) for a missing, unreadable, corrupt or truncated file;
    the bytes are read here, so OpenCV prints no ``findDecoder`` warning for a missing path.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise BadImageError(f"image {path} does not exist") from None
    except (IsADirectoryError, PermissionError, OSError) as err:
        raise BadImageError(f"image {path} cannot be read: {err.strerror or err}") from None
    return decode_image(data, f"image {path}")


def image_file_problem(path: str | os.PathLike) -> str | None:
    """
    Return why ``path`` is not a usable image file, or None when it is.

    Cheaper than :func:`read_image`: the same missing/empty/truncated checks, then a decode at
    1/8 scale (JPEG's DCT scaling), so every image of a large dataset can be checked up front.
    """
    import cv2

    try:
        data = np.fromfile(Path(path), dtype=np.uint8)
    except FileNotFoundError:
        return "does not exist"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if data.size == 0:
        return "is empty"
    if _truncated(data):
        return "is a truncated JPEG (no end-of-image marker)"
    image = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if image is None or image.size == 0:
        return "could not be decoded (corrupt or not an image)"
    return None


def check_image_files(paths, what: str, workers: int = 4) -> None:
    """Raise one JziError naming the bad files among ``paths`` (checked in a thread pool)."""
    from concurrent.futures import ThreadPoolExecutor

    paths = list(paths)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # OpenCV releases the GIL
        problems = [(p, why) for p, why in zip(paths, pool.map(image_file_problem, paths))
                    if why is not None]
    if problems:
        shown = "; ".join(f"{p} {why}" for p, why in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BadImageError(f"{what}: {len(problems)} of {len(paths)} image file(s) unusable: "
                            f"{shown}{more}; fix or remove them from the manifest")


MAX_ASPECT = 8.0  # wider/taller frames are slivers, not camera views (a 750 x 2 px frame)
MIN_CONTRAST = 8  # grey levels between the 1st and 99th percentile; below: a uniform frame


def degenerate_reason(image: np.ndarray) -> str | None:
    """
    Return why a converted uint8 RGB frame carries no place information, or None if it may.

    A sliver (aspect ratio above :data:`MAX_ASPECT`) or a uniform frame (black, lens cap,
    overexposed, a dead sensor: less than :data:`MIN_CONTRAST` grey levels between its 1st and
    99th percentile). The Localizer makes these NO_FIX with this reason instead of letting the
    policy pick a cell for them.
    """
    import cv2

    height, width = image.shape[:2]
    aspect = max(height, width) / max(1, min(height, width))
    if aspect > MAX_ASPECT:
        return (f"degenerate frame: {width} x {height} px, aspect ratio {aspect:.0f}:1 "
                f"(above {MAX_ASPECT:g}:1)")
    step = max(1, max(height, width) // 128)  # percentiles of a subsample: bounded cost
    grey = cv2.cvtColor(np.ascontiguousarray(image[::step, ::step]), cv2.COLOR_RGB2GRAY)
    cdf = np.cumsum(np.bincount(grey.ravel(), minlength=256))
    low, high = np.searchsorted(cdf, [0.01 * cdf[-1], 0.99 * cdf[-1]])
    if high - low < MIN_CONTRAST:
        return (f"degenerate frame: no texture (grey levels {low:.0f}..{high:.0f}: black, "
                f"lens cap, overexposed or uniform)")
    return None
