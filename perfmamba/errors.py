"""Errors that the CLI reports as one line on stderr (no traceback) with a non-zero exit."""


class PerfmambaError(Exception):
    """Base class: bad input, described in one line."""
