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
One set of localizer options for every command that localizes, and their one loader.

``jzi localize``, ``replay``, ``bench`` and ``demo`` take the same flags with the same names;
each flag is named after its :class:`LocalizerConfig` field (``--beam-width`` is
``beam_width``), as is the node's parameter where the node has one, so a setting reads the
same in a command line, a params file and the docs. A new LocalizerConfig setting becomes a
flag here, once. (``threads`` is a process setting every ``jzi`` command takes; see
jzi_ros.cli.add_common_arguments.)

The choice tuples live where their meaning is defined (``BACKENDS`` with the backends,
``POSITION_MODES`` with the posterior, ``PRECISIONS`` with the backend spec) and are
re-exported here for the front ends.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Mapping

from jzi_ros.config import from_mapping
from jzi_ros.inference.backends import BACKENDS
from jzi_ros.inference.backends.base import CPU_GRAPHS, PRECISIONS
from jzi_ros.inference.localizer import LocalizerConfig
from jzi_ros.inference.posterior import POSITION_MODES

__all__ = ["add_localizer_arguments", "BACKENDS", "localizer_config",
           "POSITION_MODES", "PRECISIONS", "SWEEPABLE"]

# options `jzi bench` may take several values of (it times every combination)
SWEEPABLE = ("backend", "device", "precision", "beam_width", "cpu_graph")

_FIELDS = {f.name for f in dataclasses.fields(LocalizerConfig)}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _options() -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Return (flags, add_argument keywords) of every option; dest = the config field."""
    return [
        (("--backend",), {"choices": BACKENDS,
                          "help": "inference runtime; auto: TensorRT > ONNX Runtime CUDA > "
                                  "torch CUDA > ONNX Runtime CPU > torch CPU"}),
        (("--device",), {"help": "auto, cpu, cuda or cuda:N"}),
        (("--precision",), {"choices": ("auto",) + PRECISIONS,
                            "help": "auto: fp16 on CUDA, fp32 on CPU"}),
        (("--beam-width", "--beam"), {"type": _positive_int,
                                      "help": "beam width (1 = the paper's greedy decoding)"}),
        (("--position",), {"choices": POSITION_MODES,
                           "help": "top: centre of the best cell (paper); mean: beam-weighted "
                                   "mean"}),
        (("--confidence-threshold", "--threshold"), {
            "type": float, "help": "confidence (top path probability, 0..1) below which a "
                                   "frame is NO_FIX; unset: the gate `jzi localize "
                                   "--calibrate` stored in the checkpoint; 0 disables"}),
        (("--sigma-floor-m", "--sigma-floor"), {
            "type": float, "help": "minimum 1-sigma of the horizontal covariance, metres"}),
        (("--covariance-scale",), {
            "type": float, "help": "multiply the covariance by this instead of the "
                                   "checkpoint's calibrated scale"}),
        (("--altitude-m", "--altitude"), {"type": float,
                                          "help": "altitude reported with every fix, metres"}),
        (("--cpu-graph",), {"choices": CPU_GRAPHS,
                            "help": "torch on CPU: jit traces and freezes the networks (same "
                                    "results, faster; default), aoti compiles them ahead of "
                                    "time (the fastest torch mode, the same results; tens "
                                    "of seconds per graph the first time, then cached in "
                                    "EXPORT_DIR/aoti or "
                                    "~/.cache/jzi_ros/aoti), compile uses torch.compile, "
                                    "eager runs them as written"}),
        (("--max-image-side",), {"type": int, "help": "larger images are subsampled first"}),
        (("--export-dir",), {"help": "ONNX/engine folder of the onnxruntime/tensorrt backends "
                                     "(default: $XDG_CACHE_HOME/jzi_ros/exports/<model "
                                     "hash>/); --cpu-graph aoti keeps its packages in its "
                                     "aoti/ subfolder"}),
    ]


def add_localizer_arguments(parser: argparse.ArgumentParser, *, sweep: bool = False,
                            **defaults: Any) -> argparse._ArgumentGroup:
    """
    Add the localizer options to ``parser`` (in a group "localizer").

    ``defaults`` overrides LocalizerConfig defaults for this command (the demo runs on the
    CPU); with ``sweep`` the :data:`SWEEPABLE` options take one or more values.
    """
    reject = set(defaults) - _FIELDS
    if reject:
        raise ValueError(f"add_localizer_arguments: unknown default(s) {sorted(reject)}")
    config = dataclasses.replace(LocalizerConfig(warmup_frames=0), **defaults)
    about = ("the same options in every command that localizes, named after LocalizerConfig "
             "fields and the node's parameters")
    if sweep:
        about += (f"; {', '.join(SWEEPABLE)} take several values (every combination is timed; "
                  "backend auto: every installed one; device auto: cpu and cuda)")
    group = parser.add_argument_group("localizer", about)
    for flags, kwargs in _options():
        dest = flags[0][2:].replace("-", "_")
        value = getattr(config, dest)
        if sweep and dest in SWEEPABLE:
            kwargs = {**kwargs, "nargs": "+"}
            value = [value]
        group.add_argument(*flags, dest=dest, default=value, metavar=dest.upper()
                           if "choices" not in kwargs else None, **kwargs)
    return group


def localizer_config(values: Mapping[str, Any] | argparse.Namespace, *,
                     what: str = "localizer options", **overrides: Any) -> LocalizerConfig:
    """
    Build a validated LocalizerConfig from a mapping or parsed arguments.

    A mapping must hold only LocalizerConfig fields (unknown keys are named in the error); a
    Namespace contributes the attributes named like a field and ignores the command's others.
    ``None`` values keep the defaults.
    """
    if isinstance(values, argparse.Namespace):
        values = {k: v for k, v in vars(values).items() if k in _FIELDS}
    data = {k: v for k, v in {**values, **overrides}.items() if v is not None}
    return from_mapping(LocalizerConfig, data, what)
