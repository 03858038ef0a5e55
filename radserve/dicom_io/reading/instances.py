"""Reading DICOM instances from files, folders, zip archives and bytes.

Strict about what is not DICOM, tolerant of what real archives contain:

* Garbage, empty, truncated and oversized inputs raise :class:`InvalidDicomError` (or its
  subclass :class:`InstanceTooLargeError`) with a message naming the problem.
* Real-world quirks are read and logged, never with a value: one DEBUG line per instance
  and one INFO summary per call (``tolerated in 48 instances: StudyID (SH) longer than 16
  characters``). Tolerated: no 128-byte preamble, no file meta information (the transfer
  syntax is then inferred and recorded in ``file_meta``), a blank or missing SOP Class /
  Instance UID (repaired from the Media Storage SOP Class / Instance UID when the file meta
  has one), values longer than their VR allows.

Non-conformant values never raise, whatever pydicom's global reading validation mode: how
and why is told in :mod:`radserve.dicom_io.reading.quirks`.

Bulk reads: :func:`iter_instance_headers` parses each plain file's header only
(:mod:`radserve.dicom_io.reading.headers`) and records where its uncompressed Pixel Data lies
(:class:`PixelDataLocation`), so that a caller can read the pixels straight into its own
array with :func:`read_pixel_data_into` instead of pydicom allocating a ``bytes`` object per
instance.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset, read_preamble

from radserve.dicom_io.errors import DicomIOError, InstanceTooLargeError, InvalidDicomError
from radserve.dicom_io.reading import transfer_syntax
from radserve.dicom_io.reading.headers import (
    FileHead,
    PixelDataLocation,
    header_and_location,
    read_pixel_data_into,
    with_pixel_data,
)
from radserve.dicom_io.reading.quirks import ToleratedQuirks, check_and_tolerate

__all__ = [
    "DEFAULT_MAX_INSTANCE_BYTES",
    "PixelDataLocation",
    "decode_pixel_arrays",
    "iter_instance_headers",
    "iter_instances",
    "read_instance",
    "read_pixel_data_into",
    "with_pixel_data",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_INSTANCE_BYTES = 2 * 1024**3
"""Default limit on the size of one instance (a file, an archive member, inflated data)."""

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_DEFLATED_UID = pydicom.uid.DeflatedExplicitVRLittleEndian.encode()


def read_instance(
    source: str | Path | bytes,
    *,
    stop_before_pixels: bool = False,
    max_bytes: int = DEFAULT_MAX_INSTANCE_BYTES,
) -> Dataset:
    """Read one DICOM instance from a path, from bytes, or from a zip archive of one file.

    Files without the 128-byte preamble or without file meta information are accepted.

    Args:
        source: A file path, the bytes of a file, or a zip archive (path or bytes) holding
            exactly one file.
        stop_before_pixels: Stop reading before the pixel data.
        max_bytes: Refuse instances larger than this (on disk, in the archive once
            extracted, or once a deflated data set is inflated).

    Raises:
        InvalidDicomError: The input is not DICOM, is truncated, or is a folder.
        InstanceTooLargeError: The instance is larger than ``max_bytes``.
    """
    tolerated = ToleratedQuirks(logger)
    try:
        return _read_instance(source, stop_before_pixels, max_bytes, tolerated)
    except DicomIOError:
        raise
    except Exception as exc:  # pydicom raises many types on malformed elements, read lazily
        name = (
            "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else Path(source).name
        )
        raise InvalidDicomError(
            f"{name}: an element cannot be read ({type(exc).__name__})"
        ) from exc
    finally:
        tolerated.log_summary()


def _read_instance(
    source: str | Path | bytes, stop_before_pixels: bool, max_bytes: int, tolerated: ToleratedQuirks
) -> Dataset:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        _check_size(len(data), max_bytes, "<bytes>")
        if _looks_like_zip(data[:132]):
            return _read_single_member(
                io.BytesIO(data), "<bytes>", stop_before_pixels, max_bytes, tolerated
            )
        return _read_bytes(data, "<bytes>", stop_before_pixels, max_bytes, tolerated)
    path = Path(source)
    name = path.name
    if path.is_dir():
        raise InvalidDicomError(f"{name}: is a folder, not an instance (use iter_instances)")
    try:
        size = path.stat().st_size
        _check_size(size, max_bytes, name)
        with path.open("rb") as fp:
            head = fp.read(1024)
            if _looks_like_zip(head):
                return _read_single_member(fp, name, stop_before_pixels, max_bytes, tolerated)
            if _DEFLATED_UID in head:  # inflate with a bound; pydicom would not
                fp.seek(0)
                return _read_bytes(fp.read(), name, stop_before_pixels, max_bytes, tolerated)
            fp.seek(0)
            ds = _parse(fp, name, stop_before_pixels)
            return check_and_tolerate(
                ds, name, tolerated, None if stop_before_pixels else (fp, size)
            )
    except OSError as exc:
        raise InvalidDicomError(f"{name}: cannot be read ({exc.strerror or exc})") from exc


def iter_instances(
    paths: Iterable[str | Path],
    *,
    stop_before_pixels: bool = False,
    max_bytes: int = DEFAULT_MAX_INSTANCE_BYTES,
) -> Iterator[Dataset]:
    """Yield instances from files, folders (recursively, in name order) and zip archives.

    Files and archive members that are not DICOM (or are truncated) are skipped with a log
    line; nothing else is skipped.

    Raises:
        InstanceTooLargeError: A file or archive member is larger than ``max_bytes``.
        InvalidDicomError: A zip archive is corrupt.
    """
    tolerated = ToleratedQuirks(logger)
    try:
        for ds, _ in _iter_paths(paths, stop_before_pixels, max_bytes, tolerated, headers=False):
            yield ds
    finally:
        tolerated.log_summary()


def iter_instance_headers(
    paths: Iterable[str | Path], *, max_bytes: int = DEFAULT_MAX_INSTANCE_BYTES
) -> Iterator[tuple[Dataset, PixelDataLocation | None]]:
    """Like :func:`iter_instances`, but leaving uncompressed Pixel Data in the files.

    For a plain file whose Pixel Data is uncompressed (Implicit / Explicit VR Little Endian,
    Explicit VR Big Endian) and ends the file, the data set is read up to the Pixel Data
    only and yielded with the value's location, to read with :func:`read_pixel_data_into`.
    Everything else (compressed pixel data, zip archives, deflated data sets, elements after
    the Pixel Data, anything unusual) is read whole and yielded with ``None``.

    Raises:
        InstanceTooLargeError: A file or archive member is larger than ``max_bytes``.
        InvalidDicomError: A zip archive is corrupt.
    """
    tolerated = ToleratedQuirks(logger)
    try:
        yield from _iter_paths(paths, False, max_bytes, tolerated, headers=True)
    finally:
        tolerated.log_summary()


def decode_pixel_arrays(
    instances: Sequence[Dataset], *, workers: int | None = None
) -> list[npt.NDArray[np.generic]]:
    """Decode the stored pixel values of each instance (no rescale applied), in input order.

    Every transfer syntax is checked before anything is decoded. Compressed frames are
    decoded in parallel worker processes (the codecs hold the GIL); uncompressed little
    endian pixel data is returned as a read-only view of the instance's Pixel Data, not a
    copy. Arrays are shaped ``(rows, columns)``, ``(frames, rows, columns)`` or with a
    trailing samples axis, like pydicom's ``pixel_array``.

    Args:
        instances: Instances with pixel data.
        workers: Processes for compressed data; ``None`` uses every CPU this process may
            run on, ``1`` decodes in this process.

    Raises:
        UnsupportedTransferSyntaxError: An instance's transfer syntax cannot be decoded.
        InvalidDicomError: An instance has no or corrupt pixel data.
    """
    return transfer_syntax.decode_instances(instances, workers=workers)


# --- reading -------------------------------------------------------------------------------


def _iter_paths(
    paths: Iterable[str | Path],
    stop_before_pixels: bool,
    max_bytes: int,
    tolerated: ToleratedQuirks,
    *,
    headers: bool,
) -> Iterator[tuple[Dataset, PixelDataLocation | None]]:
    for path in map(Path, paths):
        if path.is_dir():
            yield from _iter_paths(
                sorted(p for p in path.rglob("*") if p.is_file()),
                stop_before_pixels,
                max_bytes,
                tolerated,
                headers=headers,
            )
            continue
        found: tuple[Dataset, PixelDataLocation | None] | None = None
        try:
            if headers:
                found = _read_header(path, max_bytes, tolerated)  # None for a zip archive
            elif not _is_zip(path):
                found = _read_instance(path, stop_before_pixels, max_bytes, tolerated), None
        except InstanceTooLargeError:
            raise
        except InvalidDicomError as exc:
            logger.info("skipping %s", exc)
            continue
        if found is not None:
            yield found
            continue
        for ds in _iter_zip(path, stop_before_pixels, max_bytes, tolerated):
            yield ds, None


def _read_header(
    path: Path, max_bytes: int, tolerated: ToleratedQuirks
) -> tuple[Dataset, PixelDataLocation | None] | None:
    """The header and Pixel Data location of a plain file, else the whole instance;
    ``None`` for a zip archive."""
    try:
        with path.open("rb") as fp:
            head = FileHead(fp)
            if _looks_like_zip(head.data[:132]):
                return None
            size = os.fstat(fp.fileno()).st_size
            _check_size(size, max_bytes, path.name)
            found = header_and_location(head, size, path)
    except OSError as exc:
        raise InvalidDicomError(f"{path.name}: cannot be read ({exc.strerror or exc})") from exc
    if found is None:
        return _read_instance(path, False, max_bytes, tolerated), None
    ds, location = found
    return check_and_tolerate(ds, path.name, tolerated, None), location


def _check_size(size: int, max_bytes: int, name: str) -> None:
    if size > max_bytes:
        raise InstanceTooLargeError(
            f"{name}: instance is larger than the limit of {max_bytes} bytes"
        )
    if size == 0:
        raise InvalidDicomError(f"{name}: empty file, not a DICOM instance")


def _looks_like_zip(head: bytes) -> bool:
    return head[128:132] != b"DICM" and head[:4] in _ZIP_MAGIC


def _is_zip(path: Path) -> bool:
    try:
        with path.open("rb") as fp:
            return _looks_like_zip(fp.read(132))
    except OSError:
        return False


def _parse(fp: IO[bytes], name: str, stop_before_pixels: bool) -> Dataset:
    try:
        return pydicom.dcmread(fp, force=True, stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # pydicom raises many types on malformed input
        raise InvalidDicomError(f"{name}: not a readable DICOM instance ({exc})") from exc


def _read_bytes(
    data: bytes, name: str, stop_before_pixels: bool, max_bytes: int, tolerated: ToleratedQuirks
) -> Dataset:
    if _DEFLATED_UID in data[:1024]:
        _check_inflated_size(data, name, max_bytes)
    fp = io.BytesIO(data)
    ds = _parse(fp, name, stop_before_pixels)
    return check_and_tolerate(ds, name, tolerated, None if stop_before_pixels else (fp, len(data)))


def _check_inflated_size(data: bytes, name: str, max_bytes: int) -> None:
    """Refuse a Deflated Explicit VR data set that inflates beyond ``max_bytes``."""
    fp = io.BytesIO(data)
    try:
        read_preamble(fp, force=True)
        meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
    except Exception as exc:  # pydicom raises many types on malformed input
        raise InvalidDicomError(f"{name}: unreadable file meta information ({exc})") from exc
    if str(meta.get("TransferSyntaxUID", "")) != pydicom.uid.DeflatedExplicitVRLittleEndian:
        return
    try:
        inflated = inflated_size(memoryview(data)[fp.tell() :], max_bytes)
    except zlib.error as exc:
        raise InvalidDicomError(f"{name}: corrupt deflated data set ({exc})") from exc
    if inflated > max_bytes:
        raise InstanceTooLargeError(
            f"{name}: deflated data set inflates beyond the limit of {max_bytes} bytes"
        )


_INFLATE_CHUNK_BYTES = 1024 * 1024


def inflated_size(deflated: bytes | memoryview, max_bytes: int) -> int:
    """The size a raw deflate stream inflates to, counted chunk by chunk without keeping the
    output (at most one chunk in memory); stops counting once past ``max_bytes``.

    Raises:
        zlib.error: The stream is corrupt.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    view = memoryview(deflated)
    total = 0
    for start in range(0, len(view), _INFLATE_CHUNK_BYTES):
        pending: bytes | memoryview = view[start : start + _INFLATE_CHUNK_BYTES]
        while pending:
            total += len(inflater.decompress(pending, _INFLATE_CHUNK_BYTES))
            if total > max_bytes:
                return total
            pending = inflater.unconsumed_tail
        if inflater.eof:
            break
    while not inflater.eof and total <= max_bytes:
        out = inflater.decompress(inflater.unconsumed_tail, _INFLATE_CHUNK_BYTES)
        if not out:
            break
        total += len(out)
    return total


def _zip_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, max_bytes: int
) -> bytes:
    label = f"{name}:{info.filename}"
    # file_size is what the archive claims; read at most max_bytes + 1 in case it lies.
    _check_size(info.file_size, max_bytes, label)
    chunks: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(_INFLATE_CHUNK_BYTES):
                size += len(chunk)
                _check_size(size, max_bytes, label)  # stops as soon as a lying member passes
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, OSError, RuntimeError, NotImplementedError) as exc:
        raise InvalidDicomError(f"{label}: corrupt or unsupported zip member ({exc})") from exc
    _check_size(size, max_bytes, label)
    return b"".join(chunks)


def _open_zip(fp: IO[bytes] | Path, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidDicomError(f"{name}: corrupt zip archive ({exc})") from exc


def _read_single_member(
    fp: IO[bytes], name: str, stop_before_pixels: bool, max_bytes: int, tolerated: ToleratedQuirks
) -> Dataset:
    with _open_zip(fp, name) as archive:
        members = _zip_members(archive)
        if len(members) != 1:
            raise InvalidDicomError(
                f"{name}: zip archive holds {len(members)} files, not one (use iter_instances)"
            )
        data = _read_member(archive, members[0], name, max_bytes)
    label = f"{name}:{members[0].filename}"
    return _read_bytes(data, label, stop_before_pixels, max_bytes, tolerated)


def _iter_zip(
    path: Path, stop_before_pixels: bool, max_bytes: int, tolerated: ToleratedQuirks
) -> Iterator[Dataset]:
    with _open_zip(path, path.name) as archive:
        for info in _zip_members(archive):
            data = _read_member(archive, info, path.name, max_bytes)
            label = f"{path.name}:{info.filename}"
            try:
                ds = _read_bytes(data, label, stop_before_pixels, max_bytes, tolerated)
            except InstanceTooLargeError:
                raise
            except InvalidDicomError as exc:
                logger.info("skipping %s", exc)
                continue
            yield ds
