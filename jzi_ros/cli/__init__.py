"""The ``jzi`` command line: argument parsing only; each subcommand calls one core function.

Every module in this package that defines ``COMMAND``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` becomes a subcommand (see main.py).
"""
