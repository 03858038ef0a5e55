"""File mechanics of the instance store: staging received bytes, reading them back, fsync.

A received instance is written to a staging file in the store's ``tmp`` folder (counting and
hashing its bytes as they arrive), validated from there, fsynced, and renamed into place;
:mod:`radserve.server.store.instances` orders these steps.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from radserve.dicom_io import (
    FileHead,
    InvalidDicomError,
    ToleratedQuirks,
    check_and_tolerate,
    header_and_location,
    read_instance,
)

COPY_CHUNK_BYTES = 1024 * 1024
# Larger instances are validated from their header plus a check that the last element fits
# in the file, so that their pixel data is never held in memory.
FULL_READ_MAX_BYTES = 256 * 1024**2
# Smaller received files are also kept in memory while they arrive, so that validation parses
# them without reading the staging file back.
KEEP_IN_MEMORY_BYTES = 1024 * 1024
_UNDEFINED_LENGTH = 0xFFFFFFFF
# A DICOM file begins with a 128-byte preamble and "DICM", then the File Meta Information.
PART10_PREFIX_BYTES = 132
# The first element of a File Meta Information group: (0002,0000), (0002,0001) or (0002,0002).
_FILE_META_STARTS = (b"\x02\x00\x00\x00", b"\x02\x00\x01\x00", b"\x02\x00\x02\x00")
# Tolerated quirks are reported where the reader reports them.
_reading_logger = logging.getLogger("radserve.dicom_io.reading.instances")


class StagedFile:
    """A file being received into the store's ``tmp`` folder; counts and hashes its bytes.

    A file that starts with its File Meta Information but without the preamble and "DICM"
    prefix of PS3.10 (some toolkits write data sets that way) gets them: what is stored is
    always a DICOM file.

    Raises:
        OSError: The file cannot be created (it must not exist yet).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fp: IO[bytes] | None = path.open("xb")
        self._hash = hashlib.sha256()
        self._kept: bytearray | None = bytearray()
        # The first bytes, held until it is known whether the file has its prefix.
        self._head: bytearray | None = bytearray()
        self.is_dicom_file = False  # known once the first bytes are in
        self.size_bytes = 0
        self.sha256 = ""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``."""
        if self._fp is None:
            raise ValueError("the staged file is closed")
        if self._head is not None:
            self._head += data
            if len(self._head) < PART10_PREFIX_BYTES:
                return
            data = self._take_head()
        self._write(data)

    def _take_head(self) -> bytes:
        head, self._head = bytes(self._head or b""), None
        if head[128:132] != b"DICM" and head[:4] in _FILE_META_STARTS:
            head = bytes(128) + b"DICM" + head
        self.is_dicom_file = head[128:132] == b"DICM"
        return head

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._fp is not None
        self._fp.write(data)
        self._hash.update(data)
        self.size_bytes += len(data)
        if self._kept is not None:
            if self.size_bytes <= KEEP_IN_MEMORY_BYTES:
                self._kept += data
            else:
                self._kept = None

    def take_bytes(self) -> bytes | None:
        """The file's bytes when it is small enough to have been kept in memory (``None``
        otherwise); given once, then released. Call after :meth:`close`."""
        kept, self._kept = self._kept, None
        return None if kept is None else bytes(kept)

    def copy_from(self, source: BinaryIO | IO[bytes]) -> None:
        """Append everything ``source`` still holds."""
        while chunk := source.read(COPY_CHUNK_BYTES):
            self.write(chunk)

    def close(self) -> None:
        """Finish writing (not yet fsynced: the store does that)."""
        if self._fp is not None:
            if self._head is not None:
                self._write(self._take_head())
            self._fp.close()
            self._fp = None
            self.sha256 = self._hash.hexdigest()

    def discard(self) -> None:
        """Close and delete the file."""
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        self._kept = self._head = None
        self.path.unlink(missing_ok=True)


def read_received(path: Path, *, size: int, max_bytes: int, data: bytes | None = None) -> Dataset:
    """Read a received instance for validation: its header when the rest is uncompressed Pixel
    Data that ends the file, else whole, or for a large one its header plus a check that it
    is complete.

    The data set returned may lack the Pixel Data; it is read to validate and index the
    instance, not to use its pixels.

    Args:
        path: The received file.
        size: Its size.
        max_bytes: The largest instance accepted.
        data: The file's bytes, if at hand (its header is then parsed from memory).

    Raises:
        InvalidDicomError: Not a readable, complete instance (or over ``max_bytes``).
    """
    if size <= FULL_READ_MAX_BYTES:
        header = _read_header(path, size=size, max_bytes=max_bytes, data=data)
        return header if header is not None else read_instance(path, max_bytes=max_bytes)
    ds = read_instance(path, stop_before_pixels=True, max_bytes=max_bytes)
    try:
        deferred = pydicom.dcmread(path, force=True, defer_size=COPY_CHUNK_BYTES)
        last = deferred.get_item(list(deferred.keys())[-1], keep_deferred=True)
    except Exception as exc:  # pydicom raises many types on malformed input
        raise InvalidDicomError(f"not a readable DICOM instance ({exc})") from exc
    if (
        isinstance(last, RawDataElement)
        and last.length != _UNDEFINED_LENGTH
        and last.value_tell + last.length > size
    ):
        raise InvalidDicomError(f"truncated: element {last.tag} ends after the end of the file")
    return ds


def _read_header(path: Path, *, size: int, max_bytes: int, data: bytes | None) -> Dataset | None:
    """The data set up to the Pixel Data, when that is uncompressed and ends the file exactly
    (so the file is complete); ``None`` for anything else, which is then read whole.

    A header parse without pydicom's per-element overhead (:mod:`.headers`); the checks and
    tolerated quirks are those of a whole read (:func:`.quirks.check_and_tolerate`).
    """
    if not 0 < size <= max_bytes or (data is not None and len(data) != size):
        return None  # the whole read raises the error that says why
    try:
        with io.BytesIO(data) if data is not None else path.open("rb") as fp:
            found = header_and_location(FileHead(fp), size, path)
    except Exception:  # malformed: the whole read raises the error that says why
        return None
    if found is None:
        return None
    tolerated = ToleratedQuirks(_reading_logger)
    try:
        return check_and_tolerate(found[0], path.name, tolerated, None)
    finally:
        tolerated.log_summary()


def sha256_of(path: Path) -> str:
    """The SHA-256 (hex) of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        while chunk := fp.read(COPY_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def transfer_syntax_of(ds: Dataset) -> str:
    """The Transfer Syntax UID of the file meta information ('' without one)."""
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""


def file_values(
    ds: Dataset, path: Path, size: int, sha256: str, *, data_dir: Path
) -> dict[str, Any]:
    """The index's values of a stored file (``path`` lies under ``data_dir``)."""
    return {
        "transfer_syntax_uid": transfer_syntax_of(ds),
        "path": str(path.relative_to(data_dir)),
        "size_bytes": size,
        "sha256": sha256,
        "stored_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def fsync_folder(path: Path) -> None:
    """Flush a folder's entries (new names) to the disk."""
    fsync_path(path, directory=True)


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_parents(folder: Path, root: Path) -> Iterator[Path]:
    """Create ``folder`` and its missing parents below ``root``; yield each folder that got a
    new entry (to fsync)."""
    missing = []
    current = folder
    while not current.exists() and current != root:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        yield path.parent
