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
PyTorch backend: the checkpoint's own modules on CPU or CUDA, fp32 or fp16.

On CUDA a frame is latency bound (two 384 px crops, then D tiny decoder steps), so eager
execution would spend most of its time launching kernels: with ``cuda_graph`` the encoder and
the whole fixed-length beam search are each captured once per batch size into a CUDA graph
and replayed, with static input buffers the next frame is copied into. A graph that fails to
capture (an op that syncs the host) falls back to eager execution with a warning.

On CPU a frame is per-op overhead bound too (the demo model's beam search is ~400 tiny ops):
``cpu_graph`` runs the encoder and each beam search as one graph per input shape
(:mod:`jzi_ros.inference.backends.cpu_graph`: ``jit`` by default, ``aoti`` fastest once
compiled, ``compile``, ``eager``). The searches take the map's view table as an input, as the
ONNX decoder does, so a compiled search serves every map with the same tree.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch
from torch import nn

from jzi_ros.errors import JziError
from jzi_ros.inference.backends.base import Backend, BackendSpec, CPU_GRAPHS
from jzi_ros.inference.backends.cpu_graph import aoti_cache_root, CpuGraph
from jzi_ros.inference.decode import BeamSearch, BeamSteps

LOG = logging.getLogger(__name__)


def torch_device(device: str) -> torch.device:
    """Parse ``cpu``/``cuda``/``cuda:N``; JziError when CUDA is asked for but absent."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise JziError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise JziError(f"device {device!r}: CUDA is not available to PyTorch here")
    if parsed.type not in ("cpu", "cuda"):
        raise JziError(f"device {device!r}: only 'cpu' and 'cuda' are supported")
    return parsed


class _Graphed:
    """A function of one tensor, replayed from a CUDA graph per input shape."""

    def __init__(self, fn: Callable[[torch.Tensor], tuple], what: str) -> None:
        self.fn = fn
        self.what = what
        self.graphs: dict[tuple, tuple] = {}
        self.failed = False

    def __call__(self, x: torch.Tensor):
        if self.failed:
            return self.fn(x)
        key = (tuple(x.shape), x.dtype)
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(x)
            except RuntimeError as err:  # e.g. an op that needs a host sync
                LOG.warning("CUDA graph capture of the %s failed (%s); running it eagerly",
                            self.what, str(err).splitlines()[0])
                self.failed = True
                return self.fn(x)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _capture(self, x: torch.Tensor):
        static_in = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up: cuBLAS handles, autotuning, lazy init
                self.fn(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(static_in)
        return graph, static_in, static_out


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_ground(pixels)


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, spec: BackendSpec) -> None:
        from jzi_ros.model.checkpoint import load_checkpoint

        device = torch_device(spec.device)
        if spec.precision not in ("fp32", "fp16"):
            raise JziError(f"precision {spec.precision!r}: expected fp32 or fp16")
        if spec.precision == "fp16" and device.type != "cuda":
            # runs (PyTorch has CPU half kernels) but is slower than fp32: useful only to
            # check a model's fp16 numerics on a machine without a GPU
            LOG.warning("torch fp16 on CPU is slow; use it for fp16 parity checks only")
        self.device = str(device)
        self.precision = spec.precision
        self.dtype = torch.float16 if spec.precision == "fp16" else torch.float32
        model, _ = load_checkpoint(spec.model_path, device=device)
        self.model = model.to(self.dtype).eval()
        self.search = BeamSearch(self.model, spec.grid, spec.depth, spec.beam_width)
        # same search, also returning each step's child probabilities (temporal fusion)
        self.step_search = BeamSearch(self.model, spec.grid, spec.depth, spec.beam_width,
                                      with_steps=True)
        self.table = torch.as_tensor(np.asarray(spec.view_table), device=device).to(self.dtype)
        self._encode: Callable = self._encode_eager
        self._decode: Callable = self._decode_eager
        self._steps: Callable = lambda ground: self.step_search(ground, self.table)
        self.grid, self.depth, self.beam_width = spec.grid, spec.depth, spec.beam_width
        self.cpu_graph = spec.cpu_graph
        self._seeded_searches: dict[tuple[int, int], Callable] = {}
        if spec.cpu_graph not in CPU_GRAPHS:
            raise JziError(f"cpu_graph {spec.cpu_graph!r}: expected one of {CPU_GRAPHS}")
        if device.type == "cuda" and spec.cuda_graph:
            self._encode = _Graphed(self._encode_eager, "ground encoder")
            self._decode = _Graphed(self._decode_eager, "beam decoder")
        elif device.type == "cpu" and spec.cpu_graph != "eager":
            from jzi_ros.inference.export import default_export_dir

            # the checkpoint's export key (weights hash + config, from its header; loading
            # checked the hash): no hashing of the weights again, one key for every graph
            self._identity = (default_export_dir(spec.model_path).name
                              if spec.cpu_graph == "aoti" else None)
            self._aoti_dir = aoti_cache_root(spec.export_dir)
            self._encode = self._on_cpu(_Encoder(self.model), "ground encoder", encoder=True)
            self._decode = self._on_cpu(self.search, "beam decoder")
            self._steps = self._on_cpu(self.step_search, "beam decoder with steps")

    def _on_cpu(self, module: nn.Module, what: str, encoder: bool = False) -> Callable:
        """Run ``module`` as a CPU graph; a search gets the view table as an input."""
        graph = CpuGraph(module, self.cpu_graph, what, self._identity, self._aoti_dir,
                         freeze=encoder)
        if encoder:
            return graph
        return lambda ground, *more: graph(ground, self.table, *more)

    @torch.inference_mode()
    def _encode_eager(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_ground(pixels)

    @torch.inference_mode()
    def _decode_eager(self, ground: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.search(ground, self.table)

    @torch.inference_mode()
    def encode_tensor(self, pixels: torch.Tensor) -> torch.Tensor:
        """Device tensors in and out (no host copy): the benchmark's and parity tests' path."""
        return self._encode(pixels.to(self.device, self.dtype, non_blocking=True))

    @torch.inference_mode()
    def decode_tensor(self, ground: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._decode(ground.to(self.device, self.dtype, non_blocking=True))

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        out = self.encode_tensor(torch.as_tensor(np.asarray(pixels, np.float32)))
        return out.float().cpu().numpy()

    def decode(self, ground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        paths, log_probs = self.decode_tensor(torch.as_tensor(np.asarray(ground, np.float32)))
        return paths.cpu().numpy(), log_probs.float().cpu().numpy()

    @torch.inference_mode()
    def decode_steps(self, ground: np.ndarray, seeds: np.ndarray | None = None,
                     seed_level: int = 1):
        ground_t = torch.as_tensor(np.asarray(ground, np.float32)).to(self.device, self.dtype)
        if seeds is None:
            paths, log_probs, *steps = self._steps(ground_t)
        else:
            seeds_t = torch.as_tensor(np.asarray(seeds, np.int64).reshape(len(ground), -1),
                                      device=self.device)
            paths, log_probs, *steps = self._seeded(seeds_t.shape[1], seed_level)(ground_t,
                                                                                  seeds_t)
        return paths.cpu().numpy(), log_probs.float().cpu().numpy(), BeamSteps.split(*steps)

    def _seeded(self, count: int, level: int) -> Callable:
        """Return the seeded search for ``count`` seeds at ``level`` (built once, reused)."""
        key = (count, level)
        if key not in self._seeded_searches:
            search = BeamSearch(self.model, self.grid, self.depth, self.beam_width,
                                seeds=count, seed_level=level)
            self._seeded_searches[key] = (
                self._on_cpu(search, "seeded beam decoder")
                if self.device == "cpu" and self.cpu_graph != "eager"
                else lambda ground, seeds: search(ground, self.table, seeds))
        return self._seeded_searches[key]

    def close(self) -> None:
        self.model = self.search = self.step_search = self.table = None
        self._encode = self._decode = self._steps = None
        self._seeded_searches = {}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
