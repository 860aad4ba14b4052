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
Markers ``ros``, ``launch``, ``tensorrt``, ``gpu``: skipped with a reason when absent.

``ros`` needs rclpy (a ROS 2 install, or the PyPI wheels of the ``ros-pip`` extra);
``launch`` needs launch_testing (a ROS 2 install: ``colcon test``).

DDS of every ROS process a test starts stays on this machine and in a domain of its own:
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (Jazzy and later), ``ROS_LOCALHOST_ONLY=1`` on
Humble only (Jazzy deprecates it and warns in every process), and a ``ROS_DOMAIN_ID`` that no
other test session on the machine holds (a lock file per domain), so parallel runs cannot
cross-talk.
"""
from __future__ import annotations

import fcntl
import importlib.util
import os
import random
import shutil
import tempfile

import pytest

# Domain IDs 1..100 are safe for DDS port ranges on Linux; 0 is everyone's default.
TEST_DOMAIN_IDS = range(1, 101)
_domain_lock = None  # held open for the session


def _claim_domain_id() -> int:
    """Return a ROS_DOMAIN_ID no other running test session holds (flock on a lock file)."""
    global _domain_lock
    candidates = list(TEST_DOMAIN_IDS)
    random.Random(os.getpid()).shuffle(candidates)
    for domain in candidates:
        path = os.path.join(tempfile.gettempdir(), f"jzi_ros_test_domain_{domain}.lock")
        handle = open(path, "a")  # noqa: SIM115 - kept open until the session ends
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _domain_lock = handle
        return domain
    raise RuntimeError(f"every ROS domain in {TEST_DOMAIN_IDS} is held by a test session")


def pytest_configure(config):
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if os.environ.get("ROS_DISTRO", "").lower() == "humble":
        os.environ["ROS_LOCALHOST_ONLY"] = "1"
    os.environ["ROS_DOMAIN_ID"] = str(_claim_domain_id())


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _missing(marker: str) -> str | None:
    """Why tests with ``marker`` cannot run here, or None if they can."""
    if marker == "ros":
        if not _has_module("rclpy"):
            return "needs rclpy (a ROS 2 install, or pip install -e .[ros-pip])"
    elif marker == "launch":
        if not _has_module("launch_testing"):
            return "needs ROS 2 launch_testing (a ROS 2 install; run with colcon test)"
    elif marker == "gpu":
        if not _cuda_available():
            return "needs a CUDA GPU (torch.cuda.is_available() is False)"
    elif marker == "cxx":
        if not shutil.which(os.environ.get("CXX", "g++")):
            return ("needs a C++ compiler for AOTInductor (g++, or $CXX; "
                    "apt install g++)")
    elif marker == "tensorrt":
        if not _has_module("tensorrt"):
            return "needs TensorRT (the tensorrt module is not installed)"
        if not _cuda_available():
            return "needs a CUDA GPU for TensorRT"
    return None


def pytest_collection_modifyitems(config, items):
    reasons = {m: _missing(m) for m in ("ros", "launch", "gpu", "tensorrt", "cxx")}
    for item in items:
        for marker, reason in reasons.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def tiny_map(tmp_path):
    """Provide a synthetic 4x4, depth-2 MapPyramid (17 views of 16 px); see test/support.py."""
    from support import make_tiny_map

    return make_tiny_map(tmp_path)


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_map):
    """(pyramid, checkpoint path): a random tiny model whose embeddings are in the map."""
    from support import make_tiny_checkpoint

    return tiny_map, make_tiny_checkpoint(tmp_path, tiny_map)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Give the tests their own $XDG_CACHE_HOME: ONNX exports go there, not into ~/.cache."""
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
