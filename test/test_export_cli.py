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


"""``jzi export`` through the command line: files, the parity verdict, the exit code."""
import json

import pytest

from jzi_ros.cli.main import main
from jzi_ros.inference.export import EXPORT_JSON
from jzi_ros.inference.localizer import Localizer, LocalizerConfig
from jzi_ros.inference.parity import check_export
from support import make_tiny_checkpoint, make_tiny_map

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.slow  # one ONNX export


def test_export_command_writes_the_folder_and_checks_parity(tmp_path, capsys):
    pyramid = make_tiny_map(tmp_path, depth=2)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid, sharpen=True)
    out = tmp_path / "onnx"
    assert main(["export", "--model", str(ckpt), "--out", str(out), "--beam-width", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"exported {ckpt} -> {out}" in printed
    assert "parity onnxruntime-cpu vs torch fp32: OK" in printed
    info = json.loads((out / EXPORT_JSON).read_text())
    assert (out / info["encoder"]["file"]).is_file() and "b3_n1" in info["decoders"]
    # the library harness the command prints
    parity = check_export(ckpt, out, 3)
    assert parity.ok() and parity.frames == 2
    # the thread setting reaches ONNX Runtime's own pool
    config = LocalizerConfig(backend="onnxruntime", device="cpu", beam_width=3, threads=1,
                             export_dir=str(out))
    localizer = Localizer.from_paths(pyramid.path, ckpt, config)
    assert localizer.backend.encoder.get_session_options().intra_op_num_threads == 1
    localizer.close()
    # a bad value is one line, exit code 2, and nothing is written
    assert main(["export", "--model", str(tmp_path / "missing.safetensors"), "--out",
                 str(tmp_path / "x")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
