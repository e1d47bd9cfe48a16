"""Errors a user can act on.

Every message says what is wrong and how to fix it; ``recbench.cli`` turns them into one red line
and exit code 2, so no traceback ever reaches a researcher for bad input.
"""

from __future__ import annotations


class RecbenchError(Exception):
    """Base class: a problem the user can fix (bad input, missing data, ...)."""


class ConfigError(RecbenchError):
    """An experiment or study file is malformed or names something unknown."""


class DatasetError(RecbenchError):
    """A dataset is unknown, not fetched, corrupt, or does not have the expected shape."""


class ChecksumError(DatasetError):
    """A downloaded or copied file does not have the published sha256."""


class RunError(RecbenchError):
    """A run directory is missing, incomplete, or would be overwritten."""
