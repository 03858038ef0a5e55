"""Header-only parsing of plain files, and reading uncompressed Pixel Data in place.

:func:`header_and_location` parses a file's data set up to its Pixel Data, with the same
elements pydicom's reader gives, and records where the uncompressed value lies
(:class:`PixelDataLocation`), so that a caller can read the pixels straight into its own
array with :func:`read_pixel_data_into` instead of pydicom allocating a ``bytes`` object per
instance. :func:`~radserve.dicom_io.reading.instances.iter_instance_headers` uses it
for every file it can, and reads anything else whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import convert_string

from radserve.dicom_io.errors import InvalidDicomError
from radserve.dicom_io.reading.quirks import dictionary_vr

_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = b"\xfe\xff\x00\xe0"
_PIXEL_DATA = BaseTag(0x7FE00010)
_SPECIFIC_CHARACTER_SET = BaseTag(0x00080005)
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


class FileHead:
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


def header_and_location(
    head: FileHead, size: int, path: Path
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
    head: FileHead, pos: int, *, implicit: bool, little: bool, file_meta: bool = False
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
                vr = dictionary_vr(BaseTag(tag))
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
