"""Exceptions raised by the instance store.

They derive from :class:`~radserve.dicom_io.DicomIOError`: to a sender, an instance the store
refuses is a DICOM input that failed, answered per instance in the STOW-RS Failed SOP Sequence.
"""

from __future__ import annotations

from radserve.dicom_io import DicomIOError


class QueryError(DicomIOError):
    """A query cannot be run: an unsupported matching attribute or a malformed value."""


class StoreError(DicomIOError):
    """The instance store failed (I/O or index); the root of the store's errors."""


class DuplicateInstanceError(StoreError):
    """An instance with this SOP Instance UID is stored already, with different content."""


class InstanceNotFoundError(StoreError):
    """No instance matches the requested study, series or SOP Instance UID."""


class InstanceRejectedError(StoreError):
    """The instance cannot be stored as it is: missing or malformed UIDs, not in the expected
    study, or in a series the index knows under another study."""


class StoreFullError(StoreError):
    """The store is out of resources: no disk space, or the study holds the maximum number of
    instances."""
