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
The retrieval baseline's frame encoder as one ONNX graph, and its ONNX Runtime session.

A retrieval frame is one encoder pass and a matrix product with the view table; in eager
torch on one CPU thread the encoder was 6.5 ms of the demo's 9 ms frame. ONNX Runtime runs
the same network in a fraction of that (the zoom's exported encoder: 1.4 ms against 4.7 ms in
traced torch), and it is the runtime a robot without torch may have. One static graph,
``frame.onnx``: ``pixels float32 [1, n_crops, 3, S, S]`` -> ``embedding float32 [1, E]``
(``RetrievalModel.encode_frames``: crops encoded, averaged, projected and normalised). The map
views are embedded at start-up in torch as before (once, batched); the similarity search stays
a numpy product.

The folder is the zoom's export cache (:func:`~jzi_ros.inference.export.export_cache_root`),
keyed the same way (every weight's hash and the config), with its own description
``retrieval_export.json`` (format, weights hash, config, the file's SHA-256), so a stale or
damaged file is exported again and an ``export_dir`` shared with a zoom export holds both.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from jzi_ros.errors import JziError
from jzi_ros.files import read_json, write_json
from jzi_ros.inference.export import (EncoderGraph, export_cache_root, export_key,
                                      file_sha256, onnx_export, OPSET)
from jzi_ros.model.checkpoint import read_format_header, RETRIEVAL_FORMAT

LOG = logging.getLogger(__name__)

FORMAT = "jzi-retrieval-onnx/1"
FRAME_FILE = "frame.onnx"
EXPORT_JSON = "retrieval_export.json"


def default_retrieval_export_dir(model_path: str | Path) -> Path:
    """Return the cache folder of a retrieval checkpoint's export (weights hash + config)."""
    return _export_dir(read_format_header(model_path, RETRIEVAL_FORMAT), None)


def _export_dir(header: dict[str, str], export_dir: str | Path | None) -> Path:
    """Return ``export_dir``, or the cache folder keyed by the checkpoint ``header``."""
    if export_dir:
        return Path(export_dir)
    return export_cache_root() / export_key(header["weights_hash"], json.loads(header["config"]))


def up_to_date_export(model_path: str | Path, export_dir: str | Path | None) -> Path | None:
    """
    Return ``frame.onnx`` of ``model_path`` in ``export_dir`` (or the cache) if up to date.

    Up to date: its description names this format and the checkpoint's weights hash, and the
    file has the SHA-256 recorded there. None otherwise (missing, stale or damaged).
    """
    header = read_format_header(model_path, RETRIEVAL_FORMAT)
    out_dir = _export_dir(header, export_dir)
    path, frame = out_dir / EXPORT_JSON, out_dir / FRAME_FILE
    if not path.is_file() or not frame.is_file():
        return None
    try:
        info = read_json(path, "retrieval ONNX export description")
    except JziError:
        return None
    fresh = (info.get("format") == FORMAT and info.get("weights_hash") == header["weights_hash"]
             and info.get("sha256") == file_sha256(frame))
    return frame if fresh else None


def export_retrieval(model_path: str | Path, export_dir: str | Path | None = None) -> Path:
    """
    Return the path of an up-to-date ``frame.onnx`` for ``model_path``, exporting it if needed.

    A missing, stale (other weights) or damaged (SHA-256 differs) export is written again,
    atomically; the weights are verified against the checkpoint's hash on loading.
    """
    from jzi_ros.model.retrieval import load_retrieval

    existing = up_to_date_export(model_path, export_dir)
    if existing is not None:
        return existing
    header = read_format_header(model_path, RETRIEVAL_FORMAT)
    out_dir = _export_dir(header, export_dir)
    model, _ = load_retrieval(model_path, "cpu")
    model = model.float().eval()
    config = model.config.model
    size, crops = config.encoder.image_size, config.n_crops
    out_dir.mkdir(parents=True, exist_ok=True)
    LOG.warning("exporting retrieval model %s to ONNX in %s (once per model; export_dir "
                "chooses the folder)", model_path, out_dir)
    onnx_export(EncoderGraph(model, "encode_frames"), (torch.zeros(1, crops, 3, size, size),),
                out_dir / FRAME_FILE, ["pixels"], ["embedding"])
    write_json(out_dir / EXPORT_JSON, {
        "format": FORMAT, "checkpoint": str(Path(model_path).resolve()),
        "weights_hash": header["weights_hash"], "config": model.config.to_dict(),
        "opset": OPSET, "torch": torch.__version__,
        "inputs": [{"name": "pixels", "shape": [1, crops, 3, size, size], "dtype": "float32"}],
        "outputs": [{"name": "embedding", "shape": [1, model.config.embed_dim],
                     "dtype": "float32"}],
        "sha256": file_sha256(out_dir / FRAME_FILE)})
    return out_dir / FRAME_FILE


class OnnxFrameEncoder:
    """The exported frame encoder in an ONNX Runtime session (CPU, or the CUDA provider)."""

    def __init__(self, onnx_path: Path, device: str, threads: int) -> None:
        """Open ``onnx_path`` on ``device`` (cpu, cuda or cuda:N) with ``threads`` intra-op."""
        from jzi_ros.inference.backends.onnxruntime_backend import open_session

        self.session = open_session(onnx_path, device, threads,
                                    "retrieval backend onnxruntime")
        self.provider = self.session.get_providers()[0]

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Return ``[1, E]`` float32 unit embeddings of ``pixels [1, n_crops, 3, S, S]``."""
        return self.session.run(["embedding"], {"pixels": np.ascontiguousarray(
            pixels, np.float32)})[0]


def check_retrieval_export(model_path: str | Path, onnx_path: Path, frames: int = 4,
                           seed: int = 0) -> tuple[float, float]:
    """
    Compare ONNX Runtime (CPU) with torch fp32 on ``frames`` random inputs.

    Returns (smallest cosine between the two embeddings, largest absolute difference).
    """
    from jzi_ros.model.retrieval import load_retrieval

    model, _ = load_retrieval(model_path, "cpu")
    config = model.config.model
    shape = (1, config.n_crops, 3, config.encoder.image_size, config.encoder.image_size)
    session = OnnxFrameEncoder(onnx_path, "cpu", 1)
    generator = torch.Generator().manual_seed(seed)
    cosines, diffs = [], []
    with torch.no_grad():
        for _ in range(frames):
            pixels = torch.randn(shape, generator=generator)
            expected = model.encode_frames(pixels).float().numpy()[0]
            got = session(pixels.numpy())[0]
            cosines.append(float(expected @ got / (np.linalg.norm(expected)
                                                   * np.linalg.norm(got))))
            diffs.append(float(np.abs(expected - got).max()))
    return min(cosines), max(diffs)
