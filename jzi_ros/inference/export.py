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
ONNX export of the ground encoder and of the fixed-length beam-search decoder.

Two graphs, both with fully static shapes:

- ``encoder.onnx``: ``pixels float32 [N, n_crops, 3, S, S]`` -> ``ground float32 [N, C]``
  (crops encoded and averaged, exactly ``ZoomModel.encode_ground``).
- ``decoder_b{B}_n{N}.onnx``: ``ground [N, C]`` + ``view_table [V, C]`` -> ``paths int32
  [N, B, D]``, ``log_probs float32 [N, B]``: the whole beam search, D steps unrolled, KV
  cache, view gathers and top-k included; and what every step saw (``root_lp [N, K]``,
  ``prefix_index int32 [N, D-1, B]``, ``prefix_lp [N, D-1, B]``, ``step_lp [N, D-1, B, K]``,
  :class:`~jzi_ros.inference.decode.BeamSearch` ``with_steps``), the measurement the temporal
  filter fuses. The search computes them anyway; without them a robot's backend (TensorRT,
  ONNX Runtime) gave the filter the final beam alone, and the fused random walk on the demo
  flight fell from R@100 m 55 % to 15 % (docs/fusion.md).

Why one fixed-length decoder graph instead of a per-step graph with explicit KV inputs: the
per-step graph would need D engine launches per frame with host-side beam bookkeeping in
between (each launch costs about as much as the tiny decoder itself on a GPU), and a KV input
that grows every step means dynamic shapes / optimisation profiles in TensorRT. The unrolled
graph is static, runs as one TensorRT enqueue, and TensorRT's TopK/Gather/Softmax layers cover
everything in it. The view table is an input (not a constant) so one engine serves every map
with the same tree, and re-embedding a map does not need a rebuild.

``export.json`` describes the files, their inputs/outputs and the preprocessing, and records
a hash of all weights so stale exports are detected.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
import shutil
import warnings

import torch
from torch import nn

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_path, read_json, write_json
from jzi_ros.inference.decode import BeamSearch, effective_beam_width
from jzi_ros.model.zoom import weights_hash

LOG = logging.getLogger(__name__)

EXPORT_JSON = "export.json"
ENCODER_FILE = "encoder.onnx"
FORMAT = "jzi-onnx-export/2"  # 2: the decoder also outputs every step's probabilities
OPSET = 18


def decoder_file(beam_width: int, batch_size: int) -> str:
    return f"decoder_b{beam_width}_n{batch_size}.onnx"


def export_cache_root() -> Path:
    """Return ``$XDG_CACHE_HOME/jzi_ros/exports`` (``~/.cache/...`` without the variable)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jzi_ros" / "exports"


def default_export_dir(model_path: str | Path) -> Path:
    """
    Where backends look for (and write) a checkpoint's ONNX files unless told otherwise.

    A user cache folder keyed by the hash of every weight and the model config (the graphs
    depend on both: crops, depth), never next to the checkpoint: that may be the source tree
    (the shipped demo model) or a read-only site-packages.
    """
    from jzi_ros.model.checkpoint import checkpoint_weights_hash, read_header

    return export_cache_root() / export_key(checkpoint_weights_hash(model_path),
                                            read_header(model_path)["config"])


def export_key(whash: str, config: dict) -> str:
    """Return the cache key of an export: weights hash + a hash of the model config."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    return f"{whash}-{digest}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _intact(out_dir: Path, info: dict, name: str) -> bool:
    """Return True when ``name`` exists with the SHA-256 export.json recorded for it."""
    recorded = info.get("sha256", {}).get(name)
    path = out_dir / name
    if recorded and path.is_file() and file_sha256(path) == recorded:
        return True
    if path.exists() or recorded:
        LOG.warning("ONNX export %s is missing or damaged (size or hash differs from %s); "
                    "exporting it again", path, EXPORT_JSON)
    return False


class EncoderGraph(nn.Module):
    """One encoding method of a model as a graph: ``pixels -> float32 vectors``."""

    def __init__(self, model: nn.Module, method: str = "encode_ground") -> None:
        super().__init__()
        self.model = model
        self.method = method  # encode_ground (zoom), encode_frames (retrieval)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(pixels).float()


# the decoder graph's outputs, in order (the last four: BeamSearch's steps, for fusion)
DECODER_OUTPUTS = ("paths", "log_probs", "root_lp", "prefix_index", "prefix_lp", "step_lp")


class DecoderGraph(nn.Module):
    def __init__(self, model: nn.Module, beam_width: int) -> None:
        super().__init__()
        config = model.config
        self.search = BeamSearch(model, config.grid, config.depth, beam_width, with_steps=True)

    def forward(self, ground: torch.Tensor, view_table: torch.Tensor):
        paths, log_probs, root_lp, prefix_index, prefix_lp, step_lp = self.search(ground,
                                                                                  view_table)
        # int32: TensorRT's native index type
        return (paths.to(torch.int32), log_probs, root_lp, prefix_index.to(torch.int32),
                prefix_lp, step_lp)


@contextlib.contextmanager
def _quiet_exporter():
    """Quiet the exporter: it logs hundreds of INFO lines (and a torchvision warning) per graph."""
    names = ("onnx_ir", "onnxscript", "torch.onnx")
    levels = {name: logging.getLogger(name).level for name in names}
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def onnx_export(module: nn.Module, args: tuple, path: Path, inputs: list[str],
                outputs: list[str]) -> None:
    with atomic_path(path) as tmp, warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        tmp_onnx = tmp.with_suffix(".onnx")
        try:
            program = torch.onnx.export(module, args, dynamo=True, opset_version=OPSET,
                                        input_names=inputs, output_names=outputs,
                                        verbose=False, external_data=False)
            program.save(str(tmp_onnx))
        except Exception as err:  # the exporter raises many types
            tmp_onnx.unlink(missing_ok=True)
            raise JziError(f"ONNX export of {path.name} failed: "
                           f"{str(err).splitlines()[0]}") from err
        tmp_onnx.replace(tmp)


def _io(name: str, shape: list[int], dtype: str) -> dict:
    return {"name": name, "shape": shape, "dtype": dtype}


def _decoder_outputs(batch: int, beam: int, config) -> list[dict]:
    """Describe the decoder graph's outputs for export.json (:data:`DECODER_OUTPUTS`)."""
    k, steps = config.num_actions, max(config.depth - 1, 1)  # depth 1: one padding step
    return [_io("paths", [batch, beam, config.depth], "int32"),
            _io("log_probs", [batch, beam], "float32"),
            _io("root_lp", [batch, k], "float32"),
            _io("prefix_index", [batch, steps, beam], "int32"),
            _io("prefix_lp", [batch, steps, beam], "float32"),
            _io("step_lp", [batch, steps, beam, k], "float32")]


def _preprocessing(config) -> dict:
    from jzi_ros.model.preprocess import IMAGENET_MEAN, IMAGENET_STD

    size = config.encoder.image_size
    return {"input": "uint8 RGB [H, W, 3]",
            "resize": ([size, 2 * size] if config.ground_crops == "split2" else [size, size]),
            "resize_interpolation": "area when shrinking, bilinear when enlarging (OpenCV)",
            "crops": ("left and right square halves" if config.ground_crops == "split2"
                      else "the whole resized image"),
            "scale": 1.0 / 255.0, "mean": IMAGENET_MEAN.tolist(), "std": IMAGENET_STD.tolist(),
            "layout": "[N, n_crops, 3, S, S] float32 RGB"}


def read_export(export_dir: str | Path) -> dict | None:
    path = Path(export_dir) / EXPORT_JSON
    if not path.exists():
        return None
    info = read_json(path, "ONNX export description")
    if info.get("format") != FORMAT:
        LOG.warning("ONNX export in %s is format %r, this jzi_ros writes %r (the decoder now "
                    "also outputs every step's probabilities, which temporal fusion needs): "
                    "exporting again", export_dir, info.get("format"), FORMAT)
        return None
    return info


def export_model(model_path: str | Path, out_dir: str | Path | None = None,
                 beam_width: int = 1, batch_size: int = 1) -> dict:
    """
    Export (or update) the ONNX files for a checkpoint; returns the export description.

    Reuses an existing ``encoder.onnx`` and decoders when the weights hash still matches and
    each file still has the SHA-256 ``export.json`` recorded (a truncated or damaged file is
    exported again). A folder this call created is removed again if the export fails or is
    interrupted.
    """
    out_dir = Path(out_dir) if out_dir else default_export_dir(model_path)
    created = not out_dir.exists()
    try:
        return _export_model(Path(model_path), out_dir, beam_width, batch_size)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _export_model(model_path: Path, out_dir: Path, beam_width: int, batch_size: int) -> dict:
    from jzi_ros.model.checkpoint import load_checkpoint

    if batch_size < 1:
        raise JziError(f"batch_size must be >= 1, got {batch_size}")
    model, _ = load_checkpoint(model_path, device="cpu")
    model = model.float().eval()
    config = model.config
    beam = effective_beam_width(beam_width, config.grid, config.depth)
    whash = weights_hash(model)  # not the file's hash: recalibration keeps exports
    try:
        info = read_export(out_dir)
    except JziError as err:  # a damaged export.json: export again
        LOG.warning("%s; exporting again", err)
        info = None
    if info is None or info.get("weights_hash") != whash or (
            info.get("model_config") != config.to_dict()):
        info = None
    size, crops, width = config.encoder.image_size, config.n_crops, model.embed_dim
    num_views = sum(config.num_actions ** level for level in range(config.depth))
    out_dir.mkdir(parents=True, exist_ok=True)
    if info is not None and not _intact(out_dir, info, ENCODER_FILE):
        info = None
    if info is None:
        LOG.warning("exporting %s to ONNX in %s (once per model; --export-dir chooses the "
                    "folder)", model_path, out_dir)
        onnx_export(EncoderGraph(model), (torch.zeros(batch_size, crops, 3, size, size),),
                    out_dir / ENCODER_FILE, ["pixels"], ["ground"])
        info = {"format": FORMAT, "checkpoint": str(model_path.resolve()),
                "weights_hash": whash, "encoder_hash": model.encoder_hash(),
                "model_config": config.to_dict(), "grid": config.grid, "depth": config.depth,
                "embed_dim": width, "num_views": num_views, "image_size": size,
                "n_crops": crops, "opset": OPSET, "torch": torch.__version__,
                "preprocessing": _preprocessing(config), "encoder": None, "decoders": {},
                "sha256": {ENCODER_FILE: file_sha256(out_dir / ENCODER_FILE)}}
    encoder = info.get("encoder")
    if encoder is None or encoder["inputs"][0]["shape"][0] != batch_size:
        if encoder is not None:  # the encoder graph has a static batch: re-export it
            onnx_export(EncoderGraph(model),
                        (torch.zeros(batch_size, crops, 3, size, size),),
                        out_dir / ENCODER_FILE, ["pixels"], ["ground"])
            info["sha256"][ENCODER_FILE] = file_sha256(out_dir / ENCODER_FILE)
        info["encoder"] = {"file": ENCODER_FILE, "batch_size": batch_size,
                           "inputs": [_io("pixels", [batch_size, crops, 3, size, size],
                                          "float32")],
                           "outputs": [_io("ground", [batch_size, width], "float32")]}
    key, name = f"b{beam}_n{batch_size}", decoder_file(beam, batch_size)
    if key not in info["decoders"] or not _intact(out_dir, info, name):
        LOG.info("exporting the beam-%d decoder to %s", beam, out_dir)
        generator = torch.Generator().manual_seed(0)
        example = (torch.randn(batch_size, width, generator=generator),
                   torch.randn(num_views, width, generator=generator))
        onnx_export(DecoderGraph(model, beam), example, out_dir / name,
                    ["ground", "view_table"], list(DECODER_OUTPUTS))
        info["sha256"][name] = file_sha256(out_dir / name)
        info["decoders"][key] = {
            "file": name, "beam_width": beam,
            "batch_size": batch_size,
            "inputs": [_io("ground", [batch_size, width], "float32"),
                       _io("view_table", [num_views, width], "float32")],
            "outputs": _decoder_outputs(batch_size, beam, config)}
    write_json(out_dir / EXPORT_JSON, info)
    return info


def ensure_export(model_path: str | Path, export_dir: str | Path | None, beam_width: int,
                  batch_size: int) -> tuple[Path, Path, dict]:
    """Paths of an up-to-date (encoder, decoder) pair, exporting what is missing or stale."""
    out_dir = Path(export_dir) if export_dir else default_export_dir(model_path)
    info = export_model(model_path, out_dir, beam_width, batch_size)
    key = f"b{effective_beam_width(beam_width, info['grid'], info['depth'])}_n{batch_size}"
    return out_dir / info["encoder"]["file"], out_dir / info["decoders"][key]["file"], info
