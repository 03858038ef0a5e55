"""The durable instance store: DICOM files on disk plus a SQLite index.

Layout under ``data_dir``::

    instances/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm
    index.sqlite3      (WAL mode, synchronous=FULL)
    tmp/               (files being received; emptied when the store opens)
    .lock              (one process at a time: the index is embedded)

Durability: an instance is reported stored only once its file is fsynced, renamed into place,
its folder fsynced and its index row committed. Instances arrive in batches
(:meth:`InstanceStore.batch`), one per STOW-RS request, so that a request costs one fsync per
file (issued concurrently, so the file system commits its journal for many at once), one per
new folder, and two index commits.

Crash rule: **the index is the truth**. Queries and retrieval go through the index only, so a
file without an index row is invisible. Before files of a batch are renamed into place their
paths are committed to a ``pending_files`` journal; when the store opens, each journalled file
that exists is indexed (it was fully written, fsynced and validated before the rename; its
sender was not answered, will retry, and a retry of identical bytes is a no-op), and the
journal is cleared. A file under ``instances/`` that is neither indexed nor journalled (copied
there by hand) stays invisible, and a later store of that instance replaces it.

Duplicates: storing a SOP Instance UID again with identical bytes is a successful no-op;
with different bytes it fails with :class:`DuplicateInstanceError` unless the store was
opened with ``overwrite=True``.
"""

from __future__ import annotations

import errno
import fcntl
import io
import logging
import re
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from radserve.dicom_io import (
    DEFAULT_MAX_INSTANCE_BYTES,
    DicomIOError,
    InvalidDicomError,
    check_transfer_syntax,
    text_value,
)
from radserve.server.store.batch import (
    BatchOutcome,
    FailedInstance,
    IngestBatch,
    PendingInstance,
    StoredInstance,
)
from radserve.server.store.commit import classify, publish
from radserve.server.store.errors import (
    DuplicateInstanceError,
    InstanceNotFoundError,
    InstanceRejectedError,
    QueryError,
    StoreError,
    StoreFullError,
)
from radserve.server.store.files import (
    StagedFile,
    file_values,
    fsync_path,
    read_received,
    transfer_syntax_of,
)
from radserve.server.store.index import IndexDatabase, QueryLevel, index_rows
from radserve.server.store.query import InstanceQuery, result_json, search_sql
from radserve.server.store.recovery import recover

__all__ = [
    "BatchOutcome",
    "CommitListener",
    "DuplicateInstanceError",
    "FailedInstance",
    "IngestBatch",
    "InstanceNotFoundError",
    "InstanceQuery",
    "InstanceRejectedError",
    "InstanceStore",
    "QueryError",
    "QueryLevel",
    "StagedFile",
    "StoreError",
    "StoreFullError",
    "StoredInstance",
    "encode_dataset",
]

logger = logging.getLogger(__name__)


def encode_dataset(ds: Dataset) -> bytes:
    """A data set as the bytes of a DICOM file (with its File Meta Information)."""
    with io.BytesIO() as buffer:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        return buffer.getvalue()


CommitListener = Callable[[Sequence[StoredInstance]], None]
"""Told of the instances of each committed batch (see :class:`InstanceStore`)."""

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_SYNC_THREADS = 8
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_DATA_TAG = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF


class InstanceStore:
    """DICOM instances on disk with a SQLite index; thread-safe.

    Args:
        data_dir: The store's folder (created if missing).
        overwrite: Replace a stored instance by a different one with the same SOP Instance
            UID instead of refusing it.
        max_instance_bytes: Refuse larger instances.
        max_instances_per_study: Refuse instances beyond this many in one study.
        on_commit: Called with the stored instances (identical re-sends included) of each
            committed batch, before the commit returns; an exception fails the commit's
            caller (the instances stay stored, and a re-send is a no-op).

    Raises:
        StoreError: The folder is not writable, the index cannot be opened, or another
            process has the store open.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        overwrite: bool = False,
        max_instance_bytes: int = DEFAULT_MAX_INSTANCE_BYTES,
        max_instances_per_study: int | None = None,
        on_commit: CommitListener | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._on_commit = on_commit
        self.overwrite = overwrite
        self.max_instance_bytes = max_instance_bytes
        self.max_instances_per_study = max_instances_per_study
        self._tmp_dir = self.data_dir / "tmp"
        try:
            self._tmp_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "instances").mkdir(exist_ok=True)
            self._lock_file = (self.data_dir / ".lock").open("a")
        except OSError as exc:
            raise StoreError(f"store folder cannot be written ({_reason(exc)})") from exc
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            raise StoreError("the store is open in another process (or store object)") from exc
        self._sync_pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="store-fsync")
        try:
            self._index = IndexDatabase(self.data_dir / "index.sqlite3")
        except sqlite3.Error as exc:
            self._release()
            raise StoreError(f"index cannot be opened ({exc})") from exc
        try:
            recover(
                self._index,
                self.data_dir,
                self._tmp_dir,
                max_instance_bytes=self.max_instance_bytes,
            )
        except BaseException:
            self.close()
            raise

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the index and release the folder lock."""
        if not self._lock_file.closed:
            self._index.close()
            self._release()

    def _release(self) -> None:
        self._sync_pool.shutdown()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    def __enter__(self) -> InstanceStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- storing -----------------------------------------------------------------------

    def staged_file(self) -> StagedFile:
        """A new empty file in ``tmp`` to receive an instance into (for :meth:`IngestBatch.add`)."""
        try:
            return StagedFile(self._tmp_dir / f"{uuid.uuid4().hex}.part")
        except OSError as exc:
            raise _io_error("a staging file cannot be created", exc) from exc

    def batch(self, *, notify: bool = True) -> IngestBatch:
        """A new batch of instances to store together.

        Args:
            notify: Report the batch's stored instances to ``on_commit``; ``False`` for
                radserve's own results, which are never routing candidates.
        """
        if not notify or self._on_commit is None:
            return IngestBatch(self._validate, self._commit)
        listener = self._on_commit

        def commit_and_notify(items: list[PendingInstance | FailedInstance]) -> BatchOutcome:
            outcome = self._commit(items)
            if outcome.stored:
                listener(outcome.stored)
            return outcome

        return IngestBatch(self._validate, commit_and_notify)

    def store(
        self, source: str | Path | bytes | BinaryIO, *, study_instance_uid: str | None = None
    ) -> StoredInstance:
        """Store one instance from a file, bytes or a binary stream (copied, not moved).

        Raises:
            InvalidDicomError: Not a readable instance (garbage, truncated, too large).
            UnsupportedTransferSyntaxError: Pixel data in a syntax radserve cannot decode.
            InstanceRejectedError: Missing or malformed UIDs, or not in the expected study.
            DuplicateInstanceError: Stored already with different content.
            StoreFullError: Out of space or over the study's instance limit.
            StoreError: The file or the index cannot be written.
        """
        staged = self.staged_file()
        try:
            if isinstance(source, bytes | bytearray | memoryview):
                staged.write(source)
            elif isinstance(source, str | Path):
                with Path(source).open("rb") as fp:
                    staged.copy_from(fp)
            else:
                staged.copy_from(source)
        except OSError as exc:
            staged.discard()
            raise InvalidDicomError(f"instance cannot be read ({_reason(exc)})") from exc
        except BaseException:
            staged.discard()
            raise
        batch = self.batch()
        batch.add(staged, study_instance_uid=study_instance_uid)
        outcome = batch.commit()
        if outcome.failed:
            raise outcome.failed[0].error
        return outcome.stored[0]

    def _validate(
        self, staged: StagedFile, study_instance_uid: str | None
    ) -> PendingInstance | FailedInstance:
        size = staged.size_bytes
        if not staged.is_dicom_file:  # refused unread: no archive or stream is inflated
            return FailedInstance(
                "",
                "",
                InvalidDicomError(
                    "not a DICOM file (PS3.10): no File Meta Information before the data set"
                ),
            )
        sop_class_uid = sop_instance_uid = ""
        error: DicomIOError
        try:
            ds = read_received(
                staged.path,
                size=size,
                max_bytes=self.max_instance_bytes,
                data=staged.take_bytes(),
            )
            sop_class_uid = text_value(ds, "SOPClassUID")
            sop_instance_uid = text_value(ds, "SOPInstanceUID")
            _check_instance(ds, study_instance_uid)
            return self._pending(staged, ds)
        except DicomIOError as exc:  # said without the staging file's name
            error = _without_label(exc, staged.path.name)
        except Exception as exc:  # pydicom raises many types on malformed elements
            logger.warning("received instance not readable (%s)", type(exc).__name__)
            error = InvalidDicomError(f"an element cannot be read ({type(exc).__name__})")
        return FailedInstance(sop_class_uid, sop_instance_uid, error)

    def _pending(self, staged: StagedFile, ds: Dataset) -> PendingInstance:
        study, series = text_value(ds, "StudyInstanceUID"), text_value(ds, "SeriesInstanceUID")
        sop_instance_uid = text_value(ds, "SOPInstanceUID")
        path = self.data_dir / "instances" / study / series / f"{sop_instance_uid}.dcm"
        values = file_values(ds, path, staged.size_bytes, staged.sha256, data_dir=self.data_dir)
        instance = StoredInstance(
            study_instance_uid=study,
            series_instance_uid=series,
            sop_instance_uid=sop_instance_uid,
            sop_class_uid=text_value(ds, "SOPClassUID"),
            transfer_syntax_uid=values["transfer_syntax_uid"],
            path=path,
            size_bytes=staged.size_bytes,
            sha256=staged.sha256,
        )
        return PendingInstance(staged, instance, index_rows(ds, file_values=values))

    def store_results(
        self,
        datasets: Sequence[Dataset],
        *,
        before_commit: Callable[[Sequence[tuple[Dataset, Path]]], object] | None = None,
    ) -> BatchOutcome:
        """Store data sets radserve made (a job's results) together; durable on return.

        They are written and indexed from the data sets themselves, without the input
        validation a received file gets (our own output is not parsed back), and they are
        never reported to ``on_commit``: radserve's results are not routing candidates.

        Args:
            datasets: The results.
            before_commit: Called with each data set and its encoded, staged file once all
                are written and before any is stored (the conformance gate); when it
                raises, nothing is stored and the staged files are removed.
        """
        items: list[PendingInstance | FailedInstance] = []
        try:
            for ds in datasets:
                staged = self.staged_file()
                try:
                    staged.write(encode_dataset(ds))
                    staged.close()
                except BaseException:
                    staged.discard()
                    raise
                items.append(self._pending(staged, ds))
            if before_commit is not None:
                before_commit(
                    [
                        (ds, item.staged.path)
                        for ds, item in zip(datasets, items, strict=True)
                        if isinstance(item, PendingInstance)
                    ]
                )
        except BaseException:
            for item in items:
                if isinstance(item, PendingInstance):
                    item.staged.discard()
            raise
        return self._commit(items)

    def _commit(self, items: list[PendingInstance | FailedInstance]) -> BatchOutcome:
        pending = [item for item in items if isinstance(item, PendingInstance)]
        results: dict[int, StoredInstance | FailedInstance] = {
            k: item for k, item in enumerate(items) if isinstance(item, FailedInstance)
        }
        try:  # outside the lock; concurrent fsyncs share the file system's journal commits
            list(self._sync_pool.map(fsync_path, [item.staged.path for item in pending]))
        except OSError as exc:
            error = _io_error("a received file cannot be synced", exc)
            for k, entry in enumerate(items):
                if isinstance(entry, PendingInstance):
                    results[k] = _failed(entry.instance, error)
        else:
            with self._index.writing() as db:
                try:
                    accepted, replaced = classify(
                        db,
                        items,
                        results,
                        data_dir=self.data_dir,
                        overwrite=self.overwrite,
                        max_instances_per_study=self.max_instances_per_study,
                    )
                    publish(
                        db,
                        [item for _, item in accepted],
                        replaced,
                        data_dir=self.data_dir,
                        sync_pool=self._sync_pool,
                    )
                except (OSError, sqlite3.Error) as exc:
                    error = _io_error("instances cannot be stored", exc)
                    for k, entry in enumerate(items):
                        if isinstance(entry, PendingInstance):
                            results[k] = _failed(entry.instance, error)
        for item in pending:
            item.staged.discard()  # nothing left to delete for files renamed into place
        ordered = [results[k] for k in sorted(results)]
        return BatchOutcome(
            tuple(r for r in ordered if isinstance(r, StoredInstance)),
            tuple(r for r in ordered if isinstance(r, FailedInstance)),
        )

    # --- reading -----------------------------------------------------------------------

    def search(self, query: InstanceQuery) -> list[dict[str, Any]]:
        """Studies, series or instances matching a query (see :mod:`.store_query`), as DICOM
        JSON objects (PS3.18 F.2). Series and instance results include the attributes of
        their study (and series).

        Raises:
            QueryError: Unsupported matching key or malformed value.
        """
        sql, params = search_sql(query)
        try:
            rows = self._index.reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"index query failed ({exc})") from exc
        return [result_json(query.level, row) for row in rows]

    def get_instances(
        self,
        study_instance_uid: str,
        series_instance_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> list[StoredInstance]:
        """The instances of a study, series or one instance, in series and instance order.

        Raises:
            InstanceNotFoundError: None is stored.
        """
        sql = (
            "SELECT i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid, "
            "i.sop_class_uid, i.transfer_syntax_uid, i.path, i.size_bytes, i.sha256 "
            "FROM instances i JOIN series se ON se.series_instance_uid = i.series_instance_uid "
            "WHERE i.study_instance_uid = ?"
        )
        params: list[str] = [study_instance_uid]
        if series_instance_uid is not None:
            sql += " AND i.series_instance_uid = ?"
            params.append(series_instance_uid)
        if sop_instance_uid is not None:
            sql += " AND i.sop_instance_uid = ?"
            params.append(sop_instance_uid)
        sql += " ORDER BY se.series_number, se.series_instance_uid, i.instance_number, i.rowid"
        try:
            rows = self._index.reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"index query failed ({exc})") from exc
        if not rows:
            level = "instance" if sop_instance_uid else "series" if series_instance_uid else "study"
            raise InstanceNotFoundError(f"no such {level} in the store")
        return [
            StoredInstance(
                study_instance_uid=row[0],
                series_instance_uid=row[1],
                sop_instance_uid=row[2],
                sop_class_uid=row[3],
                transfer_syntax_uid=row[4],
                path=self.data_dir / row[5],
                size_bytes=int(row[6]),
                sha256=row[7],
                created=False,
            )
            for row in rows
        ]

    def check_ready(self) -> None:
        """Raise :class:`StoreError` unless the folder is writable and the index answers."""
        probe = self._tmp_dir / f"ready-{uuid.uuid4().hex}.probe"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
            self._index.reader().execute("SELECT COUNT(*) FROM studies").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError("store is not ready (folder or index unavailable)") from exc


def _failed(instance: StoredInstance, error: DicomIOError) -> FailedInstance:
    return FailedInstance(instance.sop_class_uid, instance.sop_instance_uid, error)


def _check_instance(ds: Dataset, study_instance_uid: str | None) -> None:
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        value = text_value(ds, keyword)
        if not value:
            raise InstanceRejectedError(f"instance has no {keyword}")
        if len(value) > 64 or not _UID.fullmatch(value):
            raise InstanceRejectedError(f"instance has a malformed {keyword}")
    if any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        check_transfer_syntax(transfer_syntax_of(ds))
        _check_pixel_encoding(ds)
    if study_instance_uid is not None and text_value(ds, "StudyInstanceUID") != study_instance_uid:
        raise InstanceRejectedError(
            "instance is not in the study of the request (Study Instance UID differs)"
        )


def _without_label(error: DicomIOError, label: str) -> DicomIOError:
    """``error`` without the ``label:`` its reader put in front (a staging file name)."""
    message = str(error)
    if not message.startswith(f"{label}: "):
        return error
    bare = type(error)(message[len(label) + 2 :])
    bare.__cause__ = error.__cause__
    return bare


def _check_pixel_encoding(ds: Dataset) -> None:
    """Pixel Data encapsulated (undefined length) exactly when the transfer syntax is a
    compressed one."""
    element = ds.get_item(_PIXEL_DATA_TAG)
    if element is None:
        return  # the header of a large instance, or float pixel data
    if isinstance(element, RawDataElement):
        encapsulated = element.length == _UNDEFINED_LENGTH
    else:
        encapsulated = element.is_undefined_length
    syntax = UID(transfer_syntax_of(ds))
    if encapsulated != syntax.is_compressed:
        found = "encapsulated" if encapsulated else "native"
        raise InstanceRejectedError(
            f"Pixel Data is {found}, which the transfer syntax {syntax.name} does not allow"
        )


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _io_error(what: str, exc: OSError | sqlite3.Error) -> StoreError:
    """A store error naming the cause without paths (paths hold UIDs)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(f"{what}: no space left on the store's disk")
    reason = _reason(exc) if isinstance(exc, OSError) else type(exc).__name__
    logger.error("%s: %s", what, reason)
    return StoreError(f"{what} ({reason})")
