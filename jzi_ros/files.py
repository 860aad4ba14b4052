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

"""Atomic writes: a crash leaves the old file (or none), never a half-written one."""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
import re
import shutil
import tempfile
from typing import IO, Iterator

from jzi_ros.errors import JziError

LOG = logging.getLogger(__name__)


def _default_mode(directory: bool) -> int:
    """
    Return the mode plain open()/mkdir() would give.

    mkstemp/mkdtemp make 0600/0700, but maps, models and reports are read by other accounts
    (e.g. the ROS node's).
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def _tmp_prefix(path: Path) -> str:
    """Return the prefix of our temporaries for ``path``; it holds the writer's pid."""
    return f".{path.name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another account's process: alive
        return True
    return True


def sweep_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """
    Remove temporaries of ``path`` left by writers that were killed (SIGKILL, power loss).

    Only our own naming ``.NAME.<pid>.<random>.tmp`` whose pid no longer runs, so a
    concurrent writer's temporary is never touched. Returns what was removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[^/]*\.tmp$")
    for item in path.parent.iterdir():
        match = pattern.match(item.name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
        removed.append(item)
        LOG.warning("removed %s, left by an interrupted write of %s", item, path)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # after the caller's writes: some writers (safetensors) replace the file we made
        os.chmod(tmp, _default_mode(directory=False))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open()`` for writing whose result appears at ``path`` only once fully written."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_json(path: str | os.PathLike, data, indent: int = 2) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=indent, sort_keys=False)
        handle.write("\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> dict:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise JziError(f"{what} {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise JziError(f"{what} {path} is corrupt: {err}") from None


def _within(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def refuse_overlap(output: str | os.PathLike, source: str | os.PathLike, option: str,
                   what: str) -> None:
    """
    Refuse an output that is, contains or lies inside an input (``--overwrite`` would lose it).

    ``source`` may be a file inside a directory dataset (a bag's .db3 next to metadata.yaml):
    that directory counts as the input too.
    """
    out = Path(output).expanduser().resolve()
    src = Path(source).expanduser().resolve()
    inputs = [src]
    if src.is_file() and (src.parent / "metadata.yaml").exists():
        inputs.insert(0, src.parent)
    for item in inputs:
        if _within(out, item) or _within(item, out):
            relation = ("is" if out == item else "lies inside" if _within(out, item)
                        else "contains")
            raise JziError(f"{option} {output} {relation} the {what} {item}: writing it "
                           f"would replace the input; choose another {option}")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """
    Build a directory in a temporary sibling; it replaces ``path`` only on success.

    Refuses an existing ``path`` unless ``overwrite``; with ``overwrite`` the old directory
    stays intact until the new one is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise JziError(f"output {path} already exists (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, _default_mode(directory=True))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
