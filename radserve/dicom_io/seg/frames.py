"""The frames of a DICOM SEG being written: bit-packed pixel data and per-frame items.

:func:`binary_frames` and :func:`labelmap_frames` encode the slices of each segment that have
voxels, with numpy; :func:`set_frames` adds the Per-Frame Functional Groups as highdicom's
constructor writes them, encoded directly as explicit VR little endian bytes (parsed by
pydicom only on first access). Building and serializing one pydicom data set per frame is
what makes highdicom's own path slow (``bench/seg_write.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.charset import convert_encodings
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sr.codedict import codes
from pydicom.tag import Tag
from scipy import ndimage

from radserve.dicom_io.errors import MaskError
from radserve.dicom_io.masks.labelmap import SegmentInfo

# Above this many segments one scipy pass finding every bounding box beats one compare each.
_MAX_SEGMENTS_COMPARED = 8
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})


@dataclass(frozen=True)
class SourceFrame:
    """One source slice: its references and the Image Position (Patient) strings."""

    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None
    position: tuple[str, str, str]


@dataclass(frozen=True)
class _Extent:
    """Where a segment has voxels: its bounding box and the mask inside it."""

    box: tuple[slice, slice, slice]
    mask: npt.NDArray[np.bool_]


def segment_extents(array: npt.NDArray[Any], segments: Sequence[SegmentInfo]) -> dict[int, _Extent]:
    """The extent of each declared segment that has voxels; undeclared labels raise."""
    declared = {s.label for s in segments}
    if array.size == 0 or array.min() < 0 or array.max() > 65535:
        raise MaskError("label map values must lie in 0..65535")
    if len(declared) > _MAX_SEGMENTS_COMPARED:
        found = ndimage.find_objects(array)
        present = {label for label, box in enumerate(found, 1) if box is not None}
        if present - declared:
            raise MaskError(
                f"label map values without a SegmentInfo: {sorted(present - declared)[:10]}"
            )
        return {
            label: _Extent(found[label - 1], array[found[label - 1]] == label)
            for label in sorted(present)
        }
    extents = {}
    for label in sorted(declared):
        mask = array == label
        slices = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
        if slices.size == 0:
            continue
        z = slice(int(slices[0]), int(slices[-1]) + 1)
        footprint = mask[z].any(axis=0)
        y, x = (np.flatnonzero(footprint.any(axis=axis)) for axis in (1, 0))
        box = (z, slice(int(y[0]), int(y[-1]) + 1), slice(int(x[0]), int(x[-1]) + 1))
        extents[label] = _Extent(box, np.ascontiguousarray(mask[box]))
    counted = sum(int(np.count_nonzero(e.mask)) for e in extents.values())
    if counted != np.count_nonzero(array):
        values = sorted(set(np.unique(array).tolist()) - declared - {0})
        raise MaskError(f"label map values without a SegmentInfo: {values[:10]}")
    return extents


def binary_frames(
    shape: tuple[int, ...],
    extents: list[_Extent],
    order: list[int],
    *,
    fractional_value: int | None = None,
) -> tuple[list[list[int]], bytes]:
    """Slices with content per segment (in ``order``) and the bit-packed frames.

    With ``fractional_value`` the frames are FRACTIONAL ones instead: a byte a pixel,
    ``fractional_value`` inside the segment and 0 outside.
    """
    rows, columns = shape[1:]
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(len(order))
    presents = []
    for extent in extents:
        inside, start = extent.mask, extent.box[0].start
        present = np.flatnonzero(inside.reshape(inside.shape[0], -1).any(axis=1))
        presents.append(present[np.argsort(rank[start + present], kind="stable")])
    planes = [[int(k) for k in e.box[0].start + p] for e, p in zip(extents, presents, strict=True)]
    count = sum(p.size for p in presents)
    whole_bytes = columns % 8 == 0 and fractional_value is None
    # Frames of packed rows when rows are whole bytes, else of pixels packed as one stream.
    frames = np.zeros((count, rows, columns // 8 if whole_bytes else columns), dtype=np.uint8)
    done = 0
    for extent, present in zip(extents, presents, strict=True):
        (_, y, x), inside = extent.box, extent.mask[present]
        target = frames[done : done + present.size]
        done += present.size
        if whole_bytes:
            # Pack only the box, widened to whole bytes.
            first, last = x.start // 8, -(-x.stop // 8)
            widened = np.zeros((*inside.shape[:2], 8 * (last - first)), dtype=bool)
            widened[:, :, x.start - 8 * first : x.stop - 8 * first] = inside
            target[:, y, first:last] = np.packbits(widened, axis=-1, bitorder="little")
        else:
            target[:, y, x] = inside
    if fractional_value is not None:
        return planes, (frames * np.uint8(fractional_value)).tobytes()
    if whole_bytes:
        return planes, frames.tobytes()
    return planes, np.packbits(frames.reshape(-1), bitorder="little").tobytes()


def labelmap_frames(
    array: npt.NDArray[Any], max_number: int, order: list[int]
) -> tuple[list[list[int]], bytes]:
    dtype = np.uint8 if max_number < 256 else np.dtype("<u2")  # little endian on any host
    nonempty = np.asarray(array.reshape(array.shape[0], -1).any(axis=1))
    slices = [k for k in order if nonempty[k]]
    return [slices], array[slices].astype(dtype).tobytes()


def set_frames(
    ds: Dataset,
    frames: list[SourceFrame],
    channels: list[tuple[int | None, list[int]]],
    included: list[int],
    per_frame_segment: bool,
) -> None:
    """Per-Frame Functional Groups as highdicom writes them, encoded directly as bytes."""
    derivation = _encode_item(
        hd.sr.CodedConcept.from_code(codes.cid7203.SegmentationImageDerivation)
    )
    purpose = _encode_item(
        hd.sr.CodedConcept.from_code(codes.cid7202.SourceImageForImageProcessingOperation)
    )
    per_slice: dict[int, tuple[bytes, bytes]] = {}
    for k in included:
        f = frames[k]
        source = (
            _element(0x00081150, "UI", f.sop_class_uid.encode())
            + _element(0x00081155, "UI", f.sop_instance_uid.encode())
            + (_element(0x00081160, "IS", str(f.frame_number).encode()) if f.frame_number else b"")
            + _element(0x0028135A, "CS", b"YES")
            + _sequence(0x0040A170, [purpose])
        )
        image = _sequence(0x00082112, [source]) + _sequence(0x00089215, [derivation])
        position = _element(0x00200032, "DS", "\\".join(f.position).encode())
        per_slice[k] = (_sequence(0x00089124, [image]), _sequence(0x00209113, [position]))
    dimension = {k: i for i, k in enumerate(included, 1)}
    items = []
    for channel, (number, ks) in enumerate(channels, 1):
        segment = (
            _sequence(0x0062000A, [_element(0x0062000B, "US", struct.pack("<H", number))])
            if per_frame_segment and number is not None
            else b""
        )
        prefix = [channel] if number is not None else []
        for k in ks:
            values = struct.pack(f"<{len(prefix) + 1}I", *prefix, dimension[k])
            content = _sequence(0x00209111, [_element(0x00209157, "UL", values)])
            derivation_image, plane = per_slice[k]
            items.append(derivation_image + content + plane + segment)
    value = _sequence_value(items)
    ds[0x52009230] = RawDataElement(Tag(0x52009230), "SQ", len(value), value, 0, False, True)
    charset = convert_encodings(ds.get("SpecificCharacterSet", "ISO_IR 6"))
    ds.set_original_encoding(False, True, charset)


def _element(tag: int, vr: str, value: bytes) -> bytes:
    """One explicit VR little endian element."""
    if len(value) % 2:
        value += b"\x00" if vr == "UI" else b" "
    head = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode())
    if vr in _LONG_VRS:
        return head + struct.pack("<HI", 0, len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _sequence_value(items: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(i)) + i for i in items)


def _sequence(tag: int, items: Sequence[bytes]) -> bytes:
    return _element(tag, "SQ", _sequence_value(items))


def _encode_item(item: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, item)
    return fp.getvalue()
