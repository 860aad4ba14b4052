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
Open map imagery with GDAL (rasterio): georeferenced rasters, MBTiles, XYZ tile folders.

Every source ends up as one rasterio dataset with a CRS and a geotransform, so the renderer in
:mod:`jzi_ros.maps.build` needs only one code path. An XYZ folder (``z/x/y.png``) is exposed
through GDAL's own WMS/TMS driver with ``file://`` URLs rather than a home-made mosaicker.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
import hashlib
import os
from pathlib import Path
import re
from typing import Iterator
import warnings
from xml.sax.saxutils import escape

import numpy as np

from jzi_ros.errors import JziError

# Web-Mercator half extent in metres (EPSG:3857), the frame of XYZ/MBTiles tiles.
MERCATOR_HALF = 20037508.342789244
XYZ_EXTENSIONS = ("png", "jpg", "jpeg", "webp")


@dataclass
class Source:
    """An opened raster ready to sample: dataset, its CRS, band selection, colour handling."""

    dataset: "rasterio.io.DatasetReader"  # noqa: F821 - rasterio is imported lazily
    crs: "rasterio.crs.CRS"  # noqa: F821
    info: dict
    bands: tuple[int, ...] = (1, 2, 3)
    # Linear stretch (low, high) for non-uint8 rasters, per band, to map into 0..255.
    stretch: np.ndarray | None = None
    colormap: np.ndarray | None = field(default=None, repr=False)


def sha256_files(paths: list[Path], root: Path | None = None) -> str:
    """One sha256 over the (relative) names and contents of ``paths`` in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        name = str(path.relative_to(root)) if root else path.name
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def parse_crs(text: str) -> "rasterio.crs.CRS":  # noqa: F821
    """Return a CRS from a file (WKT/PROJ text) or a string such as ``EPSG:32610``."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    candidate = Path(text)
    if candidate.is_file():
        body = candidate.read_text(encoding="utf-8", errors="replace").strip()
        where = f"CRS file {candidate}"
    else:
        body, where = text, f"--crs {text!r}"
    try:
        return CRS.from_user_input(body)
    except CRSError as err:
        raise JziError(f"{where} is not a CRS GDAL understands (WKT, PROJ string or "
                       f"EPSG:<code>): {err}") from None


def _xyz_levels(folder: Path) -> tuple[int, int, str]:
    """Deepest zoom, number of coarser zooms present below it, tile extension of a folder."""
    levels = {int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()}
    if not levels:
        raise JziError(f"map source {folder} is a directory but holds no XYZ zoom folders "
                       "(expected z/x/y.png)")
    zoom = max(levels)
    # GDAL serves decimated reads from coarser zooms; only announce the ones that exist so
    # coarse levels never read missing (all-nodata) overview tiles.
    overviews = 0
    while zoom - overviews - 1 in levels:
        overviews += 1
    for tile in (folder / str(zoom)).glob("*/*"):
        ext = tile.suffix.lower().lstrip(".")
        if ext in XYZ_EXTENSIONS and re.fullmatch(r"\d+", tile.stem):
            return zoom, overviews, tile.suffix.lstrip(".")
    raise JziError(f"map source {folder}: zoom folder {zoom} holds no "
                   f"<x>/<y>.{{{','.join(XYZ_EXTENSIONS)}}} tiles")


def xyz_wms_xml(folder: Path, zoom: int, overviews: int, ext: str, tile_size: int = 256) -> str:
    """GDAL_WMS description of an XYZ folder (TMS service, top origin, file:// URLs)."""
    url = f"{folder.resolve().as_uri()}/${{z}}/${{x}}/${{y}}.{ext}"
    h = MERCATOR_HALF
    return f"""<GDAL_WMS>
  <Service name="TMS"><ServerUrl>{escape(url)}</ServerUrl></Service>
  <DataWindow>
    <UpperLeftX>{-h!r}</UpperLeftX><UpperLeftY>{h!r}</UpperLeftY>
    <LowerRightX>{h!r}</LowerRightX><LowerRightY>{-h!r}</LowerRightY>
    <TileLevel>{zoom}</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>
    <YOrigin>top</YOrigin>
  </DataWindow>
  <Projection>EPSG:3857</Projection>
  <OverviewCount>{overviews}</OverviewCount>
  <BlockSizeX>{tile_size}</BlockSizeX><BlockSizeY>{tile_size}</BlockSizeY>
  <BandsCount>4</BandsCount>
  <ZeroBlockHttpCodes>204,404</ZeroBlockHttpCodes>
  <ZeroBlockOnServerException>true</ZeroBlockOnServerException>
  <MaxConnections>1</MaxConnections>
</GDAL_WMS>"""


def _xyz_tile_size(folder: Path, zoom: int, ext: str) -> int:
    import rasterio
    tile = next((folder / str(zoom)).glob(f"*/*.{ext}"))
    with warnings.catch_warnings():
        # A bare tile has no geotransform; only its size matters here.
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        handle = rasterio.open(tile)
    with handle:
        if handle.width != handle.height:
            raise JziError(f"XYZ tile {tile} is {handle.width}x{handle.height}, expected square")
        return handle.width


def _choose_bands(dataset) -> tuple[tuple[int, ...], np.ndarray | None]:
    """RGB band indexes (grey replicated) and a palette lookup table if the raster has one."""
    from rasterio.enums import ColorInterp
    interp = list(dataset.colorinterp)
    if dataset.count >= 3:
        by_name = {ci: i + 1 for i, ci in enumerate(interp)}
        if all(c in by_name for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
            return (by_name[ColorInterp.red], by_name[ColorInterp.green],
                    by_name[ColorInterp.blue]), None
        return (1, 2, 3), None
    if interp and interp[0] == ColorInterp.palette:
        table = np.zeros((256, 3), dtype=np.uint8)
        for index, rgba in dataset.colormap(1).items():
            if 0 <= index < 256:
                table[index] = rgba[:3]
        return (1,), table
    return (1,), None


def _stretch(dataset, bands: tuple[int, ...]) -> np.ndarray | None:
    """
    Linear stretch for rasters that are not 8-bit.

    One 1..99 % range pooled over the bands (pooled so the colour balance survives), from a
    decimated read.
    """
    if all(dataset.dtypes[b - 1] == "uint8" for b in bands):
        return None
    scale = max(1, max(dataset.width, dataset.height) // 1024)
    sample = dataset.read(list(bands), out_shape=(len(bands), max(1, dataset.height // scale),
                                                  max(1, dataset.width // scale)),
                          masked=True)
    values = sample.compressed() if np.ma.isMaskedArray(sample) else sample.ravel()
    values = values[np.isfinite(values)]
    low, high = (np.percentile(values, [1, 99]) if values.size else (0.0, 1.0))
    high = high if high > low else low + 1.0
    return np.array([[low] * len(bands), [high] * len(bands)], dtype=np.float64)


@contextlib.contextmanager
def open_source(source: str | os.PathLike, crs: str | None = None) -> Iterator[Source]:
    """Open ``source`` (raster file, MBTiles, XYZ folder); JziError if unusable."""
    import rasterio
    from rasterio.errors import RasterioIOError
    path = Path(source).expanduser()
    if not path.exists():
        raise JziError(f"map source {path} does not exist")
    kind = "raster"
    target: str = str(path)
    if path.is_dir():
        zoom, overviews, ext = _xyz_levels(path)
        target = xyz_wms_xml(path, zoom, overviews, ext, _xyz_tile_size(path, zoom, ext))
        kind = f"xyz (zoom {zoom}, .{ext})"
    elif path.suffix.lower() == ".mbtiles":
        kind = "mbtiles"
    try:
        dataset = rasterio.open(target)
    except RasterioIOError as err:
        raise JziError(f"map source {path} cannot be read as a raster: {err}") from None
    with dataset:
        given = parse_crs(crs) if crs else None
        src_crs = given or dataset.crs
        if src_crs is None:
            raise JziError(f"map source {path} has no CRS (no .prj/.aux.xml/GeoTIFF keys); "
                           "pass --crs FILE_OR_STRING, e.g. --crs EPSG:32610 or a .wkt file")
        if dataset.transform.is_identity:
            raise JziError(f"map source {path} has no geotransform (no world file or GeoTIFF "
                           "georeference); add a .wld/.tfw or use a GeoTIFF")
        bands, colormap = _choose_bands(dataset)
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file()]
            digest = sha256_files(files, path)
        else:
            files = sorted({Path(f) for f in dataset.files} | {path})
            digest = sha256_files(files)
        info = {
            "path": str(path.resolve()),
            "kind": kind,
            "files": [str(f.name if not path.is_dir() else f.relative_to(path))
                      for f in sorted(files)][:20],
            "sha256": digest,
            "crs_wkt": src_crs.to_wkt(),
            "crs_from": "--crs" if given else "source",
            "size_px": [dataset.width, dataset.height],
            "resolution": [abs(dataset.transform.a), abs(dataset.transform.e)],
            "bands": list(bands),
        }
        yield Source(dataset=dataset, crs=src_crs, info=info, bands=bands,
                     stretch=_stretch(dataset, bands), colormap=colormap)
