"""DICOM Segmentation (SEG): write a label map on its source series, read a SEG onto a grid.

Writing uses highdicom for everything except the per-frame data: highdicom builds the SEG's
metadata (patient and study, segments, equipment, dimensions) from one source header and a
one-pixel stub, then this module adds what depends on the frames (references to every source
instance, the Per-Frame Functional Groups, the pixel data) in the form highdicom's own
constructor produces. The per-frame items are encoded as explicit VR little endian bytes and
bit packing is done with numpy, because building and later serializing one pydicom dataset per
frame is what makes highdicom's default path slow (``bench/seg_write.py``). The result is a
plain :class:`pydicom.Dataset`; the per-frame sequence is parsed on first access.

Reading places each frame by its position in patient space on the reference grid (never by
frame order). Conventions:

* Labels are Segment Numbers. A BINARY SEG written here numbers the segments that have voxels
  ``1..N`` in ascending label order; a LABELMAP SEG keeps the label values.
* FRACTIONAL frames count as inside the segment where value / Maximum Fractional Value
  >= ``fractional_threshold`` (0.5 by default).
* Overlapping segments cannot be represented in a label map: by default they raise
  :class:`MaskError`; with ``overlap="later_wins"`` the higher Segment Number wins.
"""

from __future__ import annotations

import copy
import logging
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.charset import convert_encodings
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_dataset
from pydicom.pixels.utils import iter_pixels
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)
from pydicom.valuerep import DS, format_number_as_ds
from scipy import ndimage

from radserve.dicom_io.algorithm import MANUFACTURER, AlgorithmIdentity, contributing_equipment
from radserve.dicom_io.derived import source_for_derivation
from radserve.dicom_io.errors import DicomIOError, MaskError
from radserve.dicom_io.labelmap import Code, LabelMap, SegmentInfo
from radserve.dicom_io.reading import read_instance
from radserve.dicom_io.series import ImageSeries
from radserve.dicom_io.uids import derive_uid
from radserve.dicom_io.volume import Volume

logger = logging.getLogger(__name__)

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
DEFLATED_IMAGE_FRAME_COMPRESSION = "1.2.840.10008.1.2.8.1"
_NATIVE_LITTLE_ENDIAN = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
)
_GRID_TOLERANCE_VOXELS = 0.25
# Above this many segments one scipy pass finding every bounding box beats one compare each.
_MAX_SEGMENTS_COMPARED = 8
# (keyword, VR, neutral value) of source attributes highdicom validates, parses or warns about.
_CHECKED_BY_HIGHDICOM = (
    ("PatientName", "PN", "Neutral^"),
    ("PatientID", "LO", None),
    ("AccessionNumber", "SH", None),
    ("StudyID", "SH", None),
    ("PatientBirthDate", "DA", None),
    ("PatientSex", "CS", None),
    ("StudyDate", "DA", None),
    ("StudyTime", "TM", None),
    ("ReferringPhysicianName", "PN", "Neutral^"),
)
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})


# -- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SourceFrame:
    """One source slice: its references and the Image Position (Patient) strings."""

    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None
    position: tuple[str, str, str]


def write_seg(
    source: ImageSeries,
    labelmap: LabelMap,
    *,
    algorithm: AlgorithmIdentity,
    segmentation_type: Literal["BINARY", "LABELMAP"] = "BINARY",
    series_number: int = 901,
    series_description: str | None = None,
) -> Dataset:
    """Encode a label map on ``source`` as a DICOM SEG.

    Segments without voxels are skipped (and logged); frames without content are omitted.
    BINARY Segment Numbers are ``1..N`` in label order, LABELMAP ones are the labels. UIDs
    are derived from the source Series Instance UID, the model name and version (and the
    segmentation type for the SOP Instance UID), so a rerun gives the same UIDs. A blank
    source SOP Class / Instance UID is taken from the file meta; a blank Study or Series
    Instance UID is derived (with a warning).

    Raises:
        MaskError: The label map is not on the source grid, has undeclared labels or no
            segment with voxels, or the source headers do not match the source volume.
    """
    if segmentation_type not in ("BINARY", "LABELMAP"):
        raise ValueError(f"unsupported segmentation type {segmentation_type!r}")
    volume = source.volume
    _check_same_grid(labelmap.volume, volume)
    frames = _source_frames(source)
    array = labelmap.volume.array
    extents = _segment_extents(array, labelmap.segments)
    segments = [s for s in sorted(labelmap.segments, key=lambda s: s.label) if s.label in extents]
    for skipped in (s for s in labelmap.segments if s.label not in extents):
        logger.info("segment %d (%s) has no voxels: not written", skipped.label, skipped.name)
    if not segments:
        raise MaskError("nothing to write: every segment of the label map is empty")
    binary = segmentation_type == "BINARY"
    numbers = list(range(1, len(segments) + 1)) if binary else [s.label for s in segments]

    derivable = source_for_derivation(source.headers[0])
    header = _stub_source(derivable, frames[0])
    series_uid = str(header.SeriesInstanceUID)
    uid_parts = (series_uid, algorithm.name, algorithm.version, "SEG")
    stub = hd.seg.Segmentation(
        source_images=[header],
        pixel_array=_stub_pixels(array.shape[1:], numbers[0]),
        segmentation_type=segmentation_type,
        segment_descriptions=[
            _segment_description(s, n, algorithm) for s, n in zip(segments, numbers, strict=True)
        ],
        series_instance_uid=derive_uid(*uid_parts, "series"),
        series_number=series_number,
        sop_instance_uid=derive_uid(*uid_parts, segmentation_type, "instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=f"{algorithm.name} {algorithm.version}"[:64],
        software_versions=_software_versions(algorithm),
        device_serial_number=algorithm.model_sha256[:16] or "unknown",
        plane_positions=[
            hd.PlanePositionSequence("PATIENT", [float(v) for v in frames[0].position])
        ],
        series_description=series_description or _default_series_description(algorithm),
        content_description="AI segmentation; requires review by a qualified physician",
    )
    ds = Dataset(stub)
    ds.file_meta = stub.file_meta
    _copy_patient_and_study(ds, derivable)
    _add_source_references(ds, frames, series_uid)
    ds.ContributingEquipmentSequence = DicomSequence(
        [*ds.get("ContributingEquipmentSequence", []), *contributing_equipment(algorithm)]
    )
    dimension_uid = derive_uid(*uid_parts, segmentation_type, "dimension organization")
    for item in (*ds.DimensionIndexSequence, *ds.DimensionOrganizationSequence):
        item.DimensionOrganizationUID = dimension_uid

    order = _slice_order(ds, frames)
    if binary:
        planes, pixel_data = _binary_frames(
            array.shape, [extents[s.label] for s in segments], order
        )
    else:
        planes, pixel_data = _labelmap_frames(array, max(numbers), order)
    channels: list[tuple[int | None, list[int]]] = (
        [(n, ks) for n, ks in zip(numbers, planes, strict=True)] if binary else [(None, planes[0])]
    )
    position_rank = {k: rank for rank, k in enumerate(order)}
    included = sorted({k for _, ks in channels for k in ks}, key=position_rank.__getitem__)
    ds.NumberOfFrames = sum(len(ks) for _, ks in channels)
    ds.PixelData = pixel_data + b"\x00" if len(pixel_data) % 2 else pixel_data
    _set_spatial_summary(ds, frames, included, single_channel=len(channels) == 1)
    # Resolve "OB or OW"-style VRs now: the raw per-frame sequence set last is written as is.
    correct_ambiguous_vr(ds, is_little_endian=True)
    _set_frames(ds, frames, channels, included, binary and len(numbers) > 1)
    return ds


def _check_same_grid(labelmap: Volume, volume: Volume) -> None:
    if labelmap.shape != volume.shape:
        raise MaskError(f"label map shape {labelmap.shape} is not the source shape {volume.shape}")
    a, b = labelmap.frame_of_reference_uid, volume.frame_of_reference_uid
    if a and b and a != b:
        raise MaskError("label map and source series have different Frames of Reference")
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in volume.shape[::-1]])).reshape(3, -1).T
    drift = np.abs(labelmap.index_to_lps(corners) - volume.index_to_lps(corners)).max()
    if drift > _GRID_TOLERANCE_VOXELS * min(volume.spacing_mm):
        raise MaskError(f"label map grid is {drift:.2f} mm off the source grid")


def _source_frames(source: ImageSeries) -> list[_SourceFrame]:
    """The source instance (and frame) of each slice ``k``, checked against the volume."""
    volume, headers = source.volume, source.headers
    if len(headers) == 1 and volume.frame_numbers:
        items = headers[0].PerFrameFunctionalGroupsSequence
        shared = headers[0].SharedFunctionalGroupsSequence[0]
        slices: list[tuple[Dataset, int | None, Any]] = [
            (headers[0], n, _functional_group(items[n - 1], shared, "PlanePositionSequence"))
            for n in volume.frame_numbers
        ]
    elif len(headers) == volume.shape[0]:
        slices = [(h, None, h) for h in headers]
    else:
        raise MaskError(f"{len(headers)} source headers for {volume.shape[0]} slices")
    positions = [p.get("ImagePositionPatient") for _, _, p in slices]
    if any(p is None or len(p) != 3 for p in positions):
        raise MaskError("a source header has no Image Position (Patient)")
    expected = volume.index_to_lps([(0, 0, k) for k in range(volume.shape[0])])
    offset = np.abs(np.asarray(positions, dtype=float) - expected).max()
    if offset > _GRID_TOLERANCE_VOXELS * min(volume.spacing_mm):
        raise MaskError("source headers do not match the volume's slice positions")
    return [
        _SourceFrame(
            sop_class_uid=_uid(h, "SOPClassUID", "MediaStorageSOPClassUID"),
            sop_instance_uid=_uid(h, "SOPInstanceUID", "MediaStorageSOPInstanceUID"),
            frame_number=n,
            position=(_ds(p[0]), _ds(p[1]), _ds(p[2])),
        )
        for (h, n, _), p in zip(slices, positions, strict=True)
    ]


def _ds(value: Any) -> str:
    """A coordinate formatted as highdicom formats copied plane positions."""
    return str(DS(value, auto_format=True))


def _uid(header: Dataset, keyword: str, file_meta_keyword: str) -> str:
    """A UID of the header, or the copy in its file meta when the dataset's is blank."""
    value = str(header.get(keyword, "") or "")
    if not value and hasattr(header, "file_meta"):
        value = str(header.file_meta.get(file_meta_keyword, "") or "")
    if not value:
        raise MaskError(f"a source header has no {keyword}")
    return value


def _stub_source(header: Dataset, first: _SourceFrame) -> Dataset:
    """A copy of the first header with what highdicom needs filled in.

    The attributes highdicom parses or checks are replaced by neutral values and copied back
    verbatim by :func:`_copy_patient_and_study`: highdicom would otherwise reject a malformed
    source date or sex, and its warnings about person names quote the name (PHI).
    """
    # A new dict with the same elements; add_new() replaces an element instead of changing the
    # caller's, which plain attribute assignment on the shared element would do.
    stub = Dataset(dict(header.items()))
    stub.add_new("SOPClassUID", "UI", first.sop_class_uid)
    stub.add_new("SOPInstanceUID", "UI", first.sop_instance_uid)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not stub.get(keyword):
            # Only seen in test data sets with blanked UIDs; a PACS always sends them.
            logger.warning("source series has no %s: deriving one", keyword)
            stub.add_new(keyword, "UI", derive_uid(f"missing {keyword}", first.sop_instance_uid))
    for keyword, vr, neutral in _CHECKED_BY_HIGHDICOM:
        stub.add_new(keyword, vr, neutral)
    return stub


def _copy_patient_and_study(ds: Dataset, header: Dataset) -> None:
    """Put back the source values that :func:`_stub_source` neutralised."""
    for keyword, vr, _ in _CHECKED_BY_HIGHDICOM:
        if keyword in header:
            ds[keyword] = copy.copy(header[keyword])  # no re-validation of the source value
        else:
            ds.add_new(keyword, vr, None)


def _stub_pixels(shape: tuple[int, ...], number: int) -> npt.NDArray[np.integer]:
    # One set pixel keeps highdicom from warning about an all-empty image.
    pixels = np.zeros((1, *shape), dtype=np.uint8 if number < 256 else np.uint16)
    pixels[0, 0, 0] = number
    return pixels


def _code(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _segment_description(
    segment: SegmentInfo, number: int, algorithm: AlgorithmIdentity
) -> hd.seg.SegmentDescription:
    family = next(
        (
            c
            for c in codes.cid7162.concepts.values()
            if c.meaning.lower() == algorithm.family.lower()
        ),
        codes.cid7162.ArtificialIntelligence,
    )
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=segment.name[:64],
        segmented_property_category=_code(segment.category),
        segmented_property_type=_code(segment.type),
        algorithm_type="AUTOMATIC",
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm.name[:64],
            family=family,
            version=algorithm.version[:64],
            parameters={"model_sha256": algorithm.model_sha256},
        ),
    )
    description.SegmentAlgorithmName = f"{algorithm.name} {algorithm.version}"[:64]
    if segment.description:
        description.SegmentDescription = segment.description
    return description


def _software_versions(algorithm: AlgorithmIdentity) -> str | tuple[str]:
    if len(algorithm.software_versions) <= 64:
        return algorithm.software_versions
    sequence = contributing_equipment(algorithm)[0].SoftwareVersions
    return tuple(str(v) for v in sequence)  # type: ignore[return-value]


def _default_series_description(algorithm: AlgorithmIdentity) -> str:
    model = f"{algorithm.name} {algorithm.version}"[: 64 - len("AI SEG () - requires review")]
    return f"AI SEG ({model}) - requires review"


def _add_source_references(ds: Dataset, frames: list[_SourceFrame], series_uid: str) -> None:
    references = []
    for frame in dict.fromkeys((f.sop_class_uid, f.sop_instance_uid) for f in frames):
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = frame
        references.append(item)
    ds.SourceImageSequence = references
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.ReferencedInstanceSequence = references
    ds.ReferencedSeriesSequence = [series]


def _slice_order(ds: Dataset, frames: list[_SourceFrame]) -> list[int]:
    """Slice indices in highdicom's frame order (along its volume normal, column x row)."""
    orientation = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    normal = hd.spatial.get_normal_vector(
        [float(v) for v in orientation.ImageOrientationPatient],
        index_convention=hd.spatial.VOLUME_INDEX_CONVENTION,
    )
    distances = np.asarray([f.position for f in frames], dtype=float) @ normal
    return [int(k) for k in np.argsort(distances, kind="stable")]


@dataclass(frozen=True)
class _Extent:
    """Where a segment has voxels: its bounding box and the mask inside it."""

    box: tuple[slice, slice, slice]
    mask: npt.NDArray[np.bool_]


def _segment_extents(
    array: npt.NDArray[Any], segments: Sequence[SegmentInfo]
) -> dict[int, _Extent]:
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


def _binary_frames(
    shape: tuple[int, ...],
    extents: list[_Extent],
    order: list[int],
) -> tuple[list[list[int]], bytes]:
    """Slices with content per segment (in ``order``) and the bit-packed frames."""
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
    whole_bytes = columns % 8 == 0
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
    if whole_bytes:
        return planes, frames.tobytes()
    return planes, np.packbits(frames.reshape(-1), bitorder="little").tobytes()


def _labelmap_frames(
    array: npt.NDArray[Any], max_number: int, order: list[int]
) -> tuple[list[list[int]], bytes]:
    dtype = np.uint8 if max_number < 256 else np.dtype("<u2")  # little endian on any host
    nonempty = np.asarray(array.reshape(array.shape[0], -1).any(axis=1))
    slices = [k for k in order if nonempty[k]]
    return [slices], array[slices].astype(dtype).tobytes()


def _set_frames(
    ds: Dataset,
    frames: list[_SourceFrame],
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


def _set_spatial_summary(
    ds: Dataset, frames: list[_SourceFrame], included: list[int], *, single_channel: bool
) -> None:
    """Spacing Between Slices and Dimension Organization Type, computed as highdicom does."""
    cosines = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    orientation = [float(v) for v in cosines.ImageOrientationPatient]
    positions = np.asarray([f.position for f in frames], dtype=float)
    spacing, _ = hd.spatial.get_volume_positions(positions.tolist(), orientation)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    if spacing is not None:
        measures.SpacingBetweenSlices = format_number_as_ds(spacing)
    elif "SpacingBetweenSlices" in measures:
        del measures.SpacingBetweenSlices
    is_3d = False
    if single_channel and len(included) > 1:
        spacing, _ = hd.spatial.get_volume_positions(
            positions[included].tolist(), orientation, sort=False
        )
        is_3d = spacing is not None and spacing > 0
    if is_3d:
        ds.DimensionOrganizationType = "3D"
    elif "DimensionOrganizationType" in ds:
        del ds.DimensionOrganizationType


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


# -- reading ---------------------------------------------------------------------------------


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
    if (
        sop_class not in (SEGMENTATION_STORAGE, LABEL_MAP_SEGMENTATION_STORAGE)
        and ds.get("Modality") != "SEG"
    ):
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


def _functional_group(item: Dataset | None, shared: Dataset, keyword: str) -> Dataset:
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
                _functional_group(item, shared, "PlaneOrientationSequence").ImageOrientationPatient,
                dtype=float,
            )
            spacing = _functional_group(item, shared, "PixelMeasuresSequence").PixelSpacing
            position = _functional_group(item, shared, "PlanePositionSequence")
            number = None
            if not labelmap:
                identification = _functional_group(item, shared, "SegmentIdentificationSequence")
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
    if not axes_ok or np.abs(exact - snapped).max() > _GRID_TOLERANCE_VOXELS:
        raise MaskError("SEG frames are not on the reference grid (position, spacing or axes)")
    ijk = whole[0] + columns[:, None] * whole[1] + rows[:, None] * whole[2]
    size = np.array(shape[::-1])
    if np.any(ijk < 0) or np.any(ijk >= size):
        raise MaskError("SEG has segment pixels outside the reference grid")
    return np.asarray((ijk[:, 2] * shape[1] + ijk[:, 1]) * shape[2] + ijk[:, 0], dtype=np.intp)
