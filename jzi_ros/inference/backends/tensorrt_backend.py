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
TensorRT backend: engines built from the ONNX export, cached next to it.

Parameter names follow Isaac ROS (``model_file_path``, ``engine_file_path``,
``force_engine_update``, ``enable_fp16``, ``max_workspace_size``). An engine is tied to the GPU
and the TensorRT version, so each ``.plan`` has a sidecar JSON with the key it was built for
(GPU name, compute capability, TensorRT version, precision, input shapes, ONNX hash); a
mismatch, a failed deserialisation or ``force_engine_update`` rebuilds it (minutes for a
ViT-B, logged). Execution uses the TensorRT 10 named-tensor API (``set_tensor_address`` +
``execute_async_v3``) with torch CUDA tensors as buffers on torch's current stream.

Precision: the encoder is built with FP16 when ``enable_fp16`` (some ViTs drift in FP16, so
a fresh FP16 build is checked against the fp32 PyTorch encoder: CLS cosine similarity must be
>= 0.999, else a warning); the beam decoder is always FP32: it is latency bound (a few tokens),
so FP16 would save nothing while risking a different beam order.
"""
from __future__ import annotations

from dataclasses import dataclass
import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_path, read_json, write_json
from jzi_ros.inference.backends.base import Backend, BackendSpec
from jzi_ros.inference.export import DECODER_OUTPUTS

LOG = logging.getLogger(__name__)

FP16_MIN_COSINE = 0.999


def _trt():
    try:
        import tensorrt
    except ImportError:
        raise JziError("backend tensorrt: the tensorrt Python package is not installed "
                       "(JetPack ships it; elsewhere pip install tensorrt)") from None
    if int(tensorrt.__version__.split(".")[0]) < 10:
        raise JziError(f"backend tensorrt needs TensorRT >= 10 (named-tensor API), found "
                       f"{tensorrt.__version__}")
    return tensorrt


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@dataclass
class EngineParams:
    """Isaac ROS-style engine parameters."""

    model_file_path: str  # the ONNX file
    engine_file_path: str | None = None  # default: next to the ONNX, named by precision
    force_engine_update: bool = False
    enable_fp16: bool = True
    max_workspace_size: int = 1 << 30  # bytes

    def engine_path(self) -> Path:
        if self.engine_file_path:
            return Path(self.engine_file_path)
        precision = "fp16" if self.enable_fp16 else "fp32"
        return Path(self.model_file_path).with_suffix(f".{precision}.plan")


class TensorRTEngine:
    """One deserialised engine + execution context with torch-allocated I/O buffers."""

    def __init__(self, params: EngineParams, device: torch.device) -> None:
        trt = _trt()
        self.trt = trt
        self.params = params
        self.device = device
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.built = False
        onnx_path = Path(params.model_file_path)
        if not onnx_path.is_file():
            raise JziError(f"TensorRT model_file_path {onnx_path} does not exist "
                           "(run `jzi export`)")
        engine_path = params.engine_path()
        key = self._cache_key(onnx_path)
        engine = None
        if not params.force_engine_update and engine_path.exists():
            engine = self._load_cached(engine_path, key)
        if engine is None:
            engine = self._build(onnx_path, engine_path, key)
            self.built = True
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise JziError(f"TensorRT could not create an execution context for {engine_path}")
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            shape = tuple(engine.get_tensor_shape(name))
            if any(dim < 0 for dim in shape):
                raise JziError(f"engine {engine_path}: tensor {name} has a dynamic shape "
                               f"{shape}; the jzi export is static")
            dtype = self._torch_dtype(engine.get_tensor_dtype(name))
            buffer = torch.empty(shape, dtype=dtype, device=device)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs)[name] = buffer
            self.context.set_tensor_address(name, buffer.data_ptr())

    def _torch_dtype(self, dtype) -> torch.dtype:
        trt = self.trt
        table = {trt.float32: torch.float32, trt.float16: torch.float16,
                 trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool,
                 trt.int8: torch.int8}
        if dtype not in table:
            raise JziError(f"TensorRT tensor type {dtype} is not supported by jzi_ros")
        return table[dtype]

    def _cache_key(self, onnx_path: Path) -> dict:
        props = torch.cuda.get_device_properties(self.device)
        return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
                "tensorrt": self.trt.__version__,
                "precision": "fp16" if self.params.enable_fp16 else "fp32",
                "onnx_sha256": _file_sha256(onnx_path),
                "max_workspace_size": int(self.params.max_workspace_size)}

    def _load_cached(self, engine_path: Path, key: dict):
        sidecar = engine_path.with_name(engine_path.name + ".json")
        stored = read_json(sidecar, "engine sidecar") if sidecar.exists() else None
        if stored is None or stored.get("key") != key:
            LOG.warning("TensorRT engine %s is stale (built for %s, need %s): rebuilding",
                        engine_path, stored.get("key") if stored else "unknown", key)
            return None
        runtime = self.trt.Runtime(self.logger)
        try:
            engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        except Exception as err:  # some TensorRT versions raise instead of returning None
            LOG.warning("TensorRT engine %s: %s", engine_path, err)
            engine = None
        if engine is None:
            LOG.warning("TensorRT engine %s failed to deserialise: rebuilding", engine_path)
            return None
        self.runtime = runtime  # the runtime must outlive its engines
        LOG.info("TensorRT engine loaded from %s", engine_path)
        return engine

    def _build(self, onnx_path: Path, engine_path: Path, key: dict):
        trt = self.trt
        LOG.warning("building TensorRT engine %s from %s (%s); the first build can take "
                    "minutes", engine_path, onnx_path, key["precision"])
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TRT 10
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise JziError(f"TensorRT cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                     int(self.params.max_workspace_size))
        if self.params.enable_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise JziError(f"TensorRT failed to build an engine from {onnx_path} (see the "
                           "TensorRT log above; try a larger max_workspace_size)")
        data = bytes(serialized)
        with atomic_path(engine_path) as tmp:
            tmp.write_bytes(data)
        write_json(engine_path.with_name(engine_path.name + ".json"),
                   {"key": key, "onnx": str(onnx_path)})
        self.runtime = trt.Runtime(self.logger)
        engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise JziError(f"TensorRT built {engine_path} but cannot deserialise it")
        return engine

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Copy inputs into the bound buffers, enqueue on torch's stream, return outputs."""
        for name, value in inputs.items():
            self.inputs[name].copy_(value, non_blocking=True)
        stream = torch.cuda.current_stream(self.device).cuda_stream
        if not self.context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return self.outputs


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, spec: BackendSpec) -> None:
        from jzi_ros.inference.backends.torch_backend import torch_device
        from jzi_ros.inference.export import ensure_export

        _trt()
        if not spec.device.startswith("cuda"):
            raise JziError(f"backend tensorrt needs a CUDA device, got {spec.device!r}")
        device = torch_device(spec.device)
        encoder_onnx, decoder_onnx, _ = ensure_export(spec.model_path, spec.export_dir,
                                                      spec.beam_width, spec.batch_size)
        fp16 = spec.precision == "fp16"
        self.device = str(device)
        self.precision = spec.precision
        self.batch = spec.batch_size
        self.encoder = TensorRTEngine(EngineParams(
            str(encoder_onnx), None, spec.force_engine_update, fp16, spec.max_workspace_size),
            device)
        self.decoder = TensorRTEngine(EngineParams(
            str(decoder_onnx), None, spec.force_engine_update, False, spec.max_workspace_size),
            device)
        self.table = torch.as_tensor(np.asarray(spec.view_table, np.float32), device=device)
        self.decoder.inputs["view_table"].copy_(self.table)
        if fp16 and self.encoder.built:
            self.check_fp16(spec.model_path)

    def check_fp16(self, model_path: str) -> float:
        """CLS cosine similarity of the FP16 engine vs the fp32 PyTorch encoder."""
        from jzi_ros.model.checkpoint import load_checkpoint

        model, _ = load_checkpoint(model_path, device=self.device)
        shape = tuple(self.encoder.inputs["pixels"].shape)
        pixels = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(self.device)
        with torch.inference_mode():
            reference = model.encode_ground(pixels).float()
        engine = self.encoder(pixels=pixels)["ground"].float()
        cosine = float(torch.nn.functional.cosine_similarity(engine, reference).min())
        if cosine < FP16_MIN_COSINE:
            LOG.warning("FP16 TensorRT encoder drifts from fp32: CLS cosine %.5f < %.3f; "
                        "consider enable_fp16=false", cosine, FP16_MIN_COSINE)
        else:
            LOG.info("FP16 TensorRT encoder matches fp32: CLS cosine %.5f", cosine)
        del model
        return cosine

    def _chunks(self, array: torch.Tensor):
        for start in range(0, len(array), self.batch):
            chunk = array[start:start + self.batch]
            rows = len(chunk)
            if rows < self.batch:
                pad = chunk.new_zeros((self.batch - rows,) + tuple(chunk.shape[1:]))
                chunk = torch.cat([chunk, pad])
            yield chunk, rows

    def encode_tensor(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.device, torch.float32, non_blocking=True)
        return torch.cat([self.encoder(pixels=chunk)["ground"][:rows].clone()
                          for chunk, rows in self._chunks(pixels)])

    def decode_tensor(self, ground: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        paths, log_probs = self._decode_outputs(ground, DECODER_OUTPUTS[:2])
        return paths.long(), log_probs.float()

    def _decode_outputs(self, ground: torch.Tensor, names: tuple[str, ...]
                        ) -> list[torch.Tensor]:
        """Run the decoder engine over any number of frames; ``names``: outputs to keep."""
        ground = ground.to(self.device, torch.float32, non_blocking=True)
        parts: list[list[torch.Tensor]] = []
        for chunk, rows in self._chunks(ground):
            out = self.decoder(ground=chunk)
            parts.append([out[name][:rows].clone() for name in names])
        return [torch.cat(column) for column in zip(*parts)]

    def decode_steps(self, ground: np.ndarray, seeds: np.ndarray | None = None,
                     seed_level: int = 1):
        """
        Return the beam and every step's child probabilities, from the same engine.

        The exported graph takes no seeds: with ``seeds`` the steps are the model's own beam
        (the prior-seeded zoom is torch-only; warned once).
        """
        from jzi_ros.inference.decode import BeamSteps

        self._steps_without_seeds(seeds, LOG)
        paths, log_probs, *steps = self._decode_outputs(
            torch.as_tensor(np.asarray(ground, np.float32)), DECODER_OUTPUTS)
        return (paths.long().cpu().numpy(), log_probs.float().cpu().numpy(),
                BeamSteps.split(*(step.float() if step.is_floating_point() else step.long()
                                  for step in steps)))

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        return self.encode_tensor(torch.as_tensor(np.asarray(pixels, np.float32))).cpu().numpy()

    def decode(self, ground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        paths, log_probs = self.decode_tensor(torch.as_tensor(np.asarray(ground, np.float32)))
        return paths.cpu().numpy(), log_probs.cpu().numpy()

    def close(self) -> None:
        self.encoder = self.decoder = self.table = None
        torch.cuda.empty_cache()
