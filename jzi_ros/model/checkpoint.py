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
Checkpoints: one .safetensors file; the model config and metadata live as JSON in its header.

Loading never unpickles anything: the config rebuilds the network, safetensors fills it.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from safetensors import safe_open, SafetensorError
from safetensors.torch import load_file, save_file
import torch

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_path
from jzi_ros.model.config import ModelConfig
from jzi_ros.model.zoom import weights_hash, ZoomModel

LOG = logging.getLogger(__name__)
FORMAT = "jzi-zoom-model/1"
# the retrieval baseline's checkpoints (jzi_ros.model.retrieval): same container, other network
RETRIEVAL_FORMAT = "jzi-retrieval-model/1"
# per format: what writes it, what such a file is and where it goes (a refusal names them)
_KINDS = {FORMAT: ("a file written by jzi train", "a zoom model (jzi train)",
                   "pass it as --model"),
          RETRIEVAL_FORMAT: ("a file written by jzi train-retrieval",
                             "a retrieval baseline model (jzi train-retrieval)",
                             "pass it as --retrieval-model with --method retrieval")}


def _header(model: ZoomModel, metadata: dict) -> dict[str, str]:
    return {"format": FORMAT, "config": json.dumps(model.config.to_dict()),
            "encoder_hash": model.encoder_hash(), "weights_hash": weights_hash(model),
            "metadata": json.dumps(metadata)}


def module_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return ``model``'s state as CPU tensors that safetensors can store."""
    # clone: safetensors refuses tensors that share storage, and must not see device memory
    return {name: t.detach().to("cpu").contiguous().clone()
            for name, t in model.state_dict().items()}


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor],
                      header: dict[str, str]) -> None:
    """Write ``tensors`` with the string ``header`` atomically (fsynced before the rename)."""
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())


def _raw_header(path: Path) -> dict[str, str]:
    """Return the string header of a .safetensors file; JziError when there is none."""
    if not path.is_file():
        raise JziError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise JziError(f"checkpoint {path} is not a readable .safetensors file ({err})") from None


def checkpoint_format(path: str | os.PathLike) -> str | None:
    """Return the ``format`` a checkpoint's header names (FORMAT, RETRIEVAL_FORMAT, ...)."""
    return _raw_header(Path(path)).get("format")


def read_format_header(path: str | os.PathLike, expected: str) -> dict[str, str]:
    """
    Return the raw string header of a checkpoint of format ``expected``; JziError otherwise.

    A checkpoint of the other kind (a retrieval model where a zoom model is expected, or the
    reverse) is refused with what it is and where it goes.
    """
    path = Path(path)
    header = _raw_header(path)
    found = header.get("format")
    if found != expected:
        hint = ""
        if found in _KINDS:
            _, what, use = _KINDS[found]
            hint = f"; this file is {what}: {use}"
        raise JziError(f"checkpoint {path}: header format is {found!r}, "
                       f"expected {expected!r} ({_KINDS[expected][0]}){hint}")
    return header


def save_checkpoint(path: str | os.PathLike, model: ZoomModel,
                    metadata: dict | None = None) -> None:
    """Write ``model`` (weights, config, encoder hash, JSON-able ``metadata``) atomically."""
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata)
    except TypeError as err:
        raise JziError(f"checkpoint metadata must be JSON-serialisable: {err}") from None
    write_safetensors(Path(path), module_tensors(model), _header(model, metadata))


def read_header(path: str | os.PathLike) -> dict:
    """
    Return the header without loading weights.

    ``{"config": dict, "encoder_hash": str, "weights_hash": str | None, "metadata": dict}``;
    ``weights_hash`` (every tensor) is None in checkpoints written before it existed.
    """
    path = Path(path)
    header = read_format_header(path, FORMAT)
    try:
        return {"config": json.loads(header["config"]),
                "encoder_hash": header["encoder_hash"],
                "weights_hash": header.get("weights_hash"),
                "metadata": json.loads(header.get("metadata", "{}"))}
    except (KeyError, json.JSONDecodeError) as err:
        raise JziError(f"checkpoint {path}: corrupt header ({err})") from None


def load_weights_into(model: torch.nn.Module, path: Path, what: str) -> None:
    """
    Fill ``model`` with the tensors of the safetensors file ``path`` (strict; no pickle).

    JziError, naming ``what`` and the file, when the file cannot be read or its tensors do not
    fit the model its own header describes.
    """
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise JziError(f"{what} {path}: cannot read weights ({err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise JziError(f"{what} {path}: weights do not match its config "
                       f"({first[0].strip()})") from None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> tuple[ZoomModel, dict]:
    """
    Rebuild the model from its config and weights.

    Returns ``(model in eval mode, metadata)``. The stored encoder hash is re-checked so a
    corrupted file cannot silently be paired with a map embedding table made by another encoder.
    """
    path = Path(path)
    header = read_header(path)
    config = ModelConfig.from_dict(header["config"])
    model = ZoomModel(config, load_weights=False)
    load_weights_into(model, path, "checkpoint")
    if model.encoder_hash() != header["encoder_hash"]:
        raise JziError(f"checkpoint {path}: encoder weights hash to {model.encoder_hash()}, "
                       f"header says {header['encoder_hash']} (file corrupt?)")
    if header["weights_hash"] is None:
        LOG.warning("checkpoint %s has no weights hash (written by an older jzi_ros): only its "
                    "encoder is verified; `jzi localize --calibrate` or re-saving adds it", path)
    elif weights_hash(model) != header["weights_hash"]:
        raise JziError(f"checkpoint {path}: its weights hash to {weights_hash(model)}, the "
                       f"header says {header['weights_hash']}: the file is corrupt (flipped "
                       f"or overwritten bytes); restore it from a good copy or retrain")
    model.eval()
    return model.to(device), header["metadata"]


def update_checkpoint_metadata(path: str | os.PathLike, **metadata) -> dict:
    """Merge ``metadata`` into the checkpoint's metadata (atomic rewrite); returns the result."""
    path = Path(path)
    header = read_header(path)
    merged = {**header["metadata"], **metadata}
    try:
        json.dumps(merged)
    except TypeError as err:
        raise JziError(f"checkpoint metadata must be JSON-serialisable: {err}") from None
    # through the model: the weights are verified (and an older file gains its weights hash)
    model, _ = load_checkpoint(path)
    write_safetensors(path, module_tensors(model), {**_header(model, merged),
                                                    "config": json.dumps(header["config"])})
    return merged


def checkpoint_weights_hash(path: str | os.PathLike) -> str:
    """Return the hash of every weight of a checkpoint (from its header when it has one)."""
    stored = read_header(path)["weights_hash"]
    if stored:
        return stored
    model, _ = load_checkpoint(path)
    return weights_hash(model)
