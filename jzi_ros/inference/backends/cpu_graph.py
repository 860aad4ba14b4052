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
How the torch backend runs a module on the CPU (``cpu_graph``), one graph per input shape.

On a CPU the demo-sized encoder and beam search are bound by per-op overhead (the beam search
is ~400 tiny ops), not by arithmetic, so the cure is running fewer, fused calls:

- ``jit``: a frozen TorchScript trace (a second at start-up; the default).
- ``compile``: ``torch.compile`` (inductor's C++ kernels, Python in between; tens of seconds
  at every start-up, a cache cuts that).
- ``aoti``: AOTInductor, inductor's kernels and a C++ wrapper compiled once into a ``.pt2``
  package (~15 s per graph on a 2-core machine) and cached on disk: later start-ups
  load it in milliseconds. The fastest torch mode on a CPU (ONNX Runtime is faster
  still; docs/localizer.md "CPU graphs").
  The package's cache key pins everything the compiled code depends on (weights, module
  structure and settings, input shapes and dtypes, torch version, the CPU's model and
  instruction-set flags, the thread count inductor parallelised for); a damaged package is
  rebuilt.

A graph that fails to build falls back with a warning: ``aoti`` to ``jit``, ``jit`` and
``compile`` to the eager module, so a robot never loses its localizer to a toolchain problem.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
import platform
import re
import time
from typing import Callable
import warnings

import torch
from torch import nn

from jzi_ros.files import atomic_open

LOG = logging.getLogger(__name__)

AOTI_FORMAT = "jzi-aoti/1"
# a fallback chain: what a mode that fails to build runs instead
FALLBACK = {"aoti": "jit", "jit": "eager", "compile": "eager"}
# packages kept per graph name (the most recently used): a paper-size encoder's is ~350 MB
AOTI_KEEP = 3


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def aoti_cache_root(export_dir: str | os.PathLike | None = None) -> Path:
    """``<export_dir>/aoti`` when given, else ``$XDG_CACHE_HOME/jzi_ros/aoti``."""
    if export_dir:
        return Path(export_dir) / "aoti"
    from jzi_ros.inference.export import export_cache_root

    return export_cache_root().parent / "aoti"


@functools.lru_cache(maxsize=1)
def cpu_signature() -> str:
    """
    Return the CPU's model and instruction-set flags (Linux), else what platform knows.

    Inductor compiles for the host (``-march=native``-like flags): a package built on one CPU
    may use instructions another lacks, even one with the same vector width.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            fields = {}
            for line in handle:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in ("model name", "flags") and name not in fields:
                    fields[name] = value.strip()
                if len(fields) == 2:
                    break
        if fields:
            return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def aoti_key(module: nn.Module, inputs: tuple[torch.Tensor, ...], identity: str,
             options: dict) -> str:
    """Return the cache key of one AOTInductor package (see the module docstring)."""
    description = {
        "format": AOTI_FORMAT,
        "identity": identity,
        "options": options,
        "module": repr(module),
        "inputs": [[list(x.shape), str(x.dtype)] for x in inputs],
        "torch": torch.__version__,
        "machine": platform.machine(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_signature(),
        "threads": torch.get_num_threads(),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]


class CpuGraph:
    """
    A module run per ``mode`` (``jit``, ``compile`` or ``aoti``), built once per input shape.

    ``identity`` (``aoti``): a string that pins the module's weights and configuration, e.g.
    a checkpoint's export key (read from its header; when omitted, the module's
    :func:`~jzi_ros.model.zoom.weights_hash`); ``cache_dir``: where packages
    live (:func:`aoti_cache_root` when omitted). ``freeze`` (``aoti``): inductor's freezing,
    weights as constants pre-packed for oneDNN: the demo ResNet encoder runs 1.8x faster with
    it, the beam search (8-row matrix products) 1.9x slower, so encoders take it and searches
    do not (docs/localizer.md "CPU graphs").
    """

    def __init__(self, module: nn.Module, mode: str, what: str, identity: str | None = None,
                 cache_dir: str | os.PathLike | None = None, freeze: bool = False) -> None:
        self.module = module.eval()
        self.mode = mode
        self.what = what
        self.identity = identity
        self.cache_dir = Path(cache_dir) if cache_dir else aoti_cache_root()
        self.aoti_options = {"freezing": bool(freeze)}
        self.graphs: dict[tuple, Callable] = {}

    def __call__(self, *inputs: torch.Tensor):
        key = tuple((tuple(x.shape), x.dtype) for x in inputs)
        if key not in self.graphs:
            self.graphs[key] = self._build_or_fall_back(self.mode, inputs)
        return self.graphs[key](*inputs)

    def _build_or_fall_back(self, mode: str, inputs: tuple[torch.Tensor, ...]) -> Callable:
        if mode == "eager":
            return self.module
        try:
            return {"jit": self._trace, "compile": self._compile, "aoti": self._aoti}[mode](
                inputs)
        except Exception as err:  # a model the toolchain cannot take: a slower way still runs
            LOG.warning("%s of the %s failed (%s); running it with %s instead", mode, self.what,
                        _first_line(err), FALLBACK[mode])
            return self._build_or_fall_back(FALLBACK[mode], inputs)

    def _trace(self, inputs: tuple[torch.Tensor, ...]) -> Callable:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(self.module, tuple(x.clone() for x in inputs),
                                     check_trace=False)
            return torch.jit.freeze(traced.eval())

    def _compile(self, inputs: tuple[torch.Tensor, ...]) -> Callable:
        compiled = torch.compile(self.module, dynamic=False)
        compiled(*inputs)  # compile now, not on the first camera frame
        return compiled

    def package_path(self, inputs: tuple[torch.Tensor, ...]) -> Path:
        """Where the AOTInductor package for these inputs is (or will be) cached."""
        if self.identity is None:
            from jzi_ros.model.zoom import weights_hash

            self.identity = weights_hash(self.module)
        key = aoti_key(self.module, inputs, self.identity, self.aoti_options)
        return self.cache_dir / f"{self._slug()}-{key}.pt2"

    def _slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.what.lower()).strip("-")

    def _prune(self) -> None:
        """Keep the :data:`AOTI_KEEP` most recently used packages of this graph's name."""
        pattern = re.compile(re.escape(self._slug()) + r"-[0-9a-f]{24}\.pt2")
        packages = sorted((p for p in self.cache_dir.iterdir() if pattern.fullmatch(p.name)),
                          key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in packages[AOTI_KEEP:]:
            LOG.info("removing the least recently used AOTInductor package %s", stale)
            stale.unlink(missing_ok=True)

    def _aoti(self, inputs: tuple[torch.Tensor, ...]) -> Callable:
        from torch._inductor import aoti_compile_and_package, aoti_load_package

        path = self.package_path(inputs)
        if path.is_file():
            try:
                loaded = aoti_load_package(str(path))
                os.utime(path)  # used now: the last one pruning removes
                return loaded
            except Exception as err:  # truncated or foreign file: build it again
                LOG.warning("AOTInductor package %s does not load (%s); rebuilding it", path,
                            _first_line(err))
        LOG.warning("compiling the %s ahead of time (AOTInductor, tens of seconds, once per "
                    "model, input shape and machine; cached as %s)", self.what, path)
        start = time.perf_counter()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(self.module, tuple(x.clone() for x in inputs))
            with atomic_open(path, "wb") as handle:
                aoti_compile_and_package(program, package_path=handle,
                                         inductor_configs=dict(self.aoti_options))
        LOG.info("compiled the %s in %.0f s", self.what, time.perf_counter() - start)
        self._prune()
        return aoti_load_package(str(path))
