"""Checks and tolerated quirks of a parsed instance, for :mod:`radserve.dicom_io.reading.instances`.

:func:`check_and_tolerate` raises :class:`InvalidDicomError` for what is not an instance
(no data elements, no SOP Instance UID, truncated data) and repairs or records the quirks
that real archives contain; :class:`ToleratedQuirks` collects them over one read and logs
one summary line at its end, never with a value.

Non-conformant values and pydicom's global configuration: pydicom validates a value lazily,
when the element is first accessed, with the process-wide
``pydicom.config.settings.reading_validation_mode``. radserve never changes that setting: it
is global (a change would leak into other threads and into writers, which share the same
``DataElement`` machinery), and a scoped change around ``dcmread`` would not even cover the
later, lazy conversion. Instead :func:`check_and_tolerate` finds the top-level values longer than
their VR allows (the common quirk: an over-long Study ID or Institution Name) and converts
just those elements with a per-element ``validation_mode=IGNORE``. They then never raise,
even where an application sets reading validation to RAISE, and pydicom never logs them
with their value (its warnings quote values, which may be PHI). Other non-conformant values
(bad characters, values nested in sequences) keep pydicom's default behaviour: a warning,
no exception.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import IO

import pydicom
from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from radserve.dicom_io.errors import InvalidDicomError
from radserve.dicom_io.reading.enhanced import text_value

_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM, _SEQUENCE_DELIMITER = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"
_PIXEL_DATA = BaseTag(0x7FE00010)
_TRANSFER_SYNTAX_UID = BaseTag(0x00020010)
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


class ToleratedQuirks:
    """The quirks tolerated during one call, logged as one summary line at its end.

    Args:
        logger: Where to log, the reader's logger (where callers look for these lines).
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.quirks: Counter[str] = Counter()
        self.instances = 0
        self.without_sop_class = 0

    def add(self, name: str, quirks: list[str]) -> None:
        if quirks:
            self.logger.debug("%s: tolerated: %s", name, "; ".join(quirks))
            self.instances += 1
            self.quirks.update(quirks)

    def add_without_sop_class(self, name: str) -> None:
        self.logger.debug("%s: no SOP Class UID", name)
        self.without_sop_class += 1

    def log_summary(self) -> None:
        if self.instances:
            listed = "; ".join(
                quirk if count == self.instances else f"{quirk} in {count}"
                for quirk, count in self.quirks.most_common()
            )
            self.logger.info("tolerated in %s: %s", _instances(self.instances), listed)
        if self.without_sop_class:
            self.logger.warning(
                "%s without a SOP Class UID; writers cannot reference them",
                _instances(self.without_sop_class),
            )


def _instances(count: int) -> str:
    return f"{count} instance" if count == 1 else f"{count} instances"


def check_and_tolerate(
    ds: Dataset, name: str, tolerated: ToleratedQuirks, whole: tuple[IO[bytes], int] | None
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
        vr = element.VR or dictionary_vr(tag)
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


def dictionary_vr(tag: BaseTag) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _is_undefined_length(element: DataElement | RawDataElement) -> bool:
    if isinstance(element, RawDataElement):
        return element.length == _UNDEFINED_LENGTH
    return element.is_undefined_length
