"""Data errors, in a module of their own so light processes (tokenizer workers) can raise them
without importing torch. ``protocol.data`` re-exports them."""

from __future__ import annotations


class DataError(Exception):
    """Base class of data errors."""


class DataSourceError(DataError):
    """A dataset source cannot be opened (missing file, bad format, missing extra, offline)."""


class DatasetMismatchError(DataError):
    """The local dataset is not the one the subnet pins."""
