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
Resumable training state (optimizer moments, step counters) as a .safetensors file.

Optimizer state is flattened to named tensors plus a JSON header, so resuming never
unpickles anything, like the model checkpoint itself.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import safe_open, SafetensorError
from safetensors.torch import load_file, save_file
import torch

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_path

FORMAT = "jzi-train-state/1"


def save_train_state(path: str | os.PathLike, optimizer: torch.optim.Optimizer,
                     info: dict) -> None:
    """Optimizer tensors + ``info`` (epoch, global step, best metric, ...) atomically."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            key = f"{index}.{name}"
            if torch.is_tensor(value):
                tensors[key] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars[key] = value
    groups = [{k: v for k, v in group.items() if k != "params"} | {"params": group["params"]}
              for group in state["param_groups"]]
    header = {"format": FORMAT, "info": json.dumps(info), "scalars": json.dumps(scalars),
              "param_groups": json.dumps(groups)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def load_train_state(path: str | os.PathLike, optimizer: torch.optim.Optimizer) -> dict:
    """Restore the optimizer from ``path``; returns the stored ``info``."""
    path = Path(path)
    if not path.is_file():
        raise JziError(f"training state {path} does not exist (nothing to --resume; "
                       f"start without --resume)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise JziError(f"training state {path} is not readable ({err})") from None
    if header.get("format") != FORMAT:
        raise JziError(f"training state {path}: format {header.get('format')!r}, "
                       f"expected {FORMAT!r}")
    groups = json.loads(header["param_groups"])
    if [len(g["params"]) for g in groups] != [len(g["params"])
                                              for g in optimizer.param_groups]:
        raise JziError(f"training state {path} was saved for a different set of trainable "
                       f"parameters (changed model or trainable_blocks?); start a new run")
    state: dict = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in json.loads(header["scalars"]).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return json.loads(header["info"])
