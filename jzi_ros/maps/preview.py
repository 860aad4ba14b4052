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

"""Human-facing views of a map: a text summary and a PNG strip of the views along a path."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_path
from jzi_ros.maps.pyramid import MapPyramid

OUTLINE_RGB = (255, 40, 40)
LABEL_PX = 22


def map_summary(pyramid: MapPyramid) -> str:
    """Multi-line description: region, levels, sizes, coverage, source, embeddings."""
    tree = pyramid.tree
    half = tree.size_m / 2
    corners = [tree.to_latlon(e, n) for e, n in ((-half, -half), (half, half))]
    (south, west), (north, east) = corners
    manifest = pyramid.manifest
    source = manifest.get("source", {})
    views_bytes = pyramid.views.nbytes
    lines = [
        f"map        {pyramid.path}",
        f"centre     {tree.center_lat:.7f}, {tree.center_lon:.7f} (lat, lon)",
        f"root       {tree.size_m:g} m square; approx. bounds S {south:.6f} W {west:.6f} "
        f"N {north:.6f} E {east:.6f}",
        f"tree       grid {tree.grid} x {tree.grid}, depth {tree.depth}, "
        f"{tree.num_views} views of {pyramid.tile_px} px ({views_bytes / 2**20:.1f} MiB)",
        f"source     {source.get('path', '?')} [{source.get('kind', '?')}] "
        f"sha256 {str(source.get('sha256', '?'))[:16]}",
        f"created    {manifest.get('created', '?')}",
        georef_line(pyramid),
        "level  cells   cell side m   m/px     nodata",
    ]
    nodata = pyramid.nodata_fraction
    for level in range(tree.depth + 1):
        stored = "" if level < tree.depth else (
            "  (terminal, stored)" if pyramid.terminal_views is not None else
            "  (terminal, not stored)")
        fraction = f"{nodata[level]:7.2%}" if level in nodata else "      -"
        lines.append(f"{level:5d}  {tree.num_actions ** level:5d}   {tree.cell_side(level):11.2f}"
                     f"   {tree.cell_side(level) / pyramid.tile_px:6.3f}   {fraction}{stored}")
    tables = pyramid.embedding_tables()
    if not tables:
        lines.append("embeddings none (run `jzi map embed DIR --model CHECKPOINT`)")
    for encoder, entry in tables.items():
        extra = ", ".join(f"{k}={v}" for k, v in entry.get("info", {}).items())
        lines.append(f"embeddings encoder {encoder}, {entry.get('created', '?')}"
                     + (f" ({extra})" if extra else ""))
    from jzi_ros.maps.imagery import imagery_summary
    lines.append(imagery_summary(pyramid.path))
    return "\n".join(lines)


def georef_line(pyramid: MapPyramid) -> str:
    """Return the ``georef`` line of ``jzi map info``: the value, or that it is unknown."""
    sigma = pyramid.georef_sigma_m
    if sigma is None:
        return (f"georef     1-sigma unknown (0 m used: refined fixes ignore the imagery's "
                f"georeferencing error); set it: jzi map set {pyramid.path} --georef-sigma-m M")
    return (f"georef     1-sigma {sigma:g} m per horizontal axis (added to the covariance of "
            "fixes registered against the imagery)")


def _outline(tile: np.ndarray, grid: int, action: int) -> np.ndarray:
    import cv2
    tile = np.ascontiguousarray(tile).copy()
    size = tile.shape[0]
    row, col = divmod(action, grid)
    x0, y0 = round(col * size / grid), round(row * size / grid)
    x1, y1 = round((col + 1) * size / grid) - 1, round((row + 1) * size / grid) - 1
    thickness = max(1, size // 128)
    cv2.rectangle(tile, (x0, y0), (x1, y1), OUTLINE_RGB, thickness)
    return tile


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    import cv2
    strip = np.full((LABEL_PX, tile.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(strip, text, (3, LABEL_PX - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([strip, tile], axis=0)


def preview_path(pyramid: MapPyramid, path: Sequence[int]) -> np.ndarray:
    """RGB strip: the view at every prefix of ``path``, the next chosen child outlined."""
    tree = pyramid.tree
    path = tree.check_path(path)
    panels = []
    gap = np.full((pyramid.tile_px + LABEL_PX, 4, 3), 255, dtype=np.uint8)
    for level in range(len(path) + 1):
        prefix = path[:level]
        if level == tree.depth and pyramid.terminal_views is None:
            break
        tile = pyramid.tile(prefix)
        if level < len(path):
            tile = _outline(tile, tree.grid, path[level])
        name = ",".join(map(str, prefix)) or "root"
        panels.append(_label(tile, f"L{level} {name} {tree.cell_side(level):.0f} m"))
        panels.append(gap)
    return np.concatenate(panels[:-1], axis=1)


def write_preview(pyramid: MapPyramid, path: Sequence[int], out: str | os.PathLike) -> Path:
    """Write :func:`preview_path` as an image (format from the suffix, e.g. .png); atomic."""
    import cv2
    out = Path(out)
    image = preview_path(pyramid, path)
    ok, encoded = cv2.imencode(out.suffix or ".png", image[:, :, ::-1])
    if not ok:
        raise JziError(f"preview {out}: cannot encode an image with suffix {out.suffix!r} "
                       "(use .png or .jpg)")
    with atomic_path(out) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return out
