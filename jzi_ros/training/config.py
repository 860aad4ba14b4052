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
Training configuration: a YAML file -> :class:`TrainConfig`, plus ``key=value`` overrides.

Relative paths in the YAML file are relative to the file; relative paths given as overrides
are relative to the current directory. Dotted keys reach into the model config
(``model.encoder.trainable_blocks=0``). A ``render:`` block (see
:class:`jzi_ros.training.render.RenderSpec`) trains on views rendered on the fly from rasters
of the map's area; the manifest then only supplies validation rows (and may be omitted).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import os
from pathlib import Path
from typing import Any

import yaml

from jzi_ros.config import from_mapping
from jzi_ros.errors import JziError
from jzi_ros.evaluation.metrics import DEFAULT_RECALL_M
from jzi_ros.model.config import deep_merge, ModelConfig, PRESETS

PATH_FIELDS = ("manifest", "map", "out", "init")
WEIGHTS_KEY = ["model", "encoder", "weights"]
AMP_MODES = ("auto", "bf16", "fp16", "off")
FLOAT_FIELDS = ("lr", "encoder_lr_scale", "weight_decay", "warmup", "label_smoothing",
                "grad_clip", "val_fraction")
METRICS = tuple(f"recall@{d:g}m" for d in DEFAULT_RECALL_M) + ("exact", "exact@1",
                                                               "val_loss")


@dataclass
class TrainConfig:
    """Everything one training run needs (annotated examples: jzi_ros/training/configs/)."""

    manifest: str = ""
    map: str = ""  # noqa: A003 (the config file's key)
    out: str = ""
    model_preset: str = "demo"
    model: dict = field(default_factory=dict)
    init: str | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    encoder_lr_scale: float = 1.0
    weight_decay: float = 0.05
    warmup: float = 0.05
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    amp: str = "auto"
    device: str = "auto"
    num_workers: int = 2
    seed: int = 0
    val_every: int = 1
    val_fraction: float = 0.1
    val_batch_size: int = 64
    # the validation loss moves every epoch; recall@50m on a small val set is often flat
    best_metric: str = "val_loss"
    augment: bool = True
    max_steps_per_epoch: int | None = None
    max_steps: int | None = None  # budget: stop after this many steps in all
    max_minutes: float | None = None  # budget: stop (validate, save) after this wall time
    embed_batch_size: int = 64
    log_every: int = 10
    render: dict | None = None

    def __post_init__(self) -> None:
        for name in FLOAT_FIELDS:
            value = getattr(self, name)
            # YAML reads '3e-4' (no dot in the mantissa) as a string
            try:
                if isinstance(value, bool):
                    raise ValueError
                setattr(self, name, float(value))
            except (TypeError, ValueError):
                raise JziError(f"training config: {name} must be a number, "
                               f"got {value!r}") from None
        for name in ("manifest", "map", "out"):
            if name == "manifest" and self.render is not None:
                continue  # rendered views replace the manifest's training rows
            if not getattr(self, name):
                raise JziError(f"training config: '{name}' is required")
        if self.model_preset not in PRESETS:
            raise JziError(f"training config: model_preset {self.model_preset!r} is unknown; "
                           f"expected one of {sorted(PRESETS)}")
        if not isinstance(self.model, dict):
            raise JziError(f"training config: 'model' must be a mapping of overrides, "
                           f"got {self.model!r}")
        for name in ("epochs", "batch_size", "val_every", "val_batch_size", "embed_batch_size",
                     "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise JziError(f"training config: {name} must be an integer >= 1, "
                               f"got {value!r}")
        if self.num_workers < 0:
            raise JziError(f"training config: num_workers must be >= 0, got {self.num_workers}")
        for name, low, high in (("lr", 0.0, 1.0), ("warmup", 0.0, 1.0),
                                ("label_smoothing", 0.0, 1.0), ("val_fraction", 0.0, 1.0)):
            value = getattr(self, name)
            if not low <= value < high:
                raise JziError(f"training config: {name} must be in [{low}, {high}), "
                               f"got {value!r}")
        if self.lr <= 0:
            raise JziError(f"training config: lr must be > 0, got {self.lr}")
        if self.amp is False:  # YAML 1.1 reads an unquoted `amp: off` (or amp=off) as false
            self.amp = "off"
        if self.amp not in AMP_MODES:
            raise JziError(f"training config: amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.best_metric not in METRICS:
            raise JziError(f"training config: best_metric must be one of {METRICS}, "
                           f"got {self.best_metric!r}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise JziError("training config: max_steps_per_epoch must be null or >= 1")
        if self.max_steps is not None and (not isinstance(self.max_steps, int)
                                           or self.max_steps < 1):
            raise JziError(f"training config: max_steps must be null or an integer >= 1, "
                           f"got {self.max_steps!r}")
        if self.max_minutes is not None and (isinstance(self.max_minutes, bool) or not (
                isinstance(self.max_minutes, (int, float)) and self.max_minutes > 0)):
            raise JziError(f"training config: max_minutes must be null or > 0, "
                           f"got {self.max_minutes!r}")
        self.model_config()  # validate the model overrides now, not after data loading
        if self.render is not None:
            self.render_spec()

    def render_spec(self) -> "RenderSpec | None":  # noqa: F821 (lazy import)
        """Return the validated ``render:`` block, or None when training reads the manifest."""
        if self.render is None:
            return None
        from jzi_ros.training.render import RenderSpec
        return RenderSpec.from_dict(self.render)

    def model_config(self) -> ModelConfig:
        return ModelConfig.preset(self.model_preset, **self.model)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'model.encoder.trainable_blocks=0'`` -> (['model', 'encoder', 'trainable_blocks'], 0)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise JziError(f"override {text!r}: expected key=value, e.g. epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise JziError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key.strip().split("."), value


def _resolve(value: Any, base: Path) -> Any:
    if value in (None, ""):
        return value
    return str((base / os.path.expanduser(str(value))).resolve())


def load_train_config(path: str | os.PathLike | None, overrides: list[str] = ()
                      ) -> TrainConfig:
    """Read the YAML file (if any), apply ``key=value`` overrides, validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise JziError(f"training config {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise JziError(f"training config {path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise JziError(f"training config {path}: expected a mapping at the top level")
        for name in PATH_FIELDS:
            if name in data:
                data[name] = _resolve(data[name], path.parent)
        render = data.get("render")
        if isinstance(render, dict) and render.get("sources"):
            sources = render["sources"]
            render["sources"] = [_resolve(s, path.parent) for s in (
                [sources] if isinstance(sources, str) else sources)]
        encoder = (data.get("model") or {}).get("encoder")
        if isinstance(encoder, dict) and encoder.get("weights"):
            encoder["weights"] = _resolve(encoder["weights"], path.parent)
    for text in overrides:
        keys, value = parse_override(text)
        is_path = (len(keys) == 1 and keys[0] in PATH_FIELDS) or keys == WEIGHTS_KEY
        if is_path:
            value = _resolve(value, Path.cwd())
        elif keys == ["render", "sources"]:
            values = [value] if isinstance(value, str) else value or []
            value = [_resolve(v, Path.cwd()) for v in values]
        nested: Any = value
        for key in reversed(keys[1:]):
            nested = {key: nested}
        if len(keys) > 1:
            if not isinstance(data.get(keys[0], {}), dict):
                raise JziError(f"override {text!r}: {keys[0]} is not a mapping")
            data[keys[0]] = deep_merge(data.get(keys[0]) or {}, nested)
        else:
            data[keys[0]] = nested
    where = f"training config {path}" if path else "training overrides"
    return from_mapping(TrainConfig, data, where)
