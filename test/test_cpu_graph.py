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

"""CpuGraph's ahead-of-time packages: cached, keyed, rebuilt when damaged, never fatal."""
import logging
import os

import pytest
import torch
from torch import nn

from jzi_ros.inference.backends import cpu_graph
from jzi_ros.inference.backends.cpu_graph import CpuGraph


def _module(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4)).eval()


def _refuse_to_compile(monkeypatch) -> list:
    """Make any AOTInductor compile fail (and count the attempts)."""
    import torch._inductor

    calls = []

    def refuse(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", refuse)
    return calls


@pytest.mark.slow
@pytest.mark.cxx
def test_a_package_is_compiled_once_then_loaded_and_gives_the_modules_outputs(
        tmp_path, monkeypatch):
    module, x = _module(), torch.randn(3, 8)
    # older packages of this graph (used at t = 1..4 s) and one of another graph's name
    stale = [tmp_path / f"tiny-net-{i:024x}.pt2" for i in range(1, 5)]
    other = tmp_path / f"tiny-net-head-{0:024x}.pt2"
    for used, path in enumerate([*stale, other], start=1):
        path.write_bytes(b"old")
        os.utime(path, (used, used))
    first = CpuGraph(module, "aoti", "tiny net", cache_dir=tmp_path)
    with torch.no_grad():
        expected = module(x)
        assert torch.allclose(first(x), expected, atol=1e-6)
    new = first.package_path((x,))
    # the new one and the two most recently used old ones are kept; other names untouched
    assert sorted(tmp_path.iterdir()) == sorted([new, stale[2], stale[3], other])
    for path in [*stale, other]:
        path.unlink(missing_ok=True)
    packages = [new]

    # a new process' graph loads the package: compiling again would fail here
    calls = _refuse_to_compile(monkeypatch)
    second = CpuGraph(module, "aoti", "tiny net", cache_dir=tmp_path)
    with torch.no_grad():
        assert torch.allclose(second(x), expected, atol=1e-6)
    assert calls == []
    # a different weight, shape or setting is a different package
    assert CpuGraph(_module(1), "aoti", "tiny net", cache_dir=tmp_path).package_path(
        (x,)) != packages[0]
    assert second.package_path((torch.randn(5, 8),)) != packages[0]
    assert CpuGraph(module, "aoti", "tiny net", identity="other weights",
                    cache_dir=tmp_path).package_path((x,)) != packages[0]
    assert CpuGraph(module, "aoti", "tiny net", cache_dir=tmp_path,
                    freeze=True).package_path((x,)) != packages[0]


@pytest.mark.slow
@pytest.mark.cxx
def test_a_damaged_package_is_rebuilt(tmp_path, caplog):
    module, x = _module(), torch.randn(2, 8)
    path = CpuGraph(module, "aoti", "tiny net", cache_dir=tmp_path).package_path((x,))
    path.write_bytes(b"not a zip archive")
    with caplog.at_level(logging.WARNING, logger=cpu_graph.__name__), torch.no_grad():
        out = CpuGraph(module, "aoti", "tiny net", cache_dir=tmp_path)(x)
        assert torch.allclose(out, module(x), atol=1e-6)
    assert "does not load" in caplog.text and "rebuilding" in caplog.text
    assert path.stat().st_size > 1000


def test_a_failed_compile_falls_back_to_the_trace_and_leaves_no_package(
        tmp_path, monkeypatch, caplog):
    calls = _refuse_to_compile(monkeypatch)
    module, x = _module(), torch.randn(2, 8)
    graph = CpuGraph(module, "aoti", "tiny net", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger=cpu_graph.__name__), torch.no_grad():
        assert torch.allclose(graph(x), module(x), atol=1e-6)
        assert torch.allclose(graph(x), module(x), atol=1e-6)  # built once per shape
    assert calls == [1]
    assert "aoti of the tiny net failed (no C++ compiler here); running it with jit" \
        in caplog.text
    assert isinstance(graph.graphs[((2, 8), torch.float32),], torch.jit.ScriptModule)
    assert not list(tmp_path.glob("*"))


def test_a_module_the_trace_cannot_take_runs_eagerly(monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise RuntimeError("trace refused")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    module, x = _module(), torch.randn(2, 8)
    graph = CpuGraph(module, "jit", "tiny net")
    with caplog.at_level(logging.WARNING, logger=cpu_graph.__name__), torch.no_grad():
        assert torch.equal(graph(x), module(x))
    assert graph.graphs[((2, 8), torch.float32),] is module
    assert "jit of the tiny net failed (trace refused); running it with eager" in caplog.text
