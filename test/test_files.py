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

import os
import stat

import pytest

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_directory, atomic_open, read_json, write_json


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_file_keeps_old_content_on_error(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("{half")
            raise RuntimeError("crash")
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_atomic_outputs_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "f.json", {})
        with atomic_directory(tmp_path / "d") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "f.json") == 0o644  # readable by a ROS node's other account
    assert _mode(tmp_path / "d") == 0o755


def test_atomic_directory_refuses_existing_and_replaces_on_overwrite(tmp_path):
    out = tmp_path / "map"
    with atomic_directory(out) as tmp:
        (tmp / "old").write_text("1")
    with pytest.raises(JziError, match="already exists"):
        with atomic_directory(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_directory(out, overwrite=True) as tmp:
            (tmp / "new").write_text("2")
            raise RuntimeError("crash")
    assert [p.name for p in out.iterdir()] == ["old"]
    with atomic_directory(out, overwrite=True) as tmp:
        (tmp / "new").write_text("2")
    assert [p.name for p in out.iterdir()] == ["new"]


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(JziError, match="does not exist"):
        read_json(tmp_path / "missing.json", "manifest")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(JziError, match="bad.json is corrupt"):
        read_json(bad)
