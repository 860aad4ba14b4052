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

"""``jzi export``: ONNX files (ground encoder + beam decoder) for ONNX Runtime and TensorRT."""
from __future__ import annotations

import argparse
from pathlib import Path

from jzi_ros.errors import JziError

COMMAND = "export"
HELP = "export a checkpoint to ONNX (ground encoder + fixed-length beam decoder)"
DESCRIPTION = """\
Write encoder.onnx (pixels -> ground token), decoder_b{B}_n{N}.onnx (ground token + map view
table -> top-B paths and log-probabilities, the whole D-step beam search in one static graph)
and export.json (inputs, outputs, preprocessing, weights hash). The ONNX Runtime and TensorRT
backends read this folder; TensorRT engines are built from it on the target and cached next to
it. After exporting, ONNX Runtime (CPU) is checked against PyTorch fp32 on random inputs.
With --retrieval-model instead of --model: frame.onnx (frame -> embedding) of a retrieval
baseline checkpoint, run by its localizer's ONNX Runtime backend (docs/retrieval.md).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path,
                        help="checkpoint (.safetensors) written by jzi train")
    parser.add_argument("--retrieval-model", type=Path, default=None, metavar="PATH",
                        help="instead of --model: a retrieval checkpoint (jzi "
                             "train-retrieval); writes frame.onnx (frame -> embedding), which "
                             "backend auto then runs on ONNX Runtime")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: $XDG_CACHE_HOME/jzi_ros/exports/<model "
                             "hash>/; "
                             "the backends look there by default)")
    parser.add_argument("--beam-width", "--beam", dest="beam", type=int, default=None,
                        help="beam width baked into the decoder graph (default: the "
                             "localizer's default beam width)")
    parser.add_argument("--batch", type=int, default=1,
                        help="frames per call baked into both graphs (static shapes)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the ONNX Runtime vs PyTorch parity check")


def run(args: argparse.Namespace) -> int:
    from jzi_ros.inference.export import default_export_dir, export_model
    from jzi_ros.inference.localizer import DEFAULT_BEAM_WIDTH

    if (args.model is None) == (args.retrieval_model is None):
        raise JziError("give one checkpoint: --model (jzi train) or --retrieval-model (jzi "
                       "train-retrieval)")
    if args.retrieval_model is not None:
        return _export_retrieval(args)
    beam = DEFAULT_BEAM_WIDTH if args.beam is None else args.beam
    out = args.out or default_export_dir(args.model)
    info = export_model(args.model, out, beam, args.batch)
    files = [info["encoder"]["file"]] + [d["file"] for d in info["decoders"].values()]
    print(f"exported {args.model} -> {out}")
    for name in files:
        print(f"  {name:28s} {(out / name).stat().st_size / 1e6:8.2f} MB")
    print(f"  {'export.json':28s} weights {info['weights_hash']}, encoder "
          f"{info['encoder_hash']}, input {info['n_crops']} x 3 x {info['image_size']}^2")
    if args.no_check:
        return 0
    return _check(args.model, out, beam, args.batch)


def _check(model_path: Path, out: Path, beam: int, batch: int) -> int:
    from jzi_ros.evaluation.metrics import fmt
    from jzi_ros.inference.parity import check_export

    try:
        parity = check_export(model_path, out, beam, batch)
    except JziError as err:
        print(f"parity check skipped: {err}")
        return 0
    verdict = "OK" if parity.ok() else "MISMATCH"
    print(f"parity onnxruntime-cpu vs torch fp32: {verdict} (ground cosine "
          f"{parity.ground_cosine_min:.6f}, max |diff| {parity.ground_max_abs_diff:.2e}; "
          f"same paths {parity.same_paths}; log-prob max |diff| "
          f"{parity.log_prob_max_abs_diff:.2e}; every step's prefixes the same "
          f"{parity.same_prefixes}, their log-prob max |diff| "
          f"{fmt(parity.step_max_abs_diff, '.2e')})")
    return 0 if parity.ok() else 1


def _export_retrieval(args: argparse.Namespace) -> int:
    from jzi_ros.inference.retrieval_export import (check_retrieval_export,
                                                    default_retrieval_export_dir,
                                                    export_retrieval)

    out = args.out or default_retrieval_export_dir(args.retrieval_model)
    path = export_retrieval(args.retrieval_model, out)
    print(f"exported {args.retrieval_model} -> {out}")
    print(f"  {path.name:28s} {path.stat().st_size / 1e6:8.2f} MB")
    if args.no_check:
        return 0
    try:
        cosine, diff = check_retrieval_export(args.retrieval_model, path)
    except JziError as err:  # no onnxruntime here: the export is still usable elsewhere
        print(f"parity check skipped: {err}")
        return 0
    ok = cosine > 0.9999 and diff < 1e-3
    print(f"parity onnxruntime-cpu vs torch fp32: {'OK' if ok else 'MISMATCH'} (embedding "
          f"cosine {cosine:.6f}, max |diff| {diff:.2e})")
    return 0 if ok else 1
