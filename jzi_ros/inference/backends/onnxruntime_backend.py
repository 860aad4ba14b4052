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
ONNX Runtime backend: the exported encoder and beam-decoder graphs (CPU, or CUDA EP).

The graphs have a static batch size; calls with another number of frames are split into
chunks of that size and the last chunk is zero-padded (the padding rows are discarded).
"""
from __future__ import annotations

import logging

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.inference.backends.base import Backend, BackendSpec

LOG = logging.getLogger(__name__)


def available_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def runtime_for(device: str, what: str):
    """
    Return the onnxruntime module and the execution providers for ``device`` (cpu, cuda:N).

    JziError, naming ``what``, without the onnxruntime package or, on CUDA, without its
    CUDAExecutionProvider (onnxruntime-gpu).
    """
    try:
        import onnxruntime
    except ImportError:
        raise JziError(f"{what}: the onnxruntime package is not installed (pip install "
                       "onnxruntime, or onnxruntime-gpu for CUDA)") from None
    if not device.startswith("cuda"):
        return onnxruntime, ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available_providers():
        raise JziError(f"{what} on CUDA needs onnxruntime-gpu (CUDAExecutionProvider is not "
                       "available)")
    return onnxruntime, [("CUDAExecutionProvider", {"device_id": cuda_index(device)}),
                         "CPUExecutionProvider"]


def open_session(path, device: str, threads: int, what: str):
    """Return an ONNX Runtime session of ``path`` on ``device``, ``threads`` intra-op (0: all)."""
    onnxruntime, providers = runtime_for(device, what)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    options.intra_op_num_threads = threads  # 0: one per core (jzi_ros.threads)
    return onnxruntime.InferenceSession(str(path), options, providers=providers)


def cuda_index(device: str) -> int:
    """Return N of ``cuda:N`` (0 for ``cuda``)."""
    return int(device.split(":")[1]) if ":" in device else 0


def run_in_chunks(run, array: np.ndarray, batch: int) -> list[np.ndarray]:
    """``run(chunk [batch, ...]) -> list of outputs``, over any number of rows."""
    outputs: list[list[np.ndarray]] = []
    for start in range(0, len(array), batch):
        chunk = array[start:start + batch]
        rows = len(chunk)
        if rows < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - rows,) + chunk.shape[1:],
                                                    chunk.dtype)])
        outputs.append([out[:rows] for out in run(np.ascontiguousarray(chunk))])
    return [np.concatenate(parts) for parts in zip(*outputs)]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, spec: BackendSpec) -> None:
        what = "backend onnxruntime"
        onnxruntime, _ = runtime_for(spec.device, what)  # fails before any export
        from jzi_ros.inference.export import DECODER_OUTPUTS, ensure_export

        if spec.precision != "fp32":
            raise JziError(f"backend onnxruntime runs the fp32 export; precision "
                           f"{spec.precision!r} is not supported (use tensorrt for fp16)")
        wants_cuda = spec.device.startswith("cuda")
        encoder_path, decoder_path, info = ensure_export(spec.model_path, spec.export_dir,
                                                         spec.beam_width, spec.batch_size)
        self.encoder = open_session(encoder_path, spec.device, spec.threads, what)
        self.decoder = open_session(decoder_path, spec.device, spec.threads, what)
        self.device = "cuda" if wants_cuda else "cpu"
        self.precision = "fp32"
        self.batch = spec.batch_size
        self.table = np.ascontiguousarray(np.asarray(spec.view_table, np.float32))
        # on CUDA the table (13 MB for the paper's map) lives on the device once, bound
        # through IO binding, instead of being copied host -> device on every frame
        self.table_value = (onnxruntime.OrtValue.ortvalue_from_numpy(self.table, "cuda",
                                                                     cuda_index(spec.device))
                            if wants_cuda else None)
        self.files = (encoder_path, decoder_path)
        self.outputs = DECODER_OUTPUTS  # paths, log_probs, then the steps (export.py)
        LOG.info("onnxruntime sessions on %s from %s", self.encoder.get_providers()[0],
                 encoder_path.parent)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels, np.float32)
        return run_in_chunks(lambda x: self.encoder.run(["ground"], {"pixels": x}),
                             pixels, self.batch)[0]

    def _decode_chunk(self, ground: np.ndarray, outputs: tuple[str, ...]) -> list[np.ndarray]:
        if self.table_value is None:
            return self.decoder.run(list(outputs), {"ground": ground, "view_table": self.table})
        binding = self.decoder.io_binding()
        binding.bind_cpu_input("ground", ground)
        binding.bind_ortvalue_input("view_table", self.table_value)
        for name in outputs:
            binding.bind_output(name)
        self.decoder.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def decode(self, ground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ground = np.asarray(ground, np.float32)
        paths, log_probs = run_in_chunks(lambda x: self._decode_chunk(x, self.outputs[:2]),
                                         ground, self.batch)
        return paths.astype(np.int64), log_probs.astype(np.float32)

    def decode_steps(self, ground: np.ndarray, seeds: np.ndarray | None = None,
                     seed_level: int = 1):
        """
        Return the beam and every step's child probabilities, from the same exported graph.

        The exported graph takes no seeds: with ``seeds`` the steps are the model's own beam
        (the prior-seeded zoom is torch-only; warned once).
        """
        from jzi_ros.inference.decode import BeamSteps

        self._steps_without_seeds(seeds, LOG)
        ground = np.asarray(ground, np.float32)
        paths, log_probs, *steps = run_in_chunks(
            lambda x: self._decode_chunk(x, self.outputs), ground, self.batch)
        root_lp, prefix_index, prefix_lp, step_lp = steps  # int32 indices in the graph
        return (paths.astype(np.int64), log_probs.astype(np.float32),
                BeamSteps.split(root_lp, prefix_index.astype(np.int64), prefix_lp, step_lp))

    def close(self) -> None:
        self.encoder = self.decoder = self.table_value = None
