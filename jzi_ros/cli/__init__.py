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
The ``jzi`` command line: argument parsing only; each subcommand calls one core function.

Every module in this package that defines ``COMMAND``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` becomes a subcommand (see main.py). A command that localizes adds the
shared localizer options with ``jzi_ros.inference.options.add_localizer_arguments``; main.py
adds ``-v`` and ``--threads`` to every command (:func:`add_common_arguments`). Adding a flag to
a command is one ``add_argument`` line in its module.
"""
from __future__ import annotations

import argparse
import re
from typing import Sequence

from jzi_ros.errors import JziError

# a comma-separated list of numbers whose first one is negative, e.g. -33.86,151.2
_NEGATIVE_LIST = re.compile(r"^-\d*\.?\d+(e[-+]?\d+)?(\s*,\s*[-+]?\d*\.?\d+(e[-+]?\d+)?)+$",
                            re.IGNORECASE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` once, and only where there is a default worth reading."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default is None or action.default is False or action.required
                or action.default == argparse.SUPPRESS or "default" in text):
            return text
        return super()._get_help_string(action)


def join_negative_lists(argv: Sequence[str]) -> list[str]:
    """
    Glue ``--opt -33.86,151.2`` into ``--opt=-33.86,151.2``.

    argparse takes a value that starts with "-" and is not a plain number for an option, so
    southern/western coordinates (``--center -33.86,151.2``, ``--bounds -34,150.5,-33.5,151.5``)
    could not be typed as documented.
    """
    out: list[str] = []
    for arg in argv:
        if (out and _NEGATIVE_LIST.match(arg) and out[-1].startswith("--")
                and "=" not in out[-1]):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every subcommand takes (after its name as well as before it)."""
    from jzi_ros.threads import DEFAULT_THREADS

    common = parser.add_argument_group("common")
    common.add_argument("-v", "--verbose", action="count", default=0, dest="verbose_after",
                        help="more log output (-vv for debug)")
    common.add_argument("--threads", type=_threads, default=DEFAULT_THREADS,
                        help="torch/OpenCV CPU threads; 0: all cores (slower when other work "
                             "shares the cores: docs/benchmarks.md)")


def _threads(text: str) -> int:
    from jzi_ros.threads import check_threads

    try:
        return check_threads(int(text), "--threads")
    except (ValueError, JziError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
