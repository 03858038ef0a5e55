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

Non-conformant values and pydicom's global configuration: pydicom validates a value lazily,
when the element is first accessed, with the process-wide
``pydicom.config.settings.reading_validation_mode``. radserve never changes that setting: it
is global (a change would leak into other threads and into writers, which share the same
``DataElement`` machinery), and a scoped change around ``dcmread`` would not even cover the
later, lazy conversion. Instead :func:`read_instance` finds the top-level values longer than
their VR allows (the common quirk: an over-long Study ID or Institution Name) and converts
just those elements with a per-element ``validation_mode=IGNORE``. They then never raise,
even where an application sets reading validation to RAISE, and pydicom never logs them
with their value (its warnings quote values, which may be PHI). Other non-conformant values
(bad characters, values nested in sequences) keep pydicom's default behaviour: a warning,
no exception.

Bulk reads: :func:`iter_instance_headers` parses each plain file's header only and records
where its uncompressed Pixel Data lies (:class:`PixelDataLocation`), so that a caller can
read the pixels straight into its own array with :func:`read_pixel_data_into` instead of
pydicom allocating a ``bytes`` object per instance.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, decode_bytes, default_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_dataset, read_preamble, read_sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import convert_string

from radserve.dicom_io import transfer_syntax
from radserve.dicom_io.enhanced import text_value
from radserve.dicom_io.errors import InstanceTooLargeError, InvalidDicomError

logger = logging.getLogger(__name__)

DEFAULT_MAX_INSTANCE_BYTES = 2 * 1024**3
"""Default limit on the size of one instance (a file, an archive member, inflated data)."""

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_DEFLATED_UID = pydicom.uid.DeflatedExplicitVRLittleEndian.encode()
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM, _SEQUENCE_DELIMITER = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"
_PIXEL_DATA = BaseTag(0x7FE00010)
_TRANSFER_SYNTAX_UID = BaseTag(0x00020010)
_SPECIFIC_CHARACTER_SET = BaseTag(0x00080005)
_MAX_TRAILING_PADDING = 7  # fewer bytes than an element header: padding, not an element
# Maximum characters per value (PS3.5 Table 6.2-1); PN per component group.
_MAX_CHARS = {
    "AE": 16,
    "CS": 16,
    "DS": 16,
    "IS": 12,
    "SH": 16,
    "LO": 64,
    "PN": 64,
    "UI": 64,
    "ST": 1024,
    "LT": 10240,
}
_SHORTEST_LIMIT = min(_MAX_CHARS.values())
_HEADER_CHUNK = 16 * 1024  # read at once for a header-only parse; more only if needed
_VRS = {vr.value.encode(): vr.value for vr in VR if len(vr.value) == 2}
# Native syntaxes whose Pixel Data can be read straight from the file: (implicit, little).
_NATIVE_ENCODINGS: dict[str, tuple[bool, bool]] = {
    pydicom.uid.ImplicitVRLittleEndian: (True, True),
    pydicom.uid.ExplicitVRLittleEndian: (False, True),
    pydicom.uid.ExplicitVRBigEndian: (False, False),
}


@dataclass(frozen=True)
class PixelDataLocation:
    """Where the uncompressed Pixel Data value of an instance lies in its file.

    Attributes:
        path: The instance's file.
        offset: Byte offset of the value from the start of the file.
        length: Value length in bytes (the value ends the file).
        vr: The value representation, ``"OB"`` or ``"OW"``.
        little_endian: Whether the transfer syntax is little endian.
    """

    path: Path
    offset: int
    length: int
    vr: str
    little_endian: bool


class _Tolerated:
    """The quirks tolerated during one call, logged as one summary line at its end."""

    def __init__(self) -> None:
        self.quirks: Counter[str] = Counter()
        self.instances = 0
        self.without_sop_class = 0

    def add(self, name: str, quirks: list[str]) -> None:
        if quirks:
            logger.debug("%s: tolerated: %s", name, "; ".join(quirks))
            self.instances += 1
            self.quirks.update(quirks)

    def add_without_sop_class(self, name: str) -> None:
        logger.debug("%s: no SOP Class UID", name)
        self.without_sop_class += 1

    def log_summary(self) -> None:
        if self.instances:
            listed = "; ".join(
                quirk if count == self.instances else f"{quirk} in {count}"
                for quirk, count in self.quirks.most_common()
            )
            logger.info("tolerated in %s: %s", _instances(self.instances), listed)
        if self.without_sop_class:
            logger.warning(
                "%s without a SOP Class UID; writers cannot reference them",
                _instances(self.without_sop_class),
            )


def _instances(count: int) -> str:
    return f"{count} instance" if count == 1 else f"{count} instances"


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
    tolerated = _Tolerated()
    try:
        return _read_instance(source, stop_before_pixels, max_bytes, tolerated)
    finally:
        tolerated.log_summary()


def _read_instance(
    source: str | Path | bytes, stop_before_pixels: bool, max_bytes: int, tolerated: _Tolerated
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
            return _check_and_tolerate(
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
    tolerated = _Tolerated()
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
    tolerated = _Tolerated()
    try:
        yield from _iter_paths(paths, False, max_bytes, tolerated, headers=True)
    finally:
        tolerated.log_summary()


def read_pixel_data_into(
    location: PixelDataLocation, out: npt.NDArray[Any], *, start: int = 0
) -> None:
    """Read ``out.nbytes`` bytes of a Pixel Data value, from byte ``start`` on, into ``out``.

    Args:
        location: Where the value lies.
        out: A C-contiguous array, filled with the bytes as stored (no byte swapping).
        start: Offset in the value, e.g. of a frame.

    Raises:
        InvalidDicomError: The value is shorter, or the file cannot be read (any more).
    """
    name = location.path.name
    view = out.data.cast("B")
    if start + len(view) > location.length:
        raise InvalidDicomError(
            f"{name}: Pixel Data holds {location.length} bytes, fewer than "
            f"{start + len(view)} (truncated?)"
        )
    try:
        with location.path.open("rb", buffering=0) as fp:
            fp.seek(location.offset + start)
            done = 0
            while done < len(view):
                count = fp.readinto(view[done:])
                if not count:
                    raise InvalidDicomError(f"{name}: file ends inside the Pixel Data")
                done += count
    except OSError as exc:
        raise InvalidDicomError(f"{name}: cannot be read ({exc.strerror or exc})") from exc


def with_pixel_data(header: Dataset, location: PixelDataLocation) -> Dataset:
    """A new data set: the elements of ``header`` plus the Pixel Data read from its file."""
    data = bytearray(location.length)
    read_pixel_data_into(location, np.frombuffer(data, dtype=np.uint8))
    ds = Dataset({tag: element for tag, element in header.items()})
    if hasattr(header, "file_meta"):
        ds.file_meta = header.file_meta
    implicit, little = header.original_encoding
    ds.set_original_encoding(implicit, little, header.original_character_set)
    ds[_PIXEL_DATA] = DataElement(_PIXEL_DATA, location.vr, bytes(data))
    return ds


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
    tolerated: _Tolerated,
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
    path: Path, max_bytes: int, tolerated: _Tolerated
) -> tuple[Dataset, PixelDataLocation | None] | None:
    """The header and Pixel Data location of a plain file, else the whole instance;
    ``None`` for a zip archive."""
    try:
        with path.open("rb") as fp:
            head = _FileHead(fp)
            if _looks_like_zip(head.data[:132]):
                return None
            size = os.fstat(fp.fileno()).st_size
            _check_size(size, max_bytes, path.name)
            found = _header_and_location(head, size, path)
    except OSError as exc:
        raise InvalidDicomError(f"{path.name}: cannot be read ({exc.strerror or exc})") from exc
    if found is None:
        return _read_instance(path, False, max_bytes, tolerated), None
    ds, location = found
    return _check_and_tolerate(ds, path.name, tolerated, None), location


class _FileHead:
    """The first bytes of an open file, read further on demand."""

    def __init__(self, fp: BinaryIO) -> None:
        self.fp = fp
        self.data = fp.read(_HEADER_CHUNK)

    def has(self, end: int) -> bool:
        """Whether the file holds ``end`` bytes (then ``data`` holds at least as many)."""
        if end > len(self.data):
            self.fp.seek(len(self.data))
            self.data += self.fp.read(max(end - len(self.data), len(self.data)))
        return end <= len(self.data)


def _header_and_location(
    head: _FileHead, size: int, path: Path
) -> tuple[Dataset, PixelDataLocation] | None:
    """The data set up to uncompressed, defined-length Pixel Data that ends the file, and
    where that value lies; ``None`` for anything else (then the whole instance is read)."""
    if not head.has(144) or head.data[128:132] != b"DICM":
        return None  # no preamble: rare, read the usual way
    scanned = _scan_elements(head, 132, implicit=False, little=True, file_meta=True)
    if scanned is None:
        return None
    meta_elements, start = scanned
    file_meta = FileMetaDataset(meta_elements)
    encoding = _NATIVE_ENCODINGS.get(str(file_meta.get("TransferSyntaxUID", "") or ""))
    if encoding is None:
        return None
    implicit, little = encoding
    scanned = _scan_elements(head, start, implicit=implicit, little=little)
    if scanned is None:
        return None
    elements, end = scanned
    order: Any = "little" if little else "big"
    data = head.data
    if implicit:
        vr, length, value_offset = "OW", int.from_bytes(data[end + 4 : end + 8], order), end + 8
    else:
        vr = data[end + 4 : end + 6].decode("ascii", errors="replace")
        if vr not in ("OB", "OW") or data[end + 6 : end + 8] != b"\x00\x00":
            return None
        length, value_offset = int.from_bytes(data[end + 8 : end + 12], order), end + 12
    if length == _UNDEFINED_LENGTH or value_offset + length != size:
        return None
    ds = FileDataset(
        str(path),
        elements,  # taken as the data set's own element dict, as pydicom's reader does
        preamble=data[:128],
        file_meta=file_meta,
        is_implicit_VR=implicit,
        is_little_endian=little,
    )
    # As pydicom's reader does (Dataset._character_set).
    charset = _SPECIFIC_CHARACTER_SET
    text_encoding = convert_encodings(ds[charset].value) if charset in ds else default_encoding
    ds.set_original_encoding(implicit, little, text_encoding)
    return ds, PixelDataLocation(path, value_offset, length, vr, little)


def _scan_elements(
    head: _FileHead, pos: int, *, implicit: bool, little: bool, file_meta: bool = False
) -> tuple[dict[BaseTag, RawDataElement | DataElement], int] | None:
    """The top-level elements from ``pos`` up to the Pixel Data (7FE0,0010) or, for the file
    meta information, up to the first element of another group, and where that element
    starts; ``None`` if something else ends the data set or where pydicom would read an
    element in a way of its own (an implicit / explicit VR switch, an unknown VR, undefined
    length other than a sequence, command elements).

    The same elements as pydicom's reader gives (raw, converted only on access; sequences of
    undefined length read by pydicom itself), without its per-element overhead: this takes
    half the time of ``dcmread(..., stop_before_pixels=True)`` on a CT header.
    """
    endian = "<" if little else ">"
    unpack_tag = struct.Struct(f"{endian}HH").unpack_from
    unpack_16 = struct.Struct(f"{endian}H").unpack_from
    unpack_32 = struct.Struct(f"{endian}L").unpack_from
    item_tag = _ITEM if little else b"\xff\xfe\xe0\x00"
    encoding: str | list[str] = default_encoding
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    if not head.has(pos + 6):
        return None
    first_vr = head.data[pos + 4 : pos + 6]
    if implicit == (0x40 < first_vr[0] < 0x5B and 0x40 < first_vr[1] < 0x5B):
        return None  # pydicom switches between implicit and explicit VR here, with a warning
    data = head.data
    while pos + 12 <= len(data) or head.has(pos + 12):
        data = head.data
        group, number = unpack_tag(data, pos)
        tag = group << 16 | number
        if file_meta:
            if group != 0x0002:
                return elements, pos
        elif group == 0x7FE0 and number in (0x0008, 0x0009, 0x0010):
            return (elements, pos) if number == 0x0010 else None
        elif not group:
            return None  # command elements, which pydicom reads in a way of its own
        vr: str | None
        if implicit:
            vr, length, start = None, unpack_32(data, pos + 4)[0], pos + 8
        else:
            vr = _VRS.get(data[pos + 4 : pos + 6])
            if vr is None:
                return None
            if vr in EXPLICIT_VR_LENGTH_32:
                length, start = unpack_32(data, pos + 8)[0], pos + 12
            else:
                length, start = unpack_16(data, pos + 6)[0], pos + 8
        if tag == 0xFFFEE00D:
            return None
        if length == _UNDEFINED_LENGTH:
            # As pydicom's data_element_generator decides that it is a sequence.
            if vr == "UN" and pydicom_config.settings.infer_sq_for_un_vr:
                vr = "SQ"
            if vr is None or (vr == "UN" and pydicom_config.replace_un_with_known_vr):
                vr = _dictionary_vr(BaseTag(tag))
                if vr is None and data[start : start + 4] == item_tag:
                    vr = "SQ"
            if vr != "SQ" or file_meta:
                return None
            head.fp.seek(start)
            sequence = read_sequence(head.fp, implicit, little, length, encoding)
            element: RawDataElement | DataElement = DataElement(
                BaseTag(tag), vr, sequence, start, is_undefined_length=True
            )
            pos = head.fp.tell()
        else:
            pos = start + length
            if pos > len(data) and not head.has(pos):
                return None
            value = (
                head.data[start:pos]
                if length
                else cast(bytes | None, empty_value_for_VR(vr, raw=True))
            )
            element = RawDataElement(BaseTag(tag), vr, length, value, start, implicit, little)
            if tag == 0x00080005:  # Specific Character Set (an int: BaseTag.__eq__ is slow)
                text = convert_string(value or b"", little)
                encoding = convert_encodings(text)
        elements[element.tag] = element
    return None


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
    data: bytes, name: str, stop_before_pixels: bool, max_bytes: int, tolerated: _Tolerated
) -> Dataset:
    if _DEFLATED_UID in data[:1024]:
        _check_inflated_size(data, name, max_bytes)
    fp = io.BytesIO(data)
    ds = _parse(fp, name, stop_before_pixels)
    return _check_and_tolerate(ds, name, tolerated, None if stop_before_pixels else (fp, len(data)))


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
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = len(inflater.decompress(data[fp.tell() :], max_bytes + 1))
    except zlib.error as exc:
        raise InvalidDicomError(f"{name}: corrupt deflated data set ({exc})") from exc
    if inflated > max_bytes:
        raise InstanceTooLargeError(
            f"{name}: deflated data set inflates beyond the limit of {max_bytes} bytes"
        )


def _zip_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, max_bytes: int
) -> bytes:
    label = f"{name}:{info.filename}"
    # file_size is what the archive claims; read at most max_bytes + 1 in case it lies.
    _check_size(info.file_size, max_bytes, label)
    try:
        with archive.open(info) as member:
            data = member.read(max_bytes + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, RuntimeError, NotImplementedError) as exc:
        raise InvalidDicomError(f"{label}: corrupt or unsupported zip member ({exc})") from exc
    _check_size(len(data), max_bytes, label)
    return data


def _open_zip(fp: IO[bytes] | Path, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidDicomError(f"{name}: corrupt zip archive ({exc})") from exc


def _read_single_member(
    fp: IO[bytes], name: str, stop_before_pixels: bool, max_bytes: int, tolerated: _Tolerated
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
    path: Path, stop_before_pixels: bool, max_bytes: int, tolerated: _Tolerated
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


# --- checks and tolerated quirks -----------------------------------------------------------


def _check_and_tolerate(
    ds: Dataset, name: str, tolerated: _Tolerated, whole: tuple[IO[bytes], int] | None
) -> Dataset:
    """Raise for what is not an instance, repair and record the tolerated quirks.

    ``whole`` is the source and its size when the whole instance was read, so that bytes
    after the last element can be checked; ``None`` when reading stopped before the pixels.
    """
    has_preamble = getattr(ds, "preamble", None) is not None
    file_meta = getattr(ds, "file_meta", None)
    has_meta = file_meta is not None and len(file_meta) > 0
    if len(ds) == 0:
        if has_preamble or has_meta:
            raise InvalidDicomError(
                f"{name}: no data elements after the file meta information (truncated?)"
            )
        raise InvalidDicomError(f"{name}: not a DICOM instance")
    quirks = _repair_uid(ds, "SOPInstanceUID", "MediaStorageSOPInstanceUID")
    if not text_value(ds, "SOPInstanceUID"):
        if not (has_preamble or has_meta):
            raise InvalidDicomError(f"{name}: not a DICOM instance (no SOP Instance UID)")
        raise InvalidDicomError(
            f"{name}: no SOP Instance UID (a DICOMDIR or other non-instance, or truncated)"
        )
    quirks.extend(_check_truncation(ds, name, whole))
    if not has_preamble:
        quirks.append("no 128-byte preamble")
    if not has_meta or _TRANSFER_SYNTAX_UID not in ds.file_meta:
        quirks.append(_infer_transfer_syntax(ds))
    quirks.extend(_repair_uid(ds, "SOPClassUID", "MediaStorageSOPClassUID"))
    quirks.extend(_tolerate_long_values(ds))
    tolerated.add(name, quirks)
    if not text_value(ds, "SOPClassUID"):
        tolerated.add_without_sop_class(name)
    return ds


def _check_truncation(ds: Dataset, name: str, whole: tuple[IO[bytes], int] | None) -> list[str]:
    """Raise if the data ends inside an element; a few trailing zero bytes are tolerated."""
    quirks: list[str] = []
    last = ds.get_item(list(ds.keys())[-1], keep_deferred=True)
    if not isinstance(last, RawDataElement) or last.value is None:
        return quirks
    if last.length != _UNDEFINED_LENGTH:
        if len(last.value) < last.length:
            raise InvalidDicomError(
                f"{name}: truncated: element {last.tag} holds {len(last.value)} of "
                f"{last.length} bytes"
            )
        if whole is None:
            return quirks
        fp, size = whole
        meta = getattr(ds, "file_meta", Dataset())
        deflated = meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian
        end = last.value_tell + last.length
        unread = size - end
        if not deflated and unread > 0:
            fp.seek(end)
            if unread > _MAX_TRAILING_PADDING or fp.read(unread).strip(b"\x00"):
                raise InvalidDicomError(
                    f"{name}: {unread} bytes after the last complete element cannot be read "
                    "(truncated or corrupt)"
                )
            quirks.append(f"{unread} trailing zero bytes ignored")
    elif last.tag == _PIXEL_DATA:
        _check_fragments(last.value, name)
    return quirks


def _check_fragments(value: bytes, name: str) -> None:
    """Walk the items of encapsulated pixel data; a short or broken item means truncation."""
    offset, items = 0, 0
    while offset < len(value):
        tag = value[offset : offset + 4]
        if tag == _SEQUENCE_DELIMITER:
            break
        if tag != _ITEM or offset + 8 > len(value):
            raise InvalidDicomError(f"{name}: encapsulated pixel data is truncated or corrupt")
        offset += 8 + int.from_bytes(value[offset + 4 : offset + 8], "little")
        items += 1
    if offset > len(value) or items < 2:
        raise InvalidDicomError(f"{name}: encapsulated pixel data is truncated")


def _infer_transfer_syntax(ds: Dataset) -> str:
    implicit, little = ds.original_encoding
    if implicit is None:
        return "no Transfer Syntax UID"
    pixel = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    if pixel is not None and _is_undefined_length(pixel):
        return "no Transfer Syntax UID and encapsulated pixel data (cannot be decoded)"
    uid = (
        pydicom.uid.ImplicitVRLittleEndian
        if implicit
        else pydicom.uid.ExplicitVRLittleEndian
        if little
        else pydicom.uid.ExplicitVRBigEndian
    )
    if not hasattr(ds, "file_meta"):
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    return f"no file meta information (read as {uid.name})"


def _repair_uid(ds: Dataset, keyword: str, meta_keyword: str) -> list[str]:
    """Fill a blank or missing SOP Class / Instance UID from its file meta counterpart."""
    if text_value(ds, keyword):
        return []
    meta_uid = text_value(getattr(ds, "file_meta", Dataset()), meta_keyword)
    state = "blank" if keyword in ds else "missing"
    if not meta_uid:
        return [f"{state} {keyword}"]
    setattr(ds, keyword, meta_uid)
    return [f"{state} {keyword} (set from the file meta {meta_keyword})"]


def _tolerate_long_values(ds: Dataset) -> list[str]:
    """Convert top-level values longer than their VR allows without validation (see module)."""
    found: list[str] = []
    encodings: list[str] | None = None
    for tag, element in list(ds.items()):
        # Cheapest tests first: this runs for every element of every instance.
        if type(element) is not RawDataElement:
            continue
        value = element.value
        if not value or len(value) <= _SHORTEST_LIMIT or tag.is_private:
            continue
        vr = element.VR or _dictionary_vr(tag)
        limit = _MAX_CHARS.get(vr or "")
        if vr is None or limit is None or len(value) <= limit:
            continue
        parts = [value] if vr in ("ST", "LT") else value.split(b"\\")
        if vr == "PN":
            parts = [group for part in parts for group in part.split(b"=")]
        if all(len(part.rstrip(b" \x00")) <= limit for part in parts):
            continue
        if encodings is None:
            encodings = convert_encodings(ds.get("SpecificCharacterSet"))
        text = decode_bytes(value, encodings, set()).rstrip(" \x00")
        ds[tag] = DataElement(
            tag, vr, text, element.value_tell, validation_mode=pydicom_config.IGNORE
        )
        found.append(f"{keyword_for_tag(tag) or tag} ({vr}) longer than {limit} characters")
    return found


def _dictionary_vr(tag: BaseTag) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _is_undefined_length(element: DataElement | RawDataElement) -> bool:
    if isinstance(element, RawDataElement):
        return element.length == _UNDEFINED_LENGTH
    return element.is_undefined_length
