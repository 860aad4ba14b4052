"""The one exception type for bad user input: the CLI prints its message as one line."""


class JziError(Exception):
    """Bad input or state a user can fix; the message names the file/field/value and what was
    expected. The CLI prints it without a traceback and exits non-zero."""


class BadImageError(JziError):
    """An image (array or camera message) that cannot be localized: wrong shape, unsupported
    encoding, inconsistent size/step, corrupt compressed data. The ROS node counts and skips
    these frames instead of stopping."""
