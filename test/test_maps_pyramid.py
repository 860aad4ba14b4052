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

"""The map format: write/open round trip, view order, corrupt inputs, embeddings."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree
from jzi_ros.maps.pyramid import MapPyramid, write_pyramid

TILE = 16


def tree() -> CellTree:
    return CellTree(44.05, -123.07, 400.0, grid=2, depth=3)


def render(path):
    """Return a tile that encodes its path: red = depth, green = view-order code, blue = 7."""
    tile = np.zeros((TILE, TILE, 3), dtype=np.uint8)
    code = 0
    for action in path:
        code = code * 4 + action + 1
    tile[..., 0] = len(path)
    tile[..., 1] = code
    tile[..., 2] = 7
    return tile


@pytest.fixture
def pyramid(tmp_path):
    return write_pyramid(tmp_path / "map", tree(), TILE, render, {"path": "synthetic"},
                         progress=False)


def test_round_trip_views_in_view_index_order(pyramid, tmp_path):
    t = tree()
    reopened = MapPyramid.open(tmp_path / "map")
    assert reopened.tree == t and reopened.tile_px == TILE
    assert isinstance(reopened.views, np.memmap) and not reopened.views.flags.writeable
    assert reopened.views.shape == (t.num_views, TILE, TILE, 3)
    for path in t.view_paths():
        np.testing.assert_array_equal(reopened.view(path), render(path))
        np.testing.assert_array_equal(reopened.views[t.view_index(path)], render(path))
    manifest = reopened.manifest
    assert manifest["format_version"] == 1
    assert manifest["source"] == {"path": "synthetic"}
    assert manifest["created"].endswith("+00:00")
    assert manifest["views"]["shape"] == [t.num_views, TILE, TILE, 3]
    assert reopened.nodata_fraction == {0: 0.0, 1: 0.0, 2: 0.0}
    with pytest.raises(JziError, match="terminal"):
        reopened.tile((0, 1, 2))


def test_nodata_from_render_mask_and_threshold(tmp_path):
    def half_covered(path):
        valid = np.zeros((TILE, TILE), dtype=bool)
        valid[:, : TILE // 4] = True
        return render(path), valid

    with pytest.raises(JziError, match=r"nodata level 0 75\.0%"):
        write_pyramid(tmp_path / "map", tree(), TILE, half_covered, {}, progress=False,
                      max_nodata=0.5)
    assert os.listdir(tmp_path) == []
    built = write_pyramid(tmp_path / "map", tree(), TILE, half_covered, {}, progress=False)
    assert built.nodata_fraction == {0: 0.75, 1: 0.75, 2: 0.75}


def test_terminal_tiles_optional(tmp_path):
    t = tree()
    built = write_pyramid(tmp_path / "map", t, TILE, render, {}, progress=False,
                          terminal=True)
    assert built.terminal_views.shape == (t.num_actions ** t.depth, TILE, TILE, 3)
    np.testing.assert_array_equal(built.tile((3, 2, 1)), render((3, 2, 1)))
    np.testing.assert_array_equal(built.tile((3, 2)), render((3, 2)))


def test_bad_render_output_is_rejected_and_nothing_left(tmp_path):
    with pytest.raises(JziError, match=r"returned shape \[8, 8, 3\]"):
        write_pyramid(tmp_path / "map", tree(), TILE,
                      lambda p: np.zeros((8, 8, 3), np.uint8), {}, progress=False)
    with pytest.raises(JziError, match="float32, expected uint8"):
        write_pyramid(tmp_path / "map", tree(), TILE,
                      lambda p: np.zeros((TILE, TILE, 3), np.float32), {}, progress=False)
    assert os.listdir(tmp_path) == []


def test_existing_output_and_overwrite(pyramid, tmp_path):
    with pytest.raises(JziError, match="already exists"):
        write_pyramid(tmp_path / "map", tree(), TILE, render, {}, progress=False)
    other = write_pyramid(tmp_path / "map", tree(), 24, lambda p: np.zeros((24, 24, 3),
                          np.uint8), {}, progress=False, overwrite=True)
    assert other.tile_px == 24 and sorted(os.listdir(tmp_path)) == ["map"]


def _edit_manifest(map_dir, **changes):
    manifest = json.loads((map_dir / "manifest.json").read_text())
    manifest.update(changes)
    (map_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "manifest.json").write_text("{ not json"), "manifest.json is corrupt"),
    (lambda d: (d / "manifest.json").unlink(), "manifest.json does not exist"),
    (lambda d: _edit_manifest(d, format_version=99), "format_version 99"),
    (lambda d: _edit_manifest(d, format="something"), "is not a jzi_ros map"),
    (lambda d: _edit_manifest(d, tile_px=32), "declares views"),
    (lambda d: _edit_manifest(d, tree={"center_lat": 1}), "missing field"),
    (lambda d: (d / "views.npy").unlink(), "views.npy does not exist"),
    (lambda d: os.truncate(d / "views.npy", 1000), "views.npy is corrupt"),
    (lambda d: np.save(d / "views.npy", np.zeros((3, TILE, TILE, 3), np.uint8)),
     r"holds uint8 \[3, 16, 16, 3\]"),
])
def test_open_rejects_damaged_maps(pyramid, tmp_path, damage, message):
    damage(tmp_path / "map")
    with pytest.raises(JziError, match=message):
        MapPyramid.open(tmp_path / "map")


def test_open_missing_directory(tmp_path):
    with pytest.raises(JziError, match="is not a directory"):
        MapPyramid.open(tmp_path / "nothing")


def test_embeddings_round_trip_and_stale_hash(pyramid):
    t = tree()
    assert pyramid.embeddings_hash() is None
    with pytest.raises(JziError, match="has no embeddings.*jzi map embed"):
        pyramid.load_embeddings("enc-a")
    table = np.random.default_rng(0).normal(size=(t.num_views, 12)).astype(np.float32)
    pyramid.write_embeddings(table, "enc-a", {"model": "tiny.safetensors"})
    assert pyramid.embeddings_hash() == "enc-a"
    assert pyramid.embeddings_info() == {"model": "tiny.safetensors"}
    loaded = MapPyramid.open(pyramid.path).load_embeddings("enc-a")
    assert loaded.dtype == np.float16 and loaded.shape == (t.num_views, 12)
    np.testing.assert_allclose(loaded, table, rtol=2e-3, atol=2e-3)
    with pytest.raises(JziError,
                       match=r"encoder\(s\) enc-a, but.*encoder is enc-b.*jzi map embed"):
        pyramid.load_embeddings("enc-b")
    # Embedding with another encoder adds a table: the first model keeps working (issue 13.2).
    pyramid.write_embeddings(table[:, :4], "enc-b", {"model": "second.safetensors"})
    reopened = MapPyramid.open(pyramid.path)
    assert reopened.load_embeddings("enc-b").shape == (t.num_views, 4)
    np.testing.assert_allclose(reopened.load_embeddings("enc-a"), table, rtol=2e-3, atol=2e-3)
    assert list(reopened.embedding_tables()) == ["enc-a", "enc-b"]
    assert reopened.embeddings_info("enc-a") == {"model": "tiny.safetensors"}
    # re-embedding with the same encoder replaces only its own table
    pyramid.write_embeddings(table[:, :6], "enc-a")
    assert reopened.load_embeddings("enc-a").shape == (t.num_views, 6)
    assert reopened.load_embeddings("enc-b").shape == (t.num_views, 4)


def test_embeddings_bad_input_and_corrupt_file(pyramid):
    t = tree()
    with pytest.raises(JziError, match=r"must be \[21, C\]"):
        pyramid.write_embeddings(np.zeros((t.num_views - 1, 4)), "enc")
    with pytest.raises(JziError, match="NaN"):
        pyramid.write_embeddings(np.full((t.num_views, 4), np.nan), "enc")
    assert not pyramid.embeddings_path.exists()
    pyramid.embeddings_path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage")
    with pytest.raises(JziError, match="is corrupt"):
        pyramid.load_embeddings("enc")


def test_embeddings_wrong_row_count_on_disk(pyramid, tmp_path):
    from safetensors.numpy import save_file
    save_file({"embeddings": np.zeros((3, 4), np.float16)}, str(pyramid.embeddings_path),
              metadata={"encoder_hash": "enc"})
    with pytest.raises(JziError, match=r"shape \[3, 4\], expected \[21, C\]"):
        pyramid.load_embeddings("enc")


def test_map_is_readable_by_other_users(pyramid):
    mask = os.umask(0)
    os.umask(mask)
    assert (pyramid.path.stat().st_mode & 0o777) == 0o777 & ~mask
    assert ((pyramid.path / "manifest.json").stat().st_mode & 0o777) == 0o666 & ~mask
    pyramid.write_embeddings(np.zeros((tree().num_views, 2)), "enc")
    assert (pyramid.embeddings_path.stat().st_mode & 0o777) == 0o666 & ~mask


def test_georef_sigma_round_trip_and_change_without_rebuild(tmp_path):
    from jzi_ros.maps.pyramid import set_georef_sigma_m

    built = write_pyramid(tmp_path / "map", tree(), TILE, render, {"path": "synthetic"},
                          progress=False, georef_sigma_m=2.5)
    assert built.georef_sigma_m == 2.5 and built.manifest["georef_sigma_m"] == 2.5
    before = json.loads((tmp_path / "map" / "manifest.json").read_text())
    changed = set_georef_sigma_m(tmp_path / "map", 11.2)
    assert changed.georef_sigma_m == 11.2 and MapPyramid.open(tmp_path / "map").georef_sigma_m \
        == 11.2
    after = json.loads((tmp_path / "map" / "manifest.json").read_text())
    assert {**before, "georef_sigma_m": 11.2} == after  # nothing else changed
    np.testing.assert_array_equal(changed.views, built.views)
    assert set_georef_sigma_m(tmp_path / "map", 0).georef_sigma_m == 0.0
    assert sorted(os.listdir(tmp_path / "map")) == ["manifest.json", "views.npy"]  # no temp left


def test_a_map_built_before_georef_sigma_opens_as_unknown(pyramid, tmp_path):
    from jzi_ros.maps.preview import map_summary

    assert pyramid.georef_sigma_m is None  # built without a value: unknown
    manifest_file = tmp_path / "map" / "manifest.json"
    old = json.loads(manifest_file.read_text())
    del old["georef_sigma_m"]  # the manifest as maps built before the field have it
    manifest_file.write_text(json.dumps(old))
    reopened = MapPyramid.open(tmp_path / "map")
    assert reopened.georef_sigma_m is None
    assert "georef     1-sigma unknown (0 m used" in map_summary(reopened)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "5", True])
def test_bad_georef_sigma_is_refused_naming_the_field_and_file(pyramid, tmp_path, bad):
    from jzi_ros.maps.pyramid import set_georef_sigma_m

    with pytest.raises(JziError, match="georef_sigma_m"):
        write_pyramid(tmp_path / "other", tree(), TILE, render, {}, progress=False,
                      georef_sigma_m=bad)
    assert not (tmp_path / "other").exists()
    manifest_file = tmp_path / "map" / "manifest.json"
    good = manifest_file.read_text()
    with pytest.raises(JziError, match="manifest.json: georef_sigma_m"):
        set_georef_sigma_m(tmp_path / "map", bad)
    assert manifest_file.read_text() == good  # refused before anything was written
    manifest_file.write_text(good.replace('"georef_sigma_m": null',
                                          f'"georef_sigma_m": {json.dumps(bad)}'))
    with pytest.raises(JziError, match=r"manifest .*manifest\.json: georef_sigma_m = .* must "
                                       r"be a finite number of metres >= 0"):
        MapPyramid.open(tmp_path / "map")
    assert set_georef_sigma_m(tmp_path / "map", 3.0).georef_sigma_m == 3.0  # the repair
    assert MapPyramid.open(tmp_path / "map").georef_sigma_m == 3.0


def test_map_set_refuses_a_corrupt_map_without_writing(pyramid, tmp_path):
    from jzi_ros.maps.pyramid import set_georef_sigma_m

    manifest_file = tmp_path / "map" / "manifest.json"
    broken = manifest_file.read_text().replace('"tile_px": 16', '"tile_px": 17')
    manifest_file.write_text(broken)
    with pytest.raises(JziError, match="declares views"):
        set_georef_sigma_m(tmp_path / "map", 3.0)
    assert manifest_file.read_text() == broken
