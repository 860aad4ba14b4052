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
The one small interface every inference backend implements.

A backend owns the two networks of a frame: the ground encoder (preprocessed pixels ->
ground token) and the fixed-length beam-search decoder (ground token -> top paths and their
log-probabilities over the map's cached view table). The Localizer does everything else
(image checks, preprocessing, posterior, covariance) in numpy, so backends stay small and
interchangeable.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

PRECISIONS = ("fp32", "fp16")
CPU_GRAPHS = ("eager", "jit", "compile", "aoti")  # how the torch backend runs on the CPU


@dataclass(frozen=True)
class BackendSpec:
    """Everything a backend needs to be built (the Localizer fills it from its config)."""

    model_path: str  # the checkpoint (.safetensors)
    view_table: np.ndarray  # float16 [num_views, C], the map's embedding table
    grid: int
    depth: int
    beam_width: int
    device: str = "cpu"  # "cpu", "cuda", "cuda:N"
    precision: str = "fp32"
    batch_size: int = 1  # frames per call (fixed for ONNX/TensorRT graphs)
    export_dir: str | None = None  # ONNX export (and TensorRT engine cache) directory
    force_engine_update: bool = False
    max_workspace_size: int = 1 << 30  # bytes TensorRT may use while building
    cuda_graph: bool = True  # torch on CUDA: replay captured graphs instead of eager calls
    cpu_graph: str = "jit"  # torch on CPU: eager, jit, compile or aoti (backends/cpu_graph.py)
    threads: int = 0  # CPU threads of a runtime with its own pool (ONNX Runtime); 0: its own


class Backend(abc.ABC):
    """Ground encoder + beam decoder on some runtime/device/precision."""

    name: str = "backend"  # e.g. "torch", "onnxruntime", "tensorrt"
    device: str = "cpu"
    precision: str = "fp32"

    @abc.abstractmethod
    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """float32 ``[N, n_crops, 3, S, S]`` (normalised) -> float32 ``[N, C]`` ground tokens."""

    @abc.abstractmethod
    def decode(self, ground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``[N, C]`` -> ``(paths int64 [N, B, D], log_probs float32 [N, B])``."""

    def decode_steps(self, ground: np.ndarray, seeds: np.ndarray | None = None,
                     seed_level: int = 1):
        """
        Decode as :meth:`decode` and also return every step's child probabilities.

        ``(paths, log_probs, list of decode.BeamSteps)``, or None where this runtime's fixed
        graph does not output them (temporal fusion then uses the beam alone). ``seeds``
        (int ``[N, S]``, cells at ``seed_level``, -1: none) adds a seeded track to the steps
        (:class:`~jzi_ros.inference.decode.BeamSearch`); paths and log-probs stay the
        model's own beam.
        """
        return None

    def _steps_without_seeds(self, seeds: np.ndarray | None, log) -> None:
        """
        Warn once that this runtime's exported graph takes no seeds (its steps are unseeded).

        ONNX Runtime and TensorRT run the exported decoder, which has no seeds input: the
        prior-seeded zoom (``fusion.seed_beam``) is the torch backend's.
        """
        if seeds is not None and not getattr(self, "_warned_seeds", False):
            log.warning("%s: the exported decoder takes no seeds; the prior-seeded zoom "
                        "(fusion.seed_beam) needs the torch backend, the filter gets the "
                        "model's own beam", self.name)
            self._warned_seeds = True

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.precision})"

    def close(self) -> None:
        """Free device memory (the ROS node calls this on shutdown)."""
