"""A batch of received instances and what the store made of it.

:class:`IngestBatch` queues the files of one STOW-RS request; the instance store validates
them as they are added and stores them together on :meth:`IngestBatch.commit`, reporting each
as a :class:`StoredInstance` or a :class:`FailedInstance`. The batch knows the store only by
the two functions it is given, so it does not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from radserve.dicom_io import DicomIOError
from radserve.server.store.errors import StoreError
from radserve.server.store.files import StagedFile
from radserve.server.store.index import IndexRows


@dataclass(frozen=True)
class StoredInstance:
    """One instance in the store.

    Attributes:
        study_instance_uid: Its study.
        series_instance_uid: Its series.
        sop_instance_uid: Its SOP Instance UID.
        sop_class_uid: Its SOP Class UID.
        transfer_syntax_uid: The transfer syntax of its file.
        path: Its file.
        size_bytes: The size of its file.
        sha256: The SHA-256 of its file, hex.
        created: ``False`` when an identical copy was stored already (a no-op).
    """

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: Path
    size_bytes: int
    sha256: str
    created: bool = True


@dataclass(frozen=True)
class FailedInstance:
    """An instance the store refused; UIDs are empty where the data could not be read."""

    sop_class_uid: str
    sop_instance_uid: str
    error: DicomIOError


@dataclass(frozen=True)
class BatchOutcome:
    """What a committed batch stored and refused, each in the order added."""

    stored: tuple[StoredInstance, ...]
    failed: tuple[FailedInstance, ...]


@dataclass(frozen=True)
class PendingInstance:
    """A validated instance of a batch, waiting for its commit."""

    staged: StagedFile
    instance: StoredInstance
    rows: IndexRows


class IngestBatch:
    """Instances received together (one STOW-RS request), made durable by one commit.

    Use as a context manager, or call :meth:`commit` (or :meth:`abort`) exactly once.
    Not for concurrent use from several threads; batches of different threads are fine.
    """

    def __init__(
        self,
        validate: Callable[[StagedFile, str | None], PendingInstance | FailedInstance],
        commit: Callable[[list[PendingInstance | FailedInstance]], BatchOutcome],
    ) -> None:
        """Start a batch.

        Args:
            validate: Checks one received file and says what it would store (the store's).
            commit: Stores and indexes validated files together (the store's).
        """
        self._validate = validate
        self._commit = commit
        self._pending: list[PendingInstance | FailedInstance] = []
        self._done = False

    def add(self, staged: StagedFile, *, study_instance_uid: str | None = None) -> None:
        """Validate a received file and queue it; a refusal is reported by :meth:`commit`.

        Args:
            staged: The file, closed; the batch owns it from now on.
            study_instance_uid: Refuse the instance unless it belongs to this study.
        """
        if self._done:
            raise StoreError("batch already committed or aborted")
        staged.close()
        result = self._validate(staged, study_instance_uid)
        if isinstance(result, FailedInstance):
            staged.discard()
        self._pending.append(result)

    def commit(self) -> BatchOutcome:
        """Store and index the queued instances; durable once this returns."""
        if self._done:
            raise StoreError("batch already committed or aborted")
        self._done = True
        return self._commit(self._pending)

    def abort(self) -> None:
        """Drop the queued instances."""
        if not self._done:
            self._done = True
            for item in self._pending:
                if isinstance(item, PendingInstance):
                    item.staged.discard()

    def __enter__(self) -> IngestBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or not self._done:
            self.abort()
