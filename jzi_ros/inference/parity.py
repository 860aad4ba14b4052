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
Numerical parity of a backend against the PyTorch fp32 reference.

Same random pixels and view table through both: the ground tokens are compared by cosine
similarity (the FP16 criterion, >= 0.999) and max abs difference, the beams by exact paths and
max log-probability difference, and what every step saw (the temporal filter's measurement:
the beam prefixes exactly, their and their children's log-probabilities by max difference).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from jzi_ros.inference.backends.base import Backend, BackendSpec
from jzi_ros.inference.decode import BeamSearch, BeamSteps


@dataclass
class Parity:
    frames: int
    ground_cosine_min: float
    ground_max_abs_diff: float
    same_paths: bool  # every beam path identical, in order
    same_top_path: bool
    log_prob_max_abs_diff: float
    # every step's prefixes identical / max |diff| of root_lp, prefix_lp, step_lp; None where
    # the backend's decode_steps gives nothing
    same_prefixes: bool | None = None
    step_max_abs_diff: float | None = None

    def ok(self, fp16: bool = False) -> bool:
        """
        Return whether the outputs agree within the tolerance for the precision.

        fp32: identical paths and log-probs within 1e-3, and so every step where the backend
        gives them; fp16: cosine >= 0.999 and the same top path (lower-ranked beams may swap
        when their scores are near-ties).
        """
        if fp16:
            return self.ground_cosine_min >= 0.999 and self.same_top_path
        steps_ok = self.same_prefixes is None or (self.same_prefixes
                                                  and self.step_max_abs_diff < 1e-3)
        return (self.same_paths and self.ground_cosine_min >= 0.99999
                and self.log_prob_max_abs_diff < 1e-3 and steps_ok)

    def to_dict(self) -> dict:
        return asdict(self)


def compare(backend: Backend, model: torch.nn.Module, view_table: np.ndarray, beam_width: int,
            frames: int = 4, seed: int = 0) -> Parity:
    """Run ``frames`` random inputs through ``backend`` and the fp32 ``model`` (CPU)."""
    config = model.config
    size = config.encoder.image_size
    rng = np.random.default_rng(seed)
    # random images through the real normalisation range, not white noise in N(0, 1)
    pixels = rng.uniform(-2.0, 2.5, (frames, config.n_crops, 3, size, size)).astype(np.float32)
    model = model.float().eval().cpu()
    table = torch.as_tensor(np.asarray(view_table, np.float32))
    with torch.inference_mode():
        reference = model.encode_ground(torch.from_numpy(pixels))
        search = BeamSearch(model, config.grid, config.depth, beam_width, with_steps=True)
        ref_paths, ref_lp, *ref_steps = search(reference, table)
    ground = backend.encode(pixels)
    # decode the reference tokens so the beam comparison isolates the decoder
    paths, log_probs = backend.decode(reference.numpy())
    steps = backend.decode_steps(reference.numpy())
    same_prefixes = step_diff = None
    if steps is not None:
        ref_steps = BeamSteps.split(*ref_steps)
        same_prefixes = all(np.array_equal(a.prefix_index, b.prefix_index)
                            for a, b in zip(steps[2], ref_steps))
        step_diff = max(float(np.abs(getattr(a, name) - getattr(b, name)).max())
                        for a, b in zip(steps[2], ref_steps)
                        for name in ("root_lp", "prefix_lp", "step_lp"))
    ref = reference.numpy()
    cosine = (ground * ref).sum(1) / (np.linalg.norm(ground, axis=1) * np.linalg.norm(ref, axis=1)
                                      + 1e-12)
    return Parity(frames=frames, ground_cosine_min=float(cosine.min()),
                  ground_max_abs_diff=float(np.abs(ground - ref).max()),
                  same_paths=bool(np.array_equal(paths, ref_paths.numpy())),
                  same_top_path=bool(np.array_equal(paths[:, 0], ref_paths[:, 0].numpy())),
                  log_prob_max_abs_diff=float(np.abs(log_probs - ref_lp.numpy()).max()),
                  same_prefixes=same_prefixes, step_max_abs_diff=step_diff)


def check_export(model_path: str | Path, export_dir: str | Path, beam_width: int,
                 batch_size: int = 1) -> Parity:
    """
    Compare an ONNX export (ONNX Runtime, CPU, fp32) with its checkpoint in PyTorch fp32.

    Random view table and pixels; JziError when ONNX Runtime cannot load the export.
    """
    from jzi_ros.inference.backends import create_backend
    from jzi_ros.model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(model_path)
    config = model.config
    views = sum(config.num_actions ** level for level in range(config.depth))
    table = np.random.default_rng(0).standard_normal((views, model.embed_dim)).astype(np.float16)
    spec = BackendSpec(str(model_path), table, config.grid, config.depth, beam_width,
                       batch_size=batch_size, export_dir=str(export_dir))
    backend = create_backend("onnxruntime", spec, "cpu", "fp32")
    try:
        return compare(backend, model, table, beam_width, frames=max(batch_size, 2))
    finally:
        backend.close()
