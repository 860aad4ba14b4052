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
The on-disk map: a manifest, a memory-mapped table of views and an optional embedding table.

Layout of a map directory::

    manifest.json             root (cell tree), tile size, source, creation time, nodata,
                              the imagery's georeferencing 1-sigma (``georef_sigma_m``)
    views.npy                 uint8 [num_views, tile_px, tile_px, 3], RGB, north-up,
                              row i = tree.view_index(path)
    terminal.npy              optional, uint8 [K**(2D), tile_px, tile_px, 3] (visualisation)
    embeddings.safetensors    optional, one fp16 [num_views, C] table per encoder (key
                              ``embeddings.<encoder hash>``; the header lists them)

``.npy`` is used for the views because numpy memory-maps it without a copy, so a robot opens a
multi-GB map instantly and only touches the pages the beam search visits.

``georef_sigma_m`` (optional; ``null`` or absent: unknown, so maps built before it existed still
open) is the imagery's georeferencing 1-sigma (``jzi_ros/maps/georef.py``);
:func:`set_georef_sigma_m` changes it without a rebuild.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from numpy.lib.format import open_memmap

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_directory, atomic_path, read_json, write_json
from jzi_ros.geo import CellTree
from jzi_ros.maps.georef import check_georef_sigma_m

FORMAT = "jzi_ros.map"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VIEWS = "views.npy"
TERMINAL = "terminal.npy"
EMBEDDINGS = "embeddings.safetensors"
EMBEDDINGS_KEY = "embeddings"
EMBEDDINGS_VERSION = 2  # 2: one table per encoder hash; 1 (still read): a single table
GEOREF_SIGMA_KEY = "georef_sigma_m"  # manifest field: the imagery's georeferencing 1-sigma
LOG = logging.getLogger(__name__)

# A render function returns an RGB tile, or (tile, valid) where ``valid`` is a bool mask of the
# pixels the source actually covers (for the per-level nodata report).
RenderView = Callable[[tuple[int, ...]], "np.ndarray | tuple[np.ndarray, np.ndarray]"]


def _embed_hint(path: Path) -> str:
    return f"run `jzi map embed {path} --model CHECKPOINT`"


def _open_npy(file: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise JziError(f"map {what} {file} does not exist") from None
    except (ValueError, OSError, EOFError) as err:
        raise JziError(f"map {what} {file} is corrupt or truncated: {err}") from None
    if array.dtype != np.uint8 or tuple(array.shape) != shape:
        raise JziError(f"map {what} {file} holds {array.dtype} {list(array.shape)}, "
                       f"the manifest expects uint8 {list(shape)}")
    return array


class MapPyramid:
    """An opened map directory. Views are a read-only memmap; nothing is loaded eagerly."""

    def __init__(self, path: Path, manifest: dict, views: np.ndarray,
                 terminal: np.ndarray | None) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.tree = CellTree.from_dict(manifest["tree"])
        self.tile_px = int(manifest["tile_px"])
        self.views = views
        self.terminal_views = terminal

    # --- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> "MapPyramid":  # noqa: A003 (public API name)
        """Open a map directory; JziError for a missing/corrupt manifest or views file."""
        path = Path(path).expanduser()
        if not path.is_dir():
            raise JziError(f"map {path} is not a directory (build one with `jzi map build`)")
        return cls._from_manifest(path, read_json(path / MANIFEST, "map manifest"))

    @classmethod
    def _from_manifest(cls, path: Path, manifest) -> "MapPyramid":
        """Check a manifest read from ``path`` and open the files it names."""
        manifest_file = path / MANIFEST
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise JziError(f"map manifest {manifest_file} is not a jzi_ros map "
                           f'(expected "format": "{FORMAT}")')
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise JziError(f"map manifest {manifest_file} has format_version {version!r}, "
                           f"this jzi_ros reads {FORMAT_VERSION}; rebuild the map")
        try:
            tree = CellTree.from_dict(manifest["tree"])
            tile_px = int(manifest["tile_px"])
            views_info = manifest["views"]
            views_file = path / str(views_info["file"])
            declared = tuple(int(n) for n in views_info["shape"])
            dtype = str(views_info["dtype"])
        except (KeyError, TypeError, ValueError) as err:
            raise JziError(f"map manifest {manifest_file} is corrupt: missing or bad field "
                           f"{err}") from None
        except JziError as err:
            raise JziError(f"map manifest {manifest_file}: {err}") from None
        check_georef_sigma_m(manifest.get(GEOREF_SIGMA_KEY), f"map manifest {manifest_file}")
        expected = (tree.num_views, tile_px, tile_px, 3)
        if declared != expected or dtype != "uint8":
            raise JziError(f"map manifest {manifest_file} declares views {dtype} "
                           f"{list(declared)}, but its tree and tile_px need uint8 "
                           f"{list(expected)}")
        views = _open_npy(views_file, expected, "views file")
        terminal = None
        if manifest.get("terminal"):
            count = tree.num_actions ** tree.depth
            terminal = _open_npy(path / TERMINAL, (count, tile_px, tile_px, 3),
                                 "terminal tiles file")
        return cls(path, manifest, views, terminal)

    # --- views ----------------------------------------------------------------------------
    def view(self, path: Sequence[int]) -> np.ndarray:
        """Return the uint8 [tile_px, tile_px, 3] view of a non-terminal cell (level < depth)."""
        return self.views[self.tree.view_index(path)]

    def tile(self, path: Sequence[int]) -> np.ndarray:
        """Return a view at any level, terminal cells included when the map stores them."""
        path = self.tree.check_path(path)
        if len(path) < self.tree.depth:
            return self.view(path)
        if self.terminal_views is None:
            raise JziError(f"map {self.path} stores no terminal tiles (path {list(path)}); "
                           "rebuild with --terminal-tiles")
        index = 0
        for action in path:
            index = index * self.tree.num_actions + action
        return self.terminal_views[index]

    @property
    def nodata_fraction(self) -> dict[int, float]:
        """Per level: fraction of view pixels the source did not cover."""
        return {int(k): float(v) for k, v in self.manifest.get("nodata_fraction", {}).items()}

    @property
    def georef_sigma_m(self) -> float | None:
        """Return the imagery's georeferencing 1-sigma per axis in metres (None: unknown)."""
        value = self.manifest.get(GEOREF_SIGMA_KEY)
        return None if value is None else float(value)

    # --- embeddings -----------------------------------------------------------------------
    @property
    def embeddings_path(self) -> Path:
        return self.path / EMBEDDINGS

    def _embeddings_metadata(self) -> dict | None:
        from safetensors import safe_open
        if not self.embeddings_path.exists():
            return None
        try:
            with safe_open(str(self.embeddings_path), framework="numpy") as handle:
                return dict(handle.metadata() or {})
        except Exception as err:  # safetensors raises its own error types
            raise JziError(f"embedding file {self.embeddings_path} is corrupt: {err}; "
                           f"{_embed_hint(self.path)}") from None

    def embedding_tables(self) -> dict[str, dict]:
        """
        Return ``{encoder_hash: {"key", "info", "created"}}`` of every stored table, oldest first.

        A map holds one table per encoder, so several models can be compared on one map.
        Reads the older single-table layout (key ``embeddings`` + ``encoder_hash``) too.
        """
        metadata = self._embeddings_metadata()
        if metadata is None:
            return {}
        if "tables" in metadata:
            try:
                tables = json.loads(metadata["tables"])
            except json.JSONDecodeError as err:
                raise JziError(f"embedding file {self.embeddings_path} is corrupt: bad table "
                               f"list ({err}); {_embed_hint(self.path)}") from None
            return {str(h): dict(t) for h, t in tables.items()}
        if not metadata.get("encoder_hash"):
            return {}
        try:
            info = json.loads(metadata.get("info", "{}"))
        except json.JSONDecodeError:
            info = {}
        return {metadata["encoder_hash"]: {"key": EMBEDDINGS_KEY, "info": info,
                                           "created": metadata.get("created", "?")}}

    def embeddings_hash(self) -> str | None:
        """Return the encoder hash of the most recently stored table (None without any)."""
        tables = self.embedding_tables()
        return next(reversed(tables)) if tables else None

    def has_embeddings(self, encoder_hash: str) -> bool:
        """Return True when the map stores a table made with this encoder."""
        return encoder_hash in self.embedding_tables()

    def embeddings_info(self, encoder_hash: str | None = None) -> dict:
        """Return the ``info`` dict stored with a table (default: the latest; empty if none)."""
        tables = self.embedding_tables()
        encoder_hash = encoder_hash or (next(reversed(tables)) if tables else None)
        return dict(tables.get(encoder_hash, {}).get("info", {}))

    def _read_tables(self) -> dict[str, tuple[dict, np.ndarray]]:
        """Every stored table with its entry (for a rewrite); a corrupt file counts as none."""
        from safetensors import safe_open
        try:
            tables = self.embedding_tables()
            out = {}
            with safe_open(str(self.embeddings_path), framework="numpy") as handle:
                for encoder_hash, entry in tables.items():
                    out[encoder_hash] = (entry, handle.get_tensor(entry["key"]))
            return out
        except Exception as err:  # noqa: B902 - corrupt file: replaced by the new table
            if self.embeddings_path.exists():
                LOG.warning("embedding file %s is unreadable (%s); it is replaced",
                            self.embeddings_path, err)
            return {}

    def write_embeddings(self, embeddings: np.ndarray, encoder_hash: str,
                         info: dict | None = None) -> None:
        """
        Store one vector per view (as fp16) under the encoder's hash; atomic.

        Tables of other encoders stay (a second model trained on the map does not break the
        first); a table of the same encoder is replaced.
        """
        from safetensors.numpy import save_file
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != self.tree.num_views:
            raise JziError(f"embeddings for map {self.path} must be [{self.tree.num_views}, C] "
                           f"(one row per view), got {list(embeddings.shape)}")
        if not np.all(np.isfinite(embeddings)):
            raise JziError(f"embeddings for map {self.path} contain NaN or inf")
        if not encoder_hash or not isinstance(encoder_hash, str):
            raise JziError(f"embeddings for map {self.path}: encoder_hash must be a non-empty "
                           f"string, got {encoder_hash!r}")
        kept = {h: v for h, v in self._read_tables().items() if h != encoder_hash}
        tensors, entries = {}, {}
        for stored_hash, (entry, table) in kept.items():
            key = f"{EMBEDDINGS_KEY}.{stored_hash}"
            tensors[key] = np.ascontiguousarray(table)
            entries[stored_hash] = {**entry, "key": key}
        key = f"{EMBEDDINGS_KEY}.{encoder_hash}"
        tensors[key] = np.ascontiguousarray(embeddings.astype(np.float16))
        entries[encoder_hash] = {"key": key, "info": info or {}, "created": _utc_now()}
        metadata = {"format_version": str(EMBEDDINGS_VERSION),
                    "num_views": str(self.tree.num_views), "tables": json.dumps(entries)}
        with atomic_path(self.embeddings_path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    def load_embeddings(self, encoder_hash: str) -> np.ndarray:
        """Return the float16 [num_views, C] table; JziError if missing, stale or wrong-sized."""
        from safetensors import safe_open
        tables = self.embedding_tables()
        if not tables:
            raise JziError(f"map {self.path} has no embeddings ({EMBEDDINGS} missing); "
                           f"{_embed_hint(self.path)}")
        if encoder_hash not in tables:
            raise JziError(f"embeddings in {self.embeddings_path} were made with encoder(s) "
                           f"{', '.join(tables)}, but the model's encoder is {encoder_hash}; "
                           f"{_embed_hint(self.path)}")
        try:
            with safe_open(str(self.embeddings_path), framework="numpy") as handle:
                table = handle.get_tensor(tables[encoder_hash]["key"])
        except Exception as err:  # a missing key or truncated data
            raise JziError(f"embedding file {self.embeddings_path} is corrupt: {err}; "
                           f"{_embed_hint(self.path)}") from None
        if table.ndim != 2 or table.shape[0] != self.tree.num_views:
            raise JziError(f"embedding file {self.embeddings_path} has shape "
                           f"{list(table.shape)}, expected [{self.tree.num_views}, C]; "
                           f"{_embed_hint(self.path)}")
        return table.astype(np.float16, copy=False)

    def __repr__(self) -> str:
        return (f"MapPyramid({str(self.path)!r}, views={self.tree.num_views}, "
                f"tile_px={self.tile_px}, size_m={self.tree.size_m:g})")


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _split_render(result, path: tuple[int, ...], tile_px: int) -> tuple[np.ndarray, float]:
    """Check a render result; return the tile and its nodata fraction."""
    valid = None
    if isinstance(result, tuple):
        result, valid = result
    tile = np.asarray(result)
    if tile.shape != (tile_px, tile_px, 3):
        raise JziError(f"render of cell {list(path)} returned shape {list(tile.shape)}, "
                       f"expected [{tile_px}, {tile_px}, 3]")
    if tile.dtype != np.uint8:
        raise JziError(f"render of cell {list(path)} returned {tile.dtype}, expected uint8")
    if valid is None:
        return tile, 0.0
    valid = np.asarray(valid, dtype=bool)
    return tile, 1.0 - float(valid.mean())


class _RowWriter:
    """
    Writes rows of a ``.npy`` table in order with plain file writes.

    ``open_memmap`` lays down the header and the full-size file; the rows then go through a
    normal file handle rather than the mapping, so written tiles leave the process's resident
    memory (a memmap keeps every dirty page mapped: ~2 GB RSS for a paper-sized map).
    """

    def __init__(self, file: Path, shape: tuple[int, ...]) -> None:
        table = open_memmap(file, mode="w+", dtype=np.uint8, shape=shape)
        self.offset = table.offset
        self.row_bytes = int(np.prod(shape[1:]))
        del table
        self.handle = open(file, "r+b")

    def write(self, row: int, tile: np.ndarray) -> None:
        self.handle.seek(self.offset + row * self.row_bytes)
        self.handle.write(np.ascontiguousarray(tile).tobytes())

    def close(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()


def _render_level(table: _RowWriter, offset: int, tree: CellTree, level: int,
                  tile_px: int, render_view: RenderView, bar) -> float:
    """Render one level into rows offset.. of the table; return its mean nodata fraction."""
    total = 0.0
    count = 0
    for index, path in enumerate(tree.level_paths(level)):
        tile, nodata = _split_render(render_view(path), path, tile_px)
        table.write(offset + index, tile)
        total += nodata
        count += 1
        if bar is not None:
            bar.update(1)
    return total / max(count, 1)


def _check_nodata(nodata: dict[str, float], max_nodata: float | None, source: str) -> None:
    """Refuse once a level is less covered than allowed; names every level over the limit."""
    if max_nodata is None:
        return
    bad = {level: v for level, v in nodata.items() if v > max_nodata}
    if bad:
        levels = ", ".join(f"level {level} {v:.1%}" for level, v in bad.items())
        raise JziError(f"source {source} does not cover the root square: nodata {levels} "
                       f"(limit --max-nodata {max_nodata:g}); move/shrink the root "
                       "(--center/--size/--bounds) or raise --max-nodata")


def write_pyramid(out_dir: str | Path, tree: CellTree, tile_px: int, render_view: RenderView,
                  source_info: dict, overwrite: bool = False, progress: bool = True,
                  max_nodata: float | None = None, terminal: bool = False,
                  georef_sigma_m: float | None = None) -> MapPyramid:
    """
    Render every view (in view order) into a ``.npy`` table row by row; atomic directory.

    ``render_view(path)`` returns a uint8 [tile_px, tile_px, 3] RGB tile, or ``(tile, valid)``
    with a bool mask of covered pixels. Tiles go to disk one by one, so a paper-sized map
    (4,369 views of 384 px, ~1.9 GB) never sits in RAM. With ``max_nodata`` a level whose mean
    nodata fraction exceeds it aborts the build (nothing is left behind). ``terminal`` also
    renders the level-``depth`` cells (for visualisation only). ``georef_sigma_m``: the
    source's georeferencing 1-sigma in metres (None: unknown).
    """
    from tqdm import tqdm
    georef_sigma_m = check_georef_sigma_m(georef_sigma_m, f"map {out_dir}")
    tile_px = int(tile_px)
    if tile_px < 8:
        raise JziError(f"tile_px must be >= 8 pixels, got {tile_px}")
    try:
        json.dumps(source_info)
    except (TypeError, ValueError) as err:
        raise JziError(f"map source_info must be JSON-serialisable: {err}") from None
    out_dir = Path(out_dir).expanduser()
    shape = (tree.num_views, tile_px, tile_px, 3)
    n_terminal = tree.num_actions ** tree.depth if terminal else 0
    nodata: dict[str, float] = {}
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        bar = tqdm(total=tree.num_views + n_terminal, desc=f"map {out_dir.name}", unit="tile",
                   disable=not progress, dynamic_ncols=True)
        try:
            views = _RowWriter(tmp / VIEWS, shape)
            try:
                for level in range(tree.depth):
                    fraction = _render_level(views, tree.level_offsets[level], tree, level,
                                             tile_px, render_view, bar)
                    nodata[str(level)] = round(fraction, 6)
                    _check_nodata(nodata, max_nodata, str(source_info.get("path", "?")))
            finally:
                views.close()
            if terminal:
                tiles = _RowWriter(tmp / TERMINAL, (n_terminal, tile_px, tile_px, 3))
                try:
                    fraction = _render_level(tiles, 0, tree, tree.depth, tile_px, render_view,
                                             bar)
                finally:
                    tiles.close()
                nodata[str(tree.depth)] = round(fraction, 6)
        finally:
            bar.close()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tree": tree.to_dict(),
            "tile_px": tile_px,
            "cell_side_m": [tree.cell_side(level) for level in range(tree.depth + 1)],
            "metres_per_pixel": [tree.cell_side(level) / tile_px for level in range(tree.depth)],
            "source": source_info,
            GEOREF_SIGMA_KEY: georef_sigma_m,
            "created": _utc_now(),
            "nodata_fraction": nodata,
            "views": {"file": VIEWS, "dtype": "uint8", "shape": list(shape),
                      "layout": "row = tree.view_index(path); RGB; north-up"},
            "terminal": ({"file": TERMINAL, "shape": [n_terminal, tile_px, tile_px, 3]}
                         if terminal else None),
        }
        write_json(tmp / MANIFEST, manifest)
    return MapPyramid.open(out_dir)


def set_georef_sigma_m(map_dir: str | Path, value: float | None) -> MapPyramid:
    """
    Set the map's georeferencing 1-sigma (None: unknown) in its manifest; atomic, no rebuild.

    The changed manifest is checked as :meth:`MapPyramid.open` checks it before it is written,
    so a corrupt map is refused rather than rewritten (a bad value in this field is replaced).
    """
    path = Path(map_dir).expanduser()
    manifest_file = path / MANIFEST
    value = check_georef_sigma_m(value, f"map manifest {manifest_file}")
    if not path.is_dir():
        raise JziError(f"map {path} is not a directory (build one with `jzi map build`)")
    manifest = read_json(manifest_file, "map manifest")
    if isinstance(manifest, dict):
        manifest = {**manifest, GEOREF_SIGMA_KEY: value}
    pyramid = MapPyramid._from_manifest(path, manifest)
    write_json(manifest_file, manifest)
    return pyramid


def level_of_view(tree: CellTree, index: int) -> int:
    """Level (0..depth-1) of a view-table row."""
    return max(lv for lv in range(tree.depth) if tree.level_offsets[lv] <= index)
