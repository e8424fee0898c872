"""The one error hierarchy of orgseg.

Every message says what was expected, what was received, and how to fix it.
"""

from __future__ import annotations


class OrgsegError(Exception):
    """Base class of every error orgseg raises on purpose."""


class ConfigError(OrgsegError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class DataContractError(OrgsegError):
    """Input data does not meet what a stage needs (not a CT, wrong shape, bad geometry...)."""


class StorageError(OrgsegError):
    """A URL cannot be read or written (missing object, permission, unreachable endpoint)."""


class JobError(OrgsegError):
    """A pipeline job failed or its outputs are inconsistent."""


class MissingError(StorageError):
    """A URL that should hold data holds nothing (a permanent fault of the input, unlike
    an unreachable endpoint)."""


class NotStreamableError(OrgsegError):
    """A model's preprocessing or export cannot be reproduced row by row (z-score
    normalisation, transposed axes, other resampling): the engine blends chunks instead."""


class InvariantError(RuntimeError):
    """orgseg broke one of its own invariants (a bug, not bad input or options): not an
    :class:`OrgsegError`, so it is reported with its traceback; please report it."""
