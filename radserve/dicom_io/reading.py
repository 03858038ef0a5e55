"""Reading DICOM instances from files, folders, zip archives and bytes.

Strict about what is not DICOM, tolerant of what real archives contain:

* Garbage, empty, truncated and oversized inputs raise :class:`InvalidDicomError` (or its
  subclass :class:`InstanceTooLargeError`) with a message naming the problem.
* Real-world quirks are read and logged (INFO, one line per instance, never a value): no
  128-byte preamble, no file meta information (the transfer syntax is then inferred and
  recorded in ``file_meta``), a blank or missing SOP Class / Instance UID (repaired from the
  Media Storage SOP Class / Instance UID when the file meta has one), values longer than
  their VR allows.

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
"""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset, read_preamble
from pydicom.tag import BaseTag

from radserve.dicom_io import transfer_syntax
from radserve.dicom_io.errors import InstanceTooLargeError, InvalidDicomError

logger = logging.getLogger(__name__)

DEFAULT_MAX_INSTANCE_BYTES = 2 * 1024**3
"""Default limit on the size of one instance (a file, an archive member, inflated data)."""

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_DEFLATED_UID = pydicom.uid.DeflatedExplicitVRLittleEndian.encode()
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM, _SEQUENCE_DELIMITER = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"
_PIXEL_DATA = BaseTag(0x7FE00010)
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
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        _check_size(len(data), max_bytes, "<bytes>")
        if _looks_like_zip(data[:132]):
            return _read_single_member(io.BytesIO(data), "<bytes>", stop_before_pixels, max_bytes)
        return _read_bytes(data, "<bytes>", stop_before_pixels, max_bytes)
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
                return _read_single_member(fp, name, stop_before_pixels, max_bytes)
            if _DEFLATED_UID in head:  # inflate with a bound; pydicom would not
                fp.seek(0)
                return _read_bytes(fp.read(), name, stop_before_pixels, max_bytes)
            fp.seek(0)
            ds = _parse(fp, name, stop_before_pixels)
            return _check_and_tolerate(ds, name, fp, size, stop_before_pixels)
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
    for path in map(Path, paths):
        if path.is_dir():
            yield from iter_instances(
                sorted(p for p in path.rglob("*") if p.is_file()),
                stop_before_pixels=stop_before_pixels,
                max_bytes=max_bytes,
            )
            continue
        if _is_zip(path):
            yield from _iter_zip(path, stop_before_pixels, max_bytes)
            continue
        try:
            ds = read_instance(path, stop_before_pixels=stop_before_pixels, max_bytes=max_bytes)
        except InstanceTooLargeError:
            raise
        except InvalidDicomError as exc:
            logger.info("skipping %s", exc)
            continue
        yield ds


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


def _read_bytes(data: bytes, name: str, stop_before_pixels: bool, max_bytes: int) -> Dataset:
    if _DEFLATED_UID in data[:1024]:
        _check_inflated_size(data, name, max_bytes)
    fp = io.BytesIO(data)
    ds = _parse(fp, name, stop_before_pixels)
    return _check_and_tolerate(ds, name, fp, len(data), stop_before_pixels)


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
    fp: IO[bytes], name: str, stop_before_pixels: bool, max_bytes: int
) -> Dataset:
    with _open_zip(fp, name) as archive:
        members = _zip_members(archive)
        if len(members) != 1:
            raise InvalidDicomError(
                f"{name}: zip archive holds {len(members)} files, not one (use iter_instances)"
            )
        data = _read_member(archive, members[0], name, max_bytes)
    return _read_bytes(data, f"{name}:{members[0].filename}", stop_before_pixels, max_bytes)


def _iter_zip(path: Path, stop_before_pixels: bool, max_bytes: int) -> Iterator[Dataset]:
    with _open_zip(path, path.name) as archive:
        for info in _zip_members(archive):
            data = _read_member(archive, info, path.name, max_bytes)
            label = f"{path.name}:{info.filename}"
            try:
                ds = _read_bytes(data, label, stop_before_pixels, max_bytes)
            except InstanceTooLargeError:
                raise
            except InvalidDicomError as exc:
                logger.info("skipping %s", exc)
                continue
            yield ds


# --- checks and tolerated quirks -----------------------------------------------------------


def _check_and_tolerate(
    ds: Dataset, name: str, fp: IO[bytes], size: int, stop_before_pixels: bool
) -> Dataset:
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
    if not str(ds.get("SOPInstanceUID", "") or ""):
        if not (has_preamble or has_meta):
            raise InvalidDicomError(f"{name}: not a DICOM instance (no SOP Instance UID)")
        raise InvalidDicomError(
            f"{name}: no SOP Instance UID (a DICOMDIR or other non-instance, or truncated)"
        )
    quirks.extend(_check_truncation(ds, name, fp, size, stop_before_pixels))
    if not has_preamble:
        quirks.append("no 128-byte preamble")
    if not has_meta or "TransferSyntaxUID" not in ds.file_meta:
        quirks.append(_infer_transfer_syntax(ds))
    quirks.extend(_repair_uid(ds, "SOPClassUID", "MediaStorageSOPClassUID"))
    quirks.extend(_tolerate_long_values(ds))
    if quirks:
        logger.info("%s: tolerated: %s", name, "; ".join(quirks))
    if not str(ds.get("SOPClassUID", "") or ""):
        logger.warning("%s: no SOP Class UID; writers cannot reference this instance", name)
    return ds


def _check_truncation(
    ds: Dataset, name: str, fp: IO[bytes], size: int, stop_before_pixels: bool
) -> list[str]:
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
        meta = getattr(ds, "file_meta", Dataset())
        deflated = meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian
        end = last.value_tell + last.length
        unread = size - end
        if not stop_before_pixels and not deflated and unread > 0:
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
    if str(ds.get(keyword, "") or ""):
        return []
    meta_uid = str(getattr(ds, "file_meta", Dataset()).get(meta_keyword, "") or "")
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
