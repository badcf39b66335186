"""User errors: what a person asked for cannot be done (a bad config, a missing or corrupt file).

The command line prints a ``DepthqError`` as one line (``depthq: error: ...``, exit status 2);
any other exception is a bug and keeps its traceback (``-v`` shows the traceback of user errors
too). Each class also derives from the built-in exception a Python caller would expect, so
``except ValueError`` / ``except FileNotFoundError`` keep working.

A leaf module: it imports nothing of depthq.
"""

from __future__ import annotations


class DepthqError(Exception):
    """An error in the user's input; its message says what was expected and what came."""


class ConfigError(DepthqError, ValueError):
    """A run config, an override or an option is invalid (the key is named in the message)."""


class UsageError(DepthqError, ValueError):
    """Command-line options or arguments that do not fit together."""


class DataError(DepthqError, ValueError):
    """A data set cannot be read as asked (wrong name, size, layout or contents)."""


class MissingFileError(DepthqError, FileNotFoundError):
    """A file or folder the command needs does not exist."""


class RunDirError(DepthqError, FileExistsError):
    """A run or results folder cannot be used as asked (not empty, not resumable, other settings)."""


class CorruptFileError(DepthqError, ValueError):
    """A file exists but cannot be trusted: truncated, bit-flipped, or made for another model."""


class SchemaError(CorruptFileError):
    """A results file has an unknown or newer schema, or a missing or renamed field."""
