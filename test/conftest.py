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

"""Markers ``ros``, ``tensorrt``, ``gpu``: skipped with a reason when the dependency is absent."""
from __future__ import annotations

import importlib.util

import pytest


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
        if not (_has_module("rclpy") and _has_module("launch_testing")):
            return "needs ROS 2 (rclpy and launch_testing not importable)"
    elif marker == "gpu":
        if not _cuda_available():
            return "needs a CUDA GPU (torch.cuda.is_available() is False)"
    elif marker == "tensorrt":
        if not _has_module("tensorrt"):
            return "needs TensorRT (the tensorrt module is not installed)"
        if not _cuda_available():
            return "needs a CUDA GPU for TensorRT"
    return None


def pytest_collection_modifyitems(config, items):
    reasons = {m: _missing(m) for m in ("ros", "gpu", "tensorrt")}
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
