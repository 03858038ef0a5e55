"""Image planes of DICOM instances, including enhanced multi-frame images.

A single-frame image is one plane, described by its top-level attributes. An enhanced
multi-frame image (Enhanced CT / MR / PET, Legacy Converted Enhanced) holds one plane per
frame, described by its functional groups: each macro (Plane Position, Plane Orientation,
Pixel Measures, Pixel Value Transformation, ...) comes from the frame's item of the Per-Frame
Functional Groups Sequence or, failing that, from the Shared Functional Groups Sequence.
Private functional groups are ignored.

:mod:`radserve.dicom_io.reading.series` sorts, checks and stacks the planes of a series.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from radserve.dicom_io.errors import InvalidDicomError, NotAVolumeError

# Top-level attributes that tell stacks of single-frame images apart (for error messages).
_SINGLE_FRAME_STACK_KEYWORDS = (
    "AcquisitionNumber",
    "EchoNumbers",
    "EchoTime",
    "TemporalPositionIdentifier",
    "TriggerTime",
    "InversionTime",
    "DiffusionBValue",
    "ImageType",
)

# (functional group sequence, attribute) pairs that tell stacks of frames apart.
_FRAME_STACK_KEYWORDS = (
    ("FrameContentSequence", "StackID"),
    ("FrameContentSequence", "TemporalPositionIndex"),
    ("FrameContentSequence", "FrameAcquisitionNumber"),
    ("MREchoSequence", "EffectiveEchoTime"),
    ("MRDiffusionSequence", "DiffusionBValue"),
    ("MRDiffusionSequence", "DiffusionDirectionality"),
    ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"),
    ("MRImageFrameTypeSequence", "FrameType"),
    ("CTImageFrameTypeSequence", "FrameType"),
    ("FrameContentSequence", "DimensionIndexValues"),
)

# struct formats of the binary numeric VRs read straight from raw bytes.
_BINARY_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}


@dataclass(frozen=True)
class ImagePlane:
    """Where one 2D image (a single-frame instance or one frame) lies, and its rescale.

    Attributes:
        image_position_mm: Image Position (Patient), or ``None`` when absent.
        image_orientation: Image Orientation (Patient): row then column direction cosines,
            or ``None`` when absent.
        pixel_spacing_mm: Pixel Spacing (between rows, between columns), or ``None``.
        rows: Rows.
        columns: Columns.
        rescale_slope: Rescale Slope (1 when absent).
        rescale_intercept: Rescale Intercept (0 when absent).
        sop_instance_uid: SOP Instance UID of the source instance.
        frame_number: 1-based frame number in a multi-frame instance, ``None`` otherwise.
    """

    image_position_mm: tuple[float, float, float] | None
    image_orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing_mm: tuple[float, float] | None
    rows: int
    columns: int
    rescale_slope: float
    rescale_intercept: float
    sop_instance_uid: str
    frame_number: int | None


def is_enhanced(ds: Dataset) -> bool:
    """Whether ``ds`` describes its frames with functional groups (enhanced multi-frame)."""
    # Tags, not keywords: a keyword lookup costs more than the test itself.
    return (
        _tag("PerFrameFunctionalGroupsSequence") in ds
        or _tag("SharedFunctionalGroupsSequence") in ds
    )


def sop_instance_uid_of(ds: Dataset) -> str:
    """The SOP Instance UID, falling back to the file meta when the data set leaves it blank."""
    uid = text_value(ds, "SOPInstanceUID")
    if not uid and hasattr(ds, "file_meta"):
        uid = text_value(ds.file_meta, "MediaStorageSOPInstanceUID")
    return uid


def planes_of_instance(ds: Dataset) -> list[ImagePlane]:
    """The image planes of one instance: one for a single-frame image, else one per frame.

    Raises:
        NotAVolumeError: A multi-frame instance without functional groups (cine, NM, ...),
            whose frames have no geometry of their own.
        InvalidDicomError: The Per-Frame Functional Groups Sequence does not match Number of
            Frames.
    """
    frames = integer(ds, "NumberOfFrames", 1)
    if is_enhanced(ds):
        return _enhanced_planes(ds, frames)
    if frames > 1:
        raise NotAVolumeError(
            f"a multi-frame instance with {frames} frames but no functional groups has no "
            "per-frame geometry (e.g. cine or NM data), so it cannot form a volume"
        )
    return [
        ImagePlane(
            image_position_mm=_triple(numbers(ds, "ImagePositionPatient")),
            image_orientation=_sextuple(numbers(ds, "ImageOrientationPatient")),
            pixel_spacing_mm=_pair(numbers(ds, "PixelSpacing")),
            rows=required_integer(ds, "Rows"),
            columns=required_integer(ds, "Columns"),
            rescale_slope=_number(numbers(ds, "RescaleSlope"), 1.0),
            rescale_intercept=_number(numbers(ds, "RescaleIntercept"), 0.0),
            sop_instance_uid=sop_instance_uid_of(ds),
            frame_number=None,
        )
    ]


def stack_attributes(ds: Dataset, frame_number: int | None) -> tuple[tuple[str, str], ...]:
    """``(keyword, value)`` pairs that tell stacks at the same positions apart.

    Echo, time point, b-value and the like, of a single-frame instance (``frame_number`` is
    ``None``) or of one frame (1-based) of an enhanced multi-frame instance; for messages.
    """
    if frame_number is None or not is_enhanced(ds):
        return tuple(
            (keyword, _text(value))
            for keyword in _SINGLE_FRAME_STACK_KEYWORDS
            if (value := ds.get(keyword)) is not None and value != ""
        )
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", [])
    frame = per_frame[frame_number - 1] if len(per_frame) >= frame_number else None
    return tuple(
        (keyword, _text(value))
        for sequence, keyword in _FRAME_STACK_KEYWORDS
        if (value := _get(_macro(frame, shared, sequence), keyword)) is not None
    )


def _enhanced_planes(ds: Dataset, frames: int) -> list[ImagePlane]:
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence", []))
    if per_frame and len(per_frame) != frames:
        raise InvalidDicomError(
            f"the Per-Frame Functional Groups Sequence has {len(per_frame)} items "
            f"for {frames} frames"
        )
    uid = sop_instance_uid_of(ds)
    rows, columns = required_integer(ds, "Rows"), required_integer(ds, "Columns")
    planes = []
    for index in range(frames):
        frame = per_frame[index] if per_frame else None
        position = _macro(frame, shared, "PlanePositionSequence")
        orientation = _macro(frame, shared, "PlaneOrientationSequence")
        measures = _macro(frame, shared, "PixelMeasuresSequence")
        transform = _macro(frame, shared, "PixelValueTransformationSequence")
        planes.append(
            ImagePlane(
                image_position_mm=_triple(numbers(position, "ImagePositionPatient")),
                image_orientation=_sextuple(numbers(orientation, "ImageOrientationPatient")),
                pixel_spacing_mm=_pair(numbers(measures, "PixelSpacing")),
                rows=rows,
                columns=columns,
                rescale_slope=_number(numbers(transform, "RescaleSlope"), 1.0),
                rescale_intercept=_number(numbers(transform, "RescaleIntercept"), 0.0),
                sop_instance_uid=uid,
                frame_number=index + 1,
            )
        )
    return planes


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None or keyword not in ds:
        return None
    items = ds[keyword].value
    return items[0] if items else None


def _macro(frame: Dataset | None, shared: Dataset | None, keyword: str) -> Dataset | None:
    item = _first_item(frame, keyword)
    return item if item is not None else _first_item(shared, keyword)


def _get(item: Dataset | None, keyword: str) -> Any:
    return None if item is None else item.get(keyword)


def numbers(ds: Dataset | None, keyword: str) -> tuple[float, ...] | None:
    """The values of a numeric (DS, IS, FD, US, ...) attribute; ``None`` when absent or empty.

    Values not yet converted by pydicom are read straight from their bytes: much faster than
    pydicom's validating conversion, which matters for series of hundreds of slices.

    Raises:
        InvalidDicomError: The value is not a list of numbers.
    """
    tag = _tag(keyword)
    element = None if ds is None else ds.get_item(tag)
    if ds is None or element is None or isinstance(element, Dataset):
        return None
    value = element.value
    try:
        if isinstance(value, bytes):
            vr = element.VR or _dictionary_vr(tag)
            if vr in ("DS", "IS"):
                text = value.decode("ascii").strip(" \x00")
                return tuple(float(v) for v in text.split("\\")) if text else None
            fmt = _BINARY_FORMATS.get(vr or "")
            if fmt is not None and isinstance(element, RawDataElement):
                count, remainder = divmod(len(value), struct.calcsize(fmt))
                if not remainder:
                    order = "<" if element.is_little_endian else ">"
                    unpacked = struct.unpack(f"{order}{count}{fmt}", value)
                    return tuple(float(v) for v in unpacked) if unpacked else None
        value = ds[tag].value  # converted by pydicom
        if value is None or value == "":
            return None
        if isinstance(value, Iterable) and not isinstance(value, str | bytes):
            return tuple(float(v) for v in value)
        return (float(value),)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidDicomError(f"{keyword} is not a list of numbers") from exc


def integer(ds: Dataset, keyword: str, default: int) -> int:
    """The first value of an integer attribute; ``default`` when absent, empty or zero.

    Raises:
        InvalidDicomError: The value is not a number.
    """
    values = numbers(ds, keyword)
    return int(values[0]) if values and values[0] else default


def required_integer(ds: Dataset, keyword: str) -> int:
    """The first value of an integer attribute that must be present (Rows, Bits Allocated).

    Raises:
        AttributeError: The attribute is absent.
        TypeError: The attribute is empty.
        InvalidDicomError: The value is not a number.
    """
    values = numbers(ds, keyword)
    return int(values[0]) if values else int(getattr(ds, keyword))


def text_value(ds: Dataset, keyword: str) -> str:
    """A single-valued UI or CS attribute as ``str(ds.get(keyword, "") or "")`` gives it.

    Read straight from the bytes when pydicom has not converted the value yet (the same
    decoding, without its validation), which is much faster.
    """
    tag = _tag(keyword)
    element = ds.get_item(tag)
    if element is None:
        return ""
    value = element.value
    if isinstance(value, bytes) and (element.VR or _dictionary_vr(tag)) in ("UI", "CS"):
        text = value.decode("iso8859").rstrip(" \x00")  # pydicom's default encoding
        if "\\" not in text:
            return text
    return str(ds.get(keyword, "") or "")


def code_strings(ds: Dataset, keyword: str) -> tuple[str, ...]:
    """The values of an ASCII attribute (CS, UI, ...), read like :func:`numbers`."""
    tag = _tag(keyword)
    element = ds.get_item(tag)
    if element is None or isinstance(element, Dataset):
        return ()
    value = element.value
    if isinstance(value, bytes):
        text = value.decode("ascii", errors="replace").strip(" \x00")
        return tuple(v.strip(" \x00") for v in text.split("\\")) if text else ()
    value = ds[tag].value
    if value is None or value == "":
        return ()
    if isinstance(value, Iterable) and not isinstance(value, str):
        return tuple(str(v) for v in value)
    return (str(value),)


def _triple(values: tuple[float, ...] | None) -> tuple[float, float, float] | None:
    return (values[0], values[1], values[2]) if values and len(values) == 3 else None


def _sextuple(
    values: tuple[float, ...] | None,
) -> tuple[float, float, float, float, float, float] | None:
    if not values or len(values) != 6:
        return None
    return (values[0], values[1], values[2], values[3], values[4], values[5])


def _pair(values: tuple[float, ...] | None) -> tuple[float, float] | None:
    return (values[0], values[1]) if values and len(values) == 2 else None


def _number(values: tuple[float, ...] | None, default: float) -> float:
    return values[0] if values else default


def _text(value: Any) -> str:
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return "\\".join(str(v) for v in value)
    return str(value)


@functools.cache
def _tag(keyword: str) -> BaseTag:
    return Tag(keyword)


def _dictionary_vr(tag: BaseTag) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None
