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

"""``jzi``: entry point that gathers the subcommand modules of ``jzi_ros.cli``."""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from types import ModuleType
from typing import Sequence

from jzi_ros import __version__
from jzi_ros.errors import JziError

# The order subcommands are listed in --help (the data path, top to bottom).
ORDER = ("demo", "map", "train", "export", "localize", "replay", "bench")

DESCRIPTION = """\
Just Zoom In geo-localization: a camera frame plus an onboard satellite tile pyramid gives an
absolute position (lat/lon with covariance) without GPS.

Typical flow: `jzi map build` an orthophoto into a pyramid, `jzi train` a model on geotagged
images, `jzi map embed` the pyramid with it, then `jzi localize` images, `jzi replay` a rosbag,
`jzi export` ONNX for TensorRT, and `jzi bench` the backends. `jzi demo` runs all of it on a
generated world.
"""


def subcommand_modules() -> list[ModuleType]:
    package = importlib.import_module("jzi_ros.cli")
    modules = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name == "main":
            continue
        module = importlib.import_module(f"jzi_ros.cli.{info.name}")
        if hasattr(module, "COMMAND") and hasattr(module, "run"):
            modules.append(module)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(modules, key=lambda m: (rank.get(m.COMMAND, len(ORDER)), m.COMMAND))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jzi", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"jzi_ros {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in subcommand_modules():
        child = sub.add_parser(module.COMMAND, help=module.HELP,
                               description=getattr(module, "DESCRIPTION", module.HELP),
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(child)
        child.set_defaults(_run=module.run)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every ``finally`` removes its temporaries."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def terminate_like_interrupt():
    """
    Make SIGTERM unwind like SIGINT (``kill``, systemd, docker stop, a timeout).

    Python's default SIGTERM ends the process without running ``finally`` blocks, which left
    multi-GB ``.NAME.*.tmp`` map builds and partial exports behind. Returns the previous
    handler (None off the main thread, where signals cannot be set).
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        return signal.signal(signal.SIGTERM, _raise_terminated)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = terminate_like_interrupt()
    level = logging.WARNING if args.verbose == 0 else (
        logging.INFO if args.verbose == 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except JziError as err:
        print(f"jzi {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        from jzi_ros.extras import missing_extra_message
        message = missing_extra_message(err)
        if message is None:
            raise
        print(f"jzi {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        terminated = isinstance(err, Terminated)
        print(f"jzi {args.command}: {'terminated' if terminated else 'interrupted'}",
              file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if previous is not None:  # main() called from Python (tests): leave it as it was
            import signal
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
