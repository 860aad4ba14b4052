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
Backend selection: ``torch``, ``onnxruntime``, ``tensorrt`` or ``auto``.

``auto`` tries, in order: TensorRT (FP16) > ONNX Runtime CUDA > PyTorch CUDA (FP16) > ONNX
Runtime CPU > PyTorch CPU, and logs what it picked and why each earlier candidate was skipped.
The ONNX-based candidates need an existing export (``jzi export``) for ``auto``: an implicit
export (or a TensorRT build, minutes for a ViT-B) is never started behind the user's back.
Naming a backend explicitly exports what is missing.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
from pathlib import Path

from jzi_ros.errors import JziError
from jzi_ros.inference.backends.base import Backend, BackendSpec, PRECISIONS

LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")

__all__ = ["BACKENDS", "Backend", "BackendSpec", "create_backend", "auto_candidates"]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _export_exists(spec: BackendSpec) -> bool:
    from jzi_ros.inference.export import default_export_dir, EXPORT_JSON

    folder = Path(spec.export_dir) if spec.export_dir else default_export_dir(spec.model_path)
    return (folder / EXPORT_JSON).is_file()


def _build(name: str, spec: BackendSpec) -> Backend:
    if name == "torch":
        from jzi_ros.inference.backends.torch_backend import TorchBackend
        return TorchBackend(spec)
    if name == "onnxruntime":
        from jzi_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(spec)
    if name == "tensorrt":
        from jzi_ros.inference.backends.tensorrt_backend import TensorRTBackend
        return TensorRTBackend(spec)
    raise JziError(f"backend {name!r} is unknown; expected one of {BACKENDS}")


def _resolve(device: str, precision: str, default_device: str) -> tuple[str, str]:
    device = default_device if device == "auto" else device
    if precision == "auto":
        precision = "fp16" if device.startswith("cuda") else "fp32"
    if precision not in PRECISIONS:
        raise JziError(f"precision {precision!r} is unknown; expected auto, fp32 or fp16")
    return device, precision


def auto_candidates(spec: BackendSpec, device: str, precision: str
                    ) -> list[tuple[str, str, str, str | None]]:
    """``(backend, device, precision, reason_to_skip or None)`` in preference order."""
    from jzi_ros.inference.backends.onnxruntime_backend import available_providers

    cuda = _cuda()
    exported = _export_exists(spec)
    providers = available_providers()
    cuda_device = device if device.startswith("cuda") else "cuda"
    gpu_precision = "fp16" if precision == "auto" else precision
    cpu_asked = device == "cpu"
    no_export = "no ONNX export of this checkpoint yet (run `jzi export --model CKPT`)"

    def gpu_reason(extra: str | None) -> str | None:
        if cpu_asked:
            return "device cpu was requested"
        if not cuda:
            return "no CUDA device (torch.cuda.is_available() is False)"
        return extra

    candidates = [
        ("tensorrt", cuda_device, gpu_precision, gpu_reason(
            "tensorrt is not installed" if not _has("tensorrt")
            else None if exported else no_export)),
        ("onnxruntime", cuda_device, "fp32", gpu_reason(
            "onnxruntime has no CUDAExecutionProvider"
            if "CUDAExecutionProvider" not in providers
            else None if exported else no_export)),
        ("torch", cuda_device, gpu_precision, gpu_reason(None)),
        ("onnxruntime", "cpu", "fp32",
         "device cuda was requested" if device.startswith("cuda")
         else "onnxruntime is not installed" if not providers
         else "precision fp16 was requested" if precision == "fp16"
         else None if exported else no_export),
        ("torch", "cpu", "fp32",
         "device cuda was requested" if device.startswith("cuda")
         else "precision fp16 was requested" if precision == "fp16" else None),
    ]
    return candidates


def create_backend(name: str, spec: BackendSpec, device: str = "auto",
                   precision: str = "auto") -> Backend:
    """Build backend ``name`` (or pick one with ``auto``) for ``spec``'s model and table."""
    if name not in BACKENDS:
        raise JziError(f"backend {name!r} is unknown; expected one of {BACKENDS}")
    if name != "auto":
        default = "cuda" if name == "tensorrt" or (name == "torch" and _cuda()) else "cpu"
        device, precision = _resolve(device, precision, default)
        backend = _build(name, dataclasses.replace(spec, device=device, precision=precision))
        LOG.info("backend %s", backend.describe())
        return backend
    skipped = []
    for backend_name, cand_device, cand_precision, reason in auto_candidates(
            spec, device, precision):
        label = f"{backend_name}/{cand_device}/{cand_precision}"
        if reason:
            skipped.append(f"{label}: {reason}")
            continue
        try:
            backend = _build(backend_name, dataclasses.replace(
                spec, device=cand_device, precision=cand_precision))
        except Exception as err:  # a broken runtime must not stop the fallback chain
            skipped.append(f"{label}: failed ({str(err).splitlines()[0]})")
            LOG.warning("backend auto: %s failed: %s", label, err)
            continue
        LOG.info("backend auto: picked %s; skipped: %s", backend.describe(),
                 "; ".join(skipped) or "none")
        backend.auto_skipped = tuple(skipped)
        return backend
    raise JziError("backend auto: no backend could be built: " + "; ".join(skipped))
