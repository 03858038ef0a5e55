"""DICOM Segmentation (SEG): write a label map on its source series, read a SEG onto a grid.

Writing uses highdicom for everything except the per-frame data: highdicom builds the SEG's
metadata (patient and study, segments, equipment, dimensions) from one source header and a
one-pixel stub, then this module adds what depends on the frames (references to every source
instance, the Per-Frame Functional Groups, the pixel data) in the form highdicom's own
constructor produces. The per-frame items are encoded as explicit VR little endian bytes and
bit packing is done with numpy, because building and later serializing one pydicom dataset per
frame is what makes highdicom's default path slow (``bench/seg_write.py``;
:mod:`radserve.dicom_io.seg.frames`). The result is a plain :class:`pydicom.Dataset`; the
per-frame sequence is parsed on first access.

Reading (:mod:`radserve.dicom_io.seg.reading`) places each frame by its position in patient
space on the reference grid (never by frame order). Conventions:

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
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.filewriter import correct_ambiguous_vr
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.valuerep import DS, format_number_as_ds

from radserve.dicom_io.algorithm import MANUFACTURER, AlgorithmIdentity, contributing_equipment
from radserve.dicom_io.derived import set_series_date_time, source_for_derivation
from radserve.dicom_io.errors import MaskError
from radserve.dicom_io.masks.labelmap import Code, LabelMap, SegmentInfo
from radserve.dicom_io.reading.series import ImageSeries
from radserve.dicom_io.seg.frames import (
    SourceFrame,
    binary_frames,
    labelmap_frames,
    segment_extents,
    set_frames,
)
from radserve.dicom_io.seg.reading import (
    DEFLATED_IMAGE_FRAME_COMPRESSION,
    GRID_TOLERANCE_VOXELS,
    LABEL_MAP_SEGMENTATION_STORAGE,
    SEGMENTATION_STORAGE,
    functional_group,
    read_seg,
)
from radserve.dicom_io.seg.types import SegmentationType
from radserve.dicom_io.uids import derive_uid
from radserve.dicom_io.volume import Volume

__all__ = [
    "DEFLATED_IMAGE_FRAME_COMPRESSION",
    "LABEL_MAP_SEGMENTATION_STORAGE",
    "SEGMENTATION_STORAGE",
    "read_seg",
    "write_seg",
]

logger = logging.getLogger(__name__)

# The FRACTIONAL frames' value inside a segment (OCCUPANCY 1.0); 0 outside.
MAX_FRACTIONAL_VALUE = 255

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


def write_seg(
    source: ImageSeries,
    labelmap: LabelMap,
    *,
    algorithm: AlgorithmIdentity,
    segmentation_type: SegmentationType = "BINARY",
    series_number: int = 901,
    series_description: str | None = None,
) -> Dataset:
    """Encode a label map on ``source`` as a DICOM SEG.

    Segments without voxels are skipped (and logged); frames without content are omitted.
    BINARY and FRACTIONAL Segment Numbers are ``1..N`` in label order, LABELMAP ones are
    the labels; FRACTIONAL frames are OCCUPANCY, :data:`MAX_FRACTIONAL_VALUE` inside. UIDs
    are derived from the source Series Instance UID, the model name and version (and the
    segmentation type for the SOP Instance UID), so a rerun gives the same UIDs. A blank
    source SOP Class / Instance UID is taken from the file meta; a blank Study or Series
    Instance UID is derived (with a warning).

    Raises:
        MaskError: The label map is not on the source grid, has undeclared labels or no
            segment with voxels, or the source headers do not match the source volume.
    """
    if segmentation_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise ValueError(f"unsupported segmentation type {segmentation_type!r}")
    volume = source.volume
    _check_same_grid(labelmap.volume, volume)
    frames = _source_frames(source)
    array = labelmap.volume.array
    extents = segment_extents(array, labelmap.segments)
    segments = [s for s in sorted(labelmap.segments, key=lambda s: s.label) if s.label in extents]
    for skipped in (s for s in labelmap.segments if s.label not in extents):
        logger.info("segment %d (%s) has no voxels: not written", skipped.label, skipped.name)
    if not segments:
        raise MaskError("nothing to write: every segment of the label map is empty")
    fractional = segmentation_type == "FRACTIONAL"
    binary = segmentation_type == "BINARY" or fractional  # one frame per segment and slice
    numbers = list(range(1, len(segments) + 1)) if binary else [s.label for s in segments]

    derivable = source_for_derivation(source.headers[0])
    header = _stub_source(derivable, frames[0])
    series_uid = str(header.SeriesInstanceUID)
    uid_parts = (series_uid, algorithm.name, algorithm.version, "SEG")
    stub = hd.seg.Segmentation(
        source_images=[header],
        pixel_array=_stub_pixels(array.shape[1:], numbers[0], fractional=fractional),
        segmentation_type=segmentation_type,
        fractional_type="OCCUPANCY",
        max_fractional_value=MAX_FRACTIONAL_VALUE,
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
        planes, pixel_data = binary_frames(
            array.shape,
            [extents[s.label] for s in segments],
            order,
            fractional_value=MAX_FRACTIONAL_VALUE if fractional else None,
        )
    else:
        planes, pixel_data = labelmap_frames(array, max(numbers), order)
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
    set_frames(ds, frames, channels, included, binary and len(numbers) > 1)
    set_series_date_time([ds])
    return ds


def _check_same_grid(labelmap: Volume, volume: Volume) -> None:
    if labelmap.shape != volume.shape:
        raise MaskError(f"label map shape {labelmap.shape} is not the source shape {volume.shape}")
    a, b = labelmap.frame_of_reference_uid, volume.frame_of_reference_uid
    if a and b and a != b:
        raise MaskError("label map and source series have different Frames of Reference")
    wrong = volume.grid_differences(labelmap)  # the shapes are equal
    if wrong:
        raise MaskError(f"label map is off the source grid (different {', '.join(wrong)})")


def _source_frames(source: ImageSeries) -> list[SourceFrame]:
    """The source instance (and frame) of each slice ``k``, checked against the volume."""
    volume, headers = source.volume, source.headers
    if len(headers) == 1 and volume.frame_numbers:
        items = headers[0].PerFrameFunctionalGroupsSequence
        shared = headers[0].SharedFunctionalGroupsSequence[0]
        slices: list[tuple[Dataset, int | None, Any]] = [
            (headers[0], n, functional_group(items[n - 1], shared, "PlanePositionSequence"))
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
    if offset > GRID_TOLERANCE_VOXELS * min(volume.spacing_mm):
        raise MaskError("source headers do not match the volume's slice positions")
    return [
        SourceFrame(
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


def _stub_source(header: Dataset, first: SourceFrame) -> Dataset:
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


def _stub_pixels(
    shape: tuple[int, ...], number: int, *, fractional: bool = False
) -> npt.NDArray[Any]:
    # One set pixel keeps highdicom from warning about an all-empty image.
    if fractional:
        pixels: npt.NDArray[Any] = np.zeros((1, *shape), dtype=np.float32)
        pixels[0, 0, 0] = 1.0
        return pixels
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


def _add_source_references(ds: Dataset, frames: list[SourceFrame], series_uid: str) -> None:
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


def _slice_order(ds: Dataset, frames: list[SourceFrame]) -> list[int]:
    """Slice indices in highdicom's frame order (along its volume normal, column x row)."""
    orientation = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    normal = hd.spatial.get_normal_vector(
        [float(v) for v in orientation.ImageOrientationPatient],
        index_convention=hd.spatial.VOLUME_INDEX_CONVENTION,
    )
    distances = np.asarray([f.position for f in frames], dtype=float) @ normal
    return [int(k) for k in np.argsort(distances, kind="stable")]


def _set_spatial_summary(
    ds: Dataset, frames: list[SourceFrame], included: list[int], *, single_channel: bool
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
