"""The one exception type for bad user input: the CLI prints its message as one line."""


class JziError(Exception):
    """Bad input or state a user can fix; the message names the file/field/value and what was
    expected. The CLI prints it without a traceback and exits non-zero."""
