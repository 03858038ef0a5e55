"""Reading a DICOM SEG (BINARY, FRACTIONAL or LABELMAP) as a label map on a reference grid.

Each frame is placed by its Image Position (Patient) on the reference grid, never by frame
order. Besides what pydicom decodes, two frame encodings are decoded here: 1-bit frames in
RLE Lossless and Deflated Image Frame Compression, and native 1-bit frames packed one after
the other (a frame may start inside a byte). :mod:`radserve.dicom_io.seg.writing` re-exports
:func:`read_seg`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import iter_pixels
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from radserve.dicom_io.errors import DicomIOError, MaskError
from radserve.dicom_io.masks.labelmap import Code, LabelMap, SegmentInfo
from radserve.dicom_io.reading.instances import read_instance
from radserve.dicom_io.volume import Volume

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASS_UIDS = frozenset({SEGMENTATION_STORAGE, LABEL_MAP_SEGMENTATION_STORAGE})
"""The SOP Classes of a DICOM SEG (Segmentation and Label Map Segmentation Storage)."""
DEFLATED_IMAGE_FRAME_COMPRESSION = "1.2.840.10008.1.2.8.1"
_NATIVE_LITTLE_ENDIAN = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
)
GRID_TOLERANCE_VOXELS = 0.25
"""How far from the grid a position may lie, in voxels (when writing and reading)."""


def read_seg(
    seg: Dataset | str | Path,
    *,
    reference: Volume,
    overlap: Literal["error", "later_wins"] = "error",
    fractional_threshold: float = 0.5,
) -> LabelMap:
    """Read a BINARY, FRACTIONAL or LABELMAP SEG as a label map on the reference grid.

    Frames are placed by their Image Position (Patient); they must lie on the reference grid
    (same orientation axes, possibly flipped or permuted, and the same spacing). Labels are
    the Segment Numbers; every described segment is listed, with or without voxels.

    Args:
        seg: The SEG instance or its path.
        reference: The grid to read onto (usually the source series' volume).
        overlap: ``"error"`` raises on overlapping segments; ``"later_wins"`` keeps the
            higher Segment Number.
        fractional_threshold: FRACTIONAL pixels count when value / Maximum Fractional Value
            reaches this.

    Raises:
        MaskError: Not a SEG, corrupt, another Frame of Reference, frames off the grid, or
            overlapping segments with ``overlap="error"``.
    """
    ds = _load(seg)
    segmentation_type = str(ds.get("SegmentationType", ""))
    if segmentation_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise MaskError(f"unsupported Segmentation Type {segmentation_type!r}")
    segments = _segment_infos(ds, labelmap=segmentation_type == "LABELMAP")
    seg_for, ref_for = ds.get("FrameOfReferenceUID"), reference.frame_of_reference_uid
    if not seg_for:
        raise MaskError("SEG has no Frame of Reference UID: it cannot be placed in space")
    if ref_for and str(seg_for) != ref_for:
        raise MaskError("SEG is on another Frame of Reference than the reference volume")
    cutoff = 0.5  # BINARY and LABELMAP pixels count when nonzero
    if segmentation_type == "FRACTIONAL":
        maximum = float(ds.get("MaximumFractionalValue", 255) or 255)
        cutoff = max(fractional_threshold * maximum, 0.5)
    padding = ds.get("PixelPaddingValue") if segmentation_type == "LABELMAP" else None
    if padding is not None and int(padding) in segments:
        padding = None  # a described segment is never padding
    described = np.zeros(max(segments, default=0) + 1, dtype=bool)
    described[list(segments)] = True
    array = np.zeros(reference.shape, dtype=np.uint8 if described.size <= 256 else np.uint16)
    voxels = array.reshape(-1)
    inverse = np.asarray(np.linalg.inv(reference.affine_lps()), dtype=np.float64)
    for geometry, pixels in zip(_frame_geometries(ds), _iter_frames(ds), strict=True):
        inside = pixels >= cutoff
        if padding is not None:
            inside &= pixels != padding
        flat = np.flatnonzero(inside)
        if flat.size == 0:
            continue
        number = geometry.segment_number
        values = pixels.reshape(-1)[flat] if number is None else np.full(flat.size, number)
        if np.any(values >= described.size) or not described[values].all():
            raise MaskError("corrupt SEG: pixels of a segment missing from the Segment Sequence")
        rows, columns = np.divmod(flat, pixels.shape[1])
        target = _place(geometry, rows, columns, inverse, reference.shape)
        # Voxels hold the highest segment number that covers them, whatever the frame order.
        existing = voxels[target]
        if overlap == "error" and np.any((existing != 0) & (existing != values)):
            raise MaskError("segments overlap; read with overlap='later_wins' to keep the later")
        voxels[target] = np.maximum(existing, values)
    return LabelMap(volume=reference.with_array(array), segments=tuple(segments.values()))


def _load(seg: Dataset | str | Path) -> Dataset:
    try:
        ds = seg if isinstance(seg, Dataset) else read_instance(seg)
    except DicomIOError as exc:
        raise MaskError(f"not a DICOM SEG: {exc}") from exc
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in SEG_SOP_CLASS_UIDS and ds.get("Modality") != "SEG":
        raise MaskError(f"not a DICOM SEG (Modality {ds.get('Modality', 'missing')})")
    for keyword in ("PixelData", "SegmentSequence", "SharedFunctionalGroupsSequence"):
        if keyword not in ds:
            raise MaskError(f"corrupt SEG: no {keyword}")
    return ds


def _segment_infos(ds: Dataset, *, labelmap: bool) -> dict[int, SegmentInfo]:
    infos: dict[int, SegmentInfo] = {}
    for item in ds.SegmentSequence:
        number = int(item.get("SegmentNumber", 0))
        if labelmap and number == 0:
            continue  # the background of a LABELMAP SEG
        try:
            infos[number] = SegmentInfo(
                label=number,
                name=str(item.get("SegmentLabel", "")) or f"Segment {number}",
                category=_read_code(item, "SegmentedPropertyCategoryCodeSequence"),
                type=_read_code(item, "SegmentedPropertyTypeCodeSequence"),
                description=str(item.get("SegmentDescription", "")) or None,
            )
        except (ValueError, AttributeError, IndexError) as exc:
            raise MaskError(f"corrupt SEG: bad segment {number} ({exc})") from exc
    return infos


def _read_code(item: Dataset, keyword: str) -> Code:
    code = item[keyword].value[0]
    value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue")
    return Code(str(value), str(code.CodingSchemeDesignator), str(code.CodeMeaning))


@dataclass(frozen=True)
class _FrameGeometry:
    position: npt.NDArray[np.float64]
    row_step: npt.NDArray[np.float64]  # LPS step from one column to the next
    column_step: npt.NDArray[np.float64]  # LPS step from one row to the next
    segment_number: int | None


def functional_group(item: Dataset | None, shared: Dataset, keyword: str) -> Dataset:
    for group in (item, shared):
        if group is not None and keyword in group and len(group[keyword].value):
            item_: Dataset = group[keyword].value[0]
            return item_
    raise MaskError(f"corrupt SEG: a frame has no {keyword}")


def _frame_geometries(ds: Dataset) -> list[_FrameGeometry]:
    shared = ds.SharedFunctionalGroupsSequence[0]
    count = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or [None] * count
    if len(per_frame) != count:
        raise MaskError("corrupt SEG: Number of Frames does not match the functional groups")
    labelmap = ds.SegmentationType == "LABELMAP"
    geometries = []
    try:
        for item in per_frame:
            cosines = np.asarray(
                functional_group(item, shared, "PlaneOrientationSequence").ImageOrientationPatient,
                dtype=float,
            )
            spacing = functional_group(item, shared, "PixelMeasuresSequence").PixelSpacing
            position = functional_group(item, shared, "PlanePositionSequence")
            number = None
            if not labelmap:
                identification = functional_group(item, shared, "SegmentIdentificationSequence")
                number = int(identification.ReferencedSegmentNumber)
            geometries.append(
                _FrameGeometry(
                    position=np.asarray(position.ImagePositionPatient, dtype=float),
                    row_step=cosines[:3] * float(spacing[1]),
                    column_step=cosines[3:] * float(spacing[0]),
                    segment_number=number,
                )
            )
    except (AttributeError, ValueError, TypeError, IndexError) as exc:
        raise MaskError(f"corrupt SEG: bad frame geometry ({exc})") from exc
    return geometries


def _iter_frames(ds: Dataset) -> Iterator[npt.NDArray[Any]]:
    """Decoded frames, including two frame encodings pydicom 3.0 does not decode."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        if syntax == DEFLATED_IMAGE_FRAME_COMPRESSION:
            yield from _iter_encapsulated_frames(ds, lambda data, _: zlib.decompress(data, -15))
        elif syntax == RLELossless and int(ds.BitsAllocated) == 1:
            yield from _iter_encapsulated_frames(ds, _decode_rle_segment)
        elif syntax in _NATIVE_LITTLE_ENDIAN and int(ds.BitsAllocated) == 1:
            yield from _iter_native_bit_frames(ds)
        else:
            yield from iter_pixels(ds)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, KeyError) as exc:
        raise MaskError(f"corrupt SEG: pixel data cannot be decoded ({exc})") from exc
    except zlib.error as exc:
        raise MaskError(f"corrupt SEG: a deflated frame cannot be inflated ({exc})") from exc


def _iter_native_bit_frames(ds: Dataset) -> Iterator[npt.NDArray[np.uint8]]:
    """1-bit frames packed one after the other; a frame may start inside a byte."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    pixels = rows * columns
    count = int(ds.get("NumberOfFrames", 1) or 1)
    data = np.frombuffer(ds.PixelData, dtype=np.uint8)
    if data.size * 8 < pixels * count:
        raise MaskError("corrupt SEG: the pixel data is shorter than the frames")
    for index in range(count):
        start = index * pixels
        chunk = data[start // 8 : (start + pixels + 7) // 8]
        bits = np.unpackbits(chunk, bitorder="little")[start % 8 : start % 8 + pixels]
        yield bits.reshape(rows, columns)


def _iter_encapsulated_frames(
    ds: Dataset, decode: Callable[[bytes, int], bytes]
) -> Iterator[npt.NDArray[Any]]:
    """Frames whose fragments ``decode(fragment, size)`` turns into native frame bytes."""
    rows, columns, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
    size = (rows * columns * bits + 7) // 8
    count = int(ds.get("NumberOfFrames", 1) or 1)
    for frame in generate_frames(ds.PixelData, number_of_frames=count):
        native = np.frombuffer(decode(frame, size)[:size], dtype=f"<u{max(bits // 8, 1)}")
        if native.size * max(bits // 8, 1) < size:
            raise MaskError("corrupt SEG: a frame is shorter than Rows x Columns")
        if bits == 1:  # each encapsulated frame starts on a byte boundary
            native = np.unpackbits(native.astype(np.uint8), bitorder="little")
        yield native[: rows * columns].reshape(rows, columns)


def _decode_rle_segment(frame: bytes, size: int) -> bytes:
    """One RLE Lossless frame holding one PackBits segment (PS3.5 G.3.2)."""
    segments, first = struct.unpack_from("<2I", frame)
    if segments != 1:
        raise MaskError(f"corrupt SEG: {segments} RLE segments in a 1-bit frame")
    out = bytearray()
    position = first
    while len(out) < size and position < len(frame):
        header = frame[position] - 256 if frame[position] > 127 else frame[position]
        position += 1
        if header >= 0:
            out += frame[position : position + header + 1]
            position += header + 1
        elif header != -128:
            out += frame[position : position + 1] * (1 - header)
            position += 1
    return bytes(out)


def _place(
    geometry: _FrameGeometry,
    rows: npt.NDArray[np.intp],
    columns: npt.NDArray[np.intp],
    inverse: npt.NDArray[np.float64],
    shape: tuple[int, int, int],
) -> npt.NDArray[np.intp]:
    """Flat indices into a ``[k, j, i]`` array of the given frame pixels."""
    origin = inverse[:3, :3] @ geometry.position + inverse[:3, 3]
    steps = np.stack([inverse[:3, :3] @ geometry.row_step, inverse[:3, :3] @ geometry.column_step])
    whole = np.rint(np.r_[origin[None], steps]).astype(np.intp)
    extent = np.array([[0, 0], [columns.max(), 0], [0, rows.max()], [columns.max(), rows.max()]])
    exact = origin + extent @ steps
    snapped = whole[0] + extent @ whole[1:]
    axes_ok = sorted(np.abs(whole[1:]).sum(axis=1).tolist()) == [1, 1] and np.all(
        np.abs(whole[1:]).sum(axis=0) <= 1
    )
    if not axes_ok or np.abs(exact - snapped).max() > GRID_TOLERANCE_VOXELS:
        raise MaskError("SEG frames are not on the reference grid (position, spacing or axes)")
    ijk = whole[0] + columns[:, None] * whole[1] + rows[:, None] * whole[2]
    size = np.array(shape[::-1])
    if np.any(ijk < 0) or np.any(ijk >= size):
        raise MaskError("SEG has segment pixels outside the reference grid")
    return np.asarray((ijk[:, 2] * shape[1] + ijk[:, 1]) * shape[2] + ijk[:, 0], dtype=np.intp)
