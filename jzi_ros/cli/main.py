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
import os
import pkgutil
import sys
from types import ModuleType
from typing import Sequence

from jzi_ros import __version__
from jzi_ros.cli import add_common_arguments, HelpFormatter, join_negative_lists
from jzi_ros.errors import JziError
from jzi_ros.threads import set_threads

# The order subcommands are listed in --help (the data path, top to bottom).
ORDER = ("demo", "map", "train", "train-retrieval", "export", "localize", "replay", "bench")

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
                               formatter_class=HelpFormatter)
        module.add_arguments(child)
        add_common_arguments(child)
        child.set_defaults(_run=module.run, _extra=getattr(module, "EXTRA_POSITIONALS", None))
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


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    Parse the command line: ``-v`` before or after the subcommand, negative coordinates.

    A command whose module names ``EXTRA_POSITIONALS`` (train's ``key=value`` overrides) also
    takes them after options; anything else left over is an error, as with parse_args.
    """
    parser = build_parser()
    argv = join_negative_lists(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra and args._extra and not any(e.startswith("-") for e in extra):
        getattr(args, args._extra).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.verbose += args.verbose_after
    return args


def run_command(name: str, function, args: argparse.Namespace) -> int:
    """
    Run a command and turn what ends it into one line and an exit status.

    A JziError or a missing optional dependency: one line, rc 2; Ctrl-C rc 130; SIGTERM (which
    unwinds like Ctrl-C, so temporaries are removed) rc 143; a closed pipe rc 141.
    """
    previous = terminate_like_interrupt()
    try:
        code = int(function(args) or 0)
        sys.stdout.flush()  # a closed pipe (`| head`) shows here, not at interpreter exit
        return code
    except JziError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        from jzi_ros.extras import missing_extra_message
        message = missing_extra_message(err)
        if message is None:
            raise
        print(f"{name}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        terminated = isinstance(err, Terminated)
        print(f"{name}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:
        # the reader went away (`jzi map info --json | head`): no traceback, no flush error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        if previous is not None:  # run from Python (tests): leave the handler as it was
            import signal
            signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    level = logging.WARNING if args.verbose == 0 else (
        logging.INFO if args.verbose == 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    set_threads(args.threads)
    return run_command(f"jzi {args.command}", args._run, args)


if __name__ == "__main__":
    sys.exit(main())
