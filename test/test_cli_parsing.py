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
The ``jzi`` command line as a new user types it.

One set of localizer options in every command that localizes, negative coordinates, overrides
after options, ``-v`` after the subcommand, honest help text, a closed pipe, early checks.
"""
import argparse
import os
from pathlib import Path
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from jzi_ros.cli.main import build_parser, main, parse, run_command
from jzi_ros.errors import JziError
from jzi_ros.inference.bench import speed_words
from jzi_ros.inference.localizer import LocalizerConfig
from jzi_ros.inference.options import add_localizer_arguments, localizer_config
from jzi_ros.training.manifest import Sample, write_manifest
from support import make_tiny_checkpoint, make_tiny_map, world_of

ROOT = Path(__file__).resolve().parents[1]
LOCALIZING = ("localize", "replay", "bench", "demo")
SHARED = ("--backend", "--device", "--precision", "--beam-width", "--position",
          "--confidence-threshold", "--sigma-floor-m", "--covariance-scale", "--altitude-m",
          "--max-image-side", "--export-dir", "--threads")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _all_parsers():
    for name, child in _subparsers(build_parser()).items():
        if name == "map":
            yield from ((f"map {verb}", p) for verb, p in _subparsers(child).items())
        else:
            yield name, child


@pytest.mark.parametrize("command", LOCALIZING)
def test_every_localizing_command_takes_the_same_localizer_options(command):
    child = _subparsers(build_parser())[command]
    flags = set(child._option_string_actions)
    assert set(SHARED) <= flags, sorted(set(SHARED) - flags)
    # each flag is named after its LocalizerConfig field
    fields = set(vars(LocalizerConfig()))
    for flag in SHARED:
        assert flag[2:].replace("-", "_") in fields


def test_old_flag_names_still_work_and_load_into_the_config():
    args = parse(["localize", "a.png", "--map", "m", "--model", "c", "--beam", "2",
                  "--threshold", "0.3", "--sigma-floor", "7", "--altitude", "12"])
    config = localizer_config(args)
    assert (config.beam_width, config.confidence_threshold) == (2, 0.3)
    assert (config.sigma_floor_m, config.altitude_m, config.threads) == (7.0, 12.0, 1)


def test_loader_names_unknown_keys_and_keeps_defaults_for_none():
    with pytest.raises(JziError, match=r"replay.yaml: unknown key\(s\) \['beam'\]"):
        localizer_config({"beam": 3}, what="replay.yaml")
    config = localizer_config({"beam_width": 2, "device": None})
    assert config.beam_width == 2 and config.device == LocalizerConfig().device
    with pytest.raises(JziError, match="localizer.threads"):
        localizer_config({"threads": -1})


def test_command_defaults_override_the_config_defaults():
    parser = argparse.ArgumentParser()
    add_localizer_arguments(parser, device="cpu")
    assert localizer_config(parser.parse_args([])).device == "cpu"
    with pytest.raises(ValueError, match="beam"):
        add_localizer_arguments(argparse.ArgumentParser(), beam=3)


def test_bench_sweeps_several_values():
    args = parse(["bench", "--preset", "tiny", "--beam-width", "1", "4", "--device", "cpu"])
    assert args.beam_width == [1, 4] and args.device == ["cpu"]


@pytest.mark.parametrize("argv, option, value", [
    (["--center", "-33.86,151.2", "--size", "1000"], "center", "-33.86,151.2"),
    (["--bounds", "-34,150.5,-33.5,151.5"], "bounds", "-34,150.5,-33.5,151.5"),
    (["--center", "-0.5, -78.4", "--size", "1000"], "center", "-0.5, -78.4"),
    (["--bounds=-34,150.5,-33.5,151.5"], "bounds", "-34,150.5,-33.5,151.5"),
])
def test_negative_coordinates_are_values_not_options(argv, option, value):
    args = parse(["map", "build", "ortho.tif", "--out", "m"] + argv)
    assert getattr(args, option) == value


def test_train_overrides_may_follow_options():
    args = parse(["train", "--config", "c.yaml", "map=m", "--no-progress", "manifest=x.csv",
                  "epochs=2"])
    assert args.overrides == ["map=m", "manifest=x.csv", "epochs=2"] and args.no_progress
    with pytest.raises(SystemExit):
        parse(["train", "--config", "c.yaml", "map=m", "--no-such-flag"])
    with pytest.raises(SystemExit):  # other commands take no stray positionals
        parse(["map", "info", "m", "stray"])


@pytest.mark.parametrize("argv", [["-v", "map", "info", "m"], ["map", "info", "m", "-v"],
                                  ["localize", "a.png", "--map", "m", "--model", "c", "-v"]])
def test_verbose_before_or_after_the_subcommand(argv):
    assert parse(argv).verbose == 1
    assert parse(argv + ["-v"]).verbose == 2


def test_help_shows_each_default_once_and_none_on_required_options():
    for name, parser in _all_parsers():
        text = " ".join(parser.format_help().split())
        assert "(default: None)" not in text and "(default: False)" not in text, name
        for entry in re.split(r" (?=-{1,2}[a-z])", text.split("options:", 1)[1]):
            assert entry.count("(default") <= 1, (name, entry)


def test_help_shows_real_defaults():
    text = " ".join(_subparsers(build_parser())["localize"].format_help().split())
    assert "(default: 0.0)" in text and "(default: 4)" in text  # threshold, beam width


def test_bench_says_slower_when_slower():
    assert speed_words(2.5) == "2.50x faster"
    assert speed_words(0.62) == "1.61x slower"
    assert speed_words(None) == "-"


@pytest.mark.slow  # a jzi process
def test_closed_pipe_is_not_a_traceback(tiny_map):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "jzi_ros.cli.main", "map", "info", "--json",
                             str(tiny_map.path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # `| head` that has read enough
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_run_command_maps_a_broken_pipe_to_141(monkeypatch):
    def reader_gone(args):
        raise BrokenPipeError

    monkeypatch.setattr(os, "dup2", lambda *a: None)  # keep pytest's stdout
    assert run_command("jzi x", reader_gone, argparse.Namespace()) == 141


def test_demo_checks_its_options_before_any_work(monkeypatch, tmp_path, capsys):
    import jzi_ros.demo.flow as flow

    def no_work(options):
        raise AssertionError("run_demo must not start with a bad option")

    monkeypatch.setattr(flow, "run_demo", no_work)
    with pytest.raises(SystemExit):
        main(["demo", "--workdir", str(tmp_path), "--beam", "0"])
    assert "expected an integer >= 1" in capsys.readouterr().err
    code = main(["demo", "--workdir", str(tmp_path), "--confidence-threshold", "2"])
    assert code == 2 and "confidence_threshold" in capsys.readouterr().err


def test_calibrate_has_no_progress(tmp_path, capsys):
    pyramid = make_tiny_map(tmp_path, depth=2)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid)
    world, tree = world_of(pyramid), pyramid.tree
    samples = []
    for index, (east, north) in enumerate(np.random.default_rng(0).uniform(-700, 700, (3, 2))):
        image = tmp_path / f"frame{index}.png"
        cv2.imwrite(str(image), world.ground_image(east, north, size=(40, 80))[..., ::-1])
        lat, lon = tree.to_latlon(east, north)
        samples.append(Sample(image, float(lat), float(lon), split="val"))
    write_manifest(tmp_path / "m.csv", samples)
    args = ["localize", "--map", str(pyramid.path), "--model", str(ckpt), "--backend", "torch",
            "--device", "cpu", "--calibrate", str(tmp_path / "m.csv"), "--dry-run"]
    assert main(args) == 0
    assert "calibrating" in capsys.readouterr().err
    assert main(args + ["--no-progress"]) == 0
    assert "calibrating" not in capsys.readouterr().err


def test_replay_refuses_fusion_with_classical_registration(tmp_path, capsys):
    code = main(["replay", str(tmp_path / "bag"), "--map", str(tmp_path / "map"),
                 "--image-topic", "/img", "--gt-topic", "/gt", "--out", str(tmp_path / "r"),
                 "--method", "classical", "--fusion"])
    err = capsys.readouterr().err
    assert code == 2 and "--fusion needs cell probabilities" in err and "classical" in err
    assert "Traceback" not in err
    code = main(["replay", str(tmp_path / "bag"), "--map", str(tmp_path / "map"),
                 "--image-topic", "/img", "--gt-topic", "/gt", "--out", str(tmp_path / "r"),
                 "--method", "classical", "--visual-odometry"])
    assert code == 2 and "--visual-odometry needs cell probabilities" in capsys.readouterr().err
    # retrieval fuses its softmax over the views, but has no beam to seed
    code = main(["replay", str(tmp_path / "bag"), "--map", str(tmp_path / "map"),
                 "--image-topic", "/img", "--gt-topic", "/gt", "--out", str(tmp_path / "r"),
                 "--method", "retrieval", "--fusion", "--seed-beam"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--seed-beam" in err
