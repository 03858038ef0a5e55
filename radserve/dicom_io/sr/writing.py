"""DICOM SR measurement reports (TID 1500) for the segments of a DICOM SEG.

:func:`write_sr` writes a Comprehensive 3D SR with one Volumetric ROI measurement group
(TID 1411) per segment: tracking identifier and UID, finding category and type from the
segment's codes, a reference to the SEG segment and its source series, the algorithm, and the
measurements (volume, mean / minimum / maximum / standard deviation of the intensity, plus any
extra measurements such as radiomic features). Coding schemes outside PS3.16 Table 8-1 (a
private ``99...`` scheme) are identified in the Coding Scheme Identification Sequence
(0008,0110) when the caller describes them (:class:`CodingSchemeIdentification`) and the
document uses them. :func:`~radserve.dicom_io.sr.reading.read_sr_measurements` reads such a
report back, tolerantly, as plain numbers.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code as PydicomCode

from radserve.dicom_io.algorithm import MANUFACTURER, AlgorithmIdentity, contributing_equipment
from radserve.dicom_io.derived import set_series_date_time, source_for_derivation
from radserve.dicom_io.errors import MeasurementError
from radserve.dicom_io.masks.labelmap import LabelMap, SegmentInfo
from radserve.dicom_io.masks.measurements import SegmentMeasurements, check_same_grid
from radserve.dicom_io.reading.series import ImageSeries
from radserve.dicom_io.seg.reading import SEG_SOP_CLASS_UIDS
from radserve.dicom_io.sr.content import CodingSchemeIdentification, NumericMeasurement, coded
from radserve.dicom_io.sr.extras import extra_items, with_extra_items
from radserve.dicom_io.sr.planar import (
    PlanarGroupInput,
    key_slice_outline,
    maximum_3d_diameter_mm,
    planar_group,
)
from radserve.dicom_io.uids import derive_uid
from radserve.dicom_io.volume import Volume

__all__ = [
    "CodingSchemeIdentification",
    "NumericMeasurement",
    "SrOptions",
    "sr_uids",
    "write_sr",
]

logger = logging.getLogger(__name__)

# CID 100 "Quantitative Diagnostic Imaging Procedures", by Modality.
_PROCEDURES: dict[str, PydicomCode] = {
    "CT": codes.LN.CTUnspecifiedBodyRegion,
    "MR": codes.LN.MRIUnspecifiedBodyRegion,
    "PT": codes.LN.PETUnspecifiedBodyRegion,
    "NM": codes.LN.NMUnspecifiedBodyRegion,
}
# CID 7469 "Generic Intensity and Size Measurements" concept and UCUM unit of the image
# values, by Modality. Other modalities get no intensity statistics: there is no coded
# concept for "an image value of unknown meaning".
_INTENSITY: dict[str, tuple[PydicomCode, PydicomCode]] = {
    "CT": (codes.DCM.AttenuationCoefficient, codes.UCUM.HounsfieldUnit),
    "MR": (codes.DCM.MRSignalIntensity, codes.UCUM.NoUnits),
}
# CID 7464 "General Region of Interest Measurement Modifiers".
_DERIVATIONS: tuple[tuple[str, PydicomCode], ...] = (
    ("mean", codes.SCT.Mean),
    ("minimum", codes.SCT.Minimum),
    ("maximum", codes.SCT.Maximum),
    ("std", codes.SCT.StandardDeviation),
)


@dataclass(frozen=True)
class SrOptions:
    """What a measurement report says besides the segments and their measurements.

    Attributes:
        series_number: Series Number of the SR.
        planar_groups: Also write, per segment, a planar group (TID 1410) on its key slice
            with the outline as an image-coordinate polyline and the headline values
            (:mod:`radserve.dicom_io.sr.planar`), which viewers such as OHIF display. It
            shares the volumetric group's tracking identifier and UID, so OHIF shows one
            measurement per segment; without it OHIF 3.13 cannot load the report.
        extra_measurements: Further measurements per label (e.g. radiomic features).
        coding_schemes: Coding schemes to identify in the Coding Scheme Identification
            Sequence; only those whose designator a code of the document uses are written
            (none at all: the sequence is left out).
    """

    series_number: int = 902
    planar_groups: bool = True
    extra_measurements: Mapping[int, Sequence[NumericMeasurement]] | None = None
    coding_schemes: Sequence[CodingSchemeIdentification] = ()


def sr_uids(source_series_instance_uid: str, algorithm: AlgorithmIdentity) -> tuple[str, str]:
    """The deterministic (Series Instance UID, SOP Instance UID) of the SR for a series."""
    parts = (source_series_instance_uid, algorithm.name, algorithm.version, "SR")
    return derive_uid(*parts, "series"), derive_uid(*parts, "instance")


def write_sr(
    source: ImageSeries,
    seg: Dataset | None,
    labelmap: LabelMap,
    measurements: Sequence[SegmentMeasurements],
    *,
    algorithm: AlgorithmIdentity,
    options: SrOptions = SrOptions(),
) -> Dataset:
    """Write a TID 1500 measurement report for the segments of ``seg``.

    Args:
        source: The image series that was segmented.
        seg: The DICOM SEG written for ``labelmap``; each measured segment is matched to the
            SEG segment with the same Segment Label. ``None`` together with no
            ``measurements`` writes a "no findings" report: one measurement group per segment
            of ``labelmap`` saying that its finding type is absent (TID 1501, qualitative
            evaluation "Absent").
        labelmap: The label map, on the grid of ``source``.
        measurements: One entry per segment to report (from
            :func:`~radserve.dicom_io.masks.measurements.measure_segments`).
        algorithm: The model that produced the segmentation.
        options: Series number, extra measurements and coding schemes (:class:`SrOptions`).

    Returns:
        The Comprehensive 3D SR dataset; its UIDs depend only on the source series and the
        model name and version.

    Raises:
        MeasurementError: Measurements without a SEG (or a SEG without measurements), a
            label or SEG segment that does not match, or a SEG that does not belong to the
            source series.
    """
    volume = source.volume
    if not source.headers or not volume.series_instance_uid:
        raise MeasurementError("the source series has no headers or no Series Instance UID")
    check_same_grid(volume, labelmap)
    if seg is None:
        if measurements or options.extra_measurements:
            raise MeasurementError("measurements need the SEG whose segments they describe")
        return _no_findings_report(source, labelmap, algorithm, options)
    groups_input = _match_inputs(labelmap, measurements, options.extra_measurements or {})
    modality = (volume.modality or "").upper()
    groups, extras, used = _volumetric_groups(seg, volume, algorithm, groups_input)
    planar, key_images = (
        _planar_groups(source, labelmap, algorithm, groups_input)
        if options.planar_groups
        else ([], [])
    )
    header = _Header(
        modality, algorithm, options.series_number, _used(options.coding_schemes, used)
    )
    sr = _document(source, [seg], [*groups, *planar], header, library=key_images)
    if any(extras):
        sr = with_extra_items(sr, [*extras, *([] for _ in planar)])
    return sr


def _planar_groups(
    source: ImageSeries,
    labelmap: LabelMap,
    algorithm: AlgorithmIdentity,
    groups_input: Sequence[tuple[SegmentInfo, SegmentMeasurements, Sequence[NumericMeasurement]]],
) -> tuple[list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations], list[Dataset]]:
    """One key-slice TID 1410 group per measured segment (single-frame sources only), and
    the key-slice images they reference (once each)."""
    volume = source.volume
    if len(source.headers) != volume.shape[0]:
        logger.info("multi-frame source: no key-slice planar groups")
        return [], []
    series_instance_uid = str(volume.series_instance_uid)
    intensity = _INTENSITY.get((volume.modality or "").upper())
    algorithm_id = _algorithm_id(algorithm)
    groups = []
    images: dict[str, Dataset] = {}
    for segment, measured, _ in groups_input:
        mask = np.asarray(labelmap.volume.array) == segment.label
        outline = key_slice_outline(mask)
        if outline is None:
            continue
        # The volumetric group's Tracking UID: both groups describe one finding, which is what
        # the UID tracks. OHIF 3.13 merges the groups of one Tracking UID into one measurement
        # and fails ("reading 'ReferencedSOPSequence'") on any merged one without an SCOORD.
        uid = _tracking_uid(series_instance_uid, algorithm, segment.label)
        groups.append(
            planar_group(
                PlanarGroupInput(
                    tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=segment.name),
                    finding_type=coded(segment.type),
                    finding_category=coded(segment.category),
                    source_image=source.headers[outline.slice_index],
                    outline=outline,
                    measured=measured,
                    max_diameter_mm=maximum_3d_diameter_mm(mask, volume),
                ),
                algorithm_id,
                intensity,
            )
        )
        key_image = source.headers[outline.slice_index]
        images.setdefault(str(key_image.SOPInstanceUID), key_image)
    return groups, list(images.values())


def _algorithm_id(algorithm: AlgorithmIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=algorithm.name,
        version=algorithm.version,
        family=codes.DCM.ArtificialIntelligence,
    )


def _no_findings_report(
    source: ImageSeries, labelmap: LabelMap, algorithm: AlgorithmIdentity, options: SrOptions
) -> Dataset:
    """The report saying that each segment the model looks for is absent."""
    series_instance_uid = str(source.volume.series_instance_uid)
    groups = _absent_groups(labelmap, algorithm, _algorithm_id(algorithm), series_instance_uid)
    used = {code.scheme for s in labelmap.segments for code in (s.category, s.type)}
    modality = (source.volume.modality or "").upper()
    header = _Header(
        modality, algorithm, options.series_number, _used(options.coding_schemes, used)
    )
    return _document(source, [], groups, header)


def _volumetric_groups(
    seg: Dataset,
    volume: Volume,
    algorithm: AlgorithmIdentity,
    groups_input: Sequence[tuple[SegmentInfo, SegmentMeasurements, Sequence[NumericMeasurement]]],
) -> tuple[
    list[hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations],
    list[list[Dataset]],
    set[str],
]:
    """One TID 1411 group per measured segment, the extra items of each, and the schemes used."""
    series_instance_uid = str(volume.series_instance_uid)
    segment_numbers = _segment_numbers(seg, volume)
    modality = (volume.modality or "").upper()
    intensity = _INTENSITY.get(modality)
    if intensity is None:
        logger.info("no intensity concept for modality %s: reporting volumes only", modality)
    algorithm_id = _algorithm_id(algorithm)
    volumetric = []
    extras_per_group: list[list[Dataset]] = []
    used: set[str] = set()
    for segment, measured, extras in groups_input:
        used.update((segment.category.scheme, segment.type.scheme))
        used.update(code.scheme for extra in extras for code in (extra.name, extra.unit))
        seg_label = segment.name[:64]  # Segment Label is LO
        if seg_label not in segment_numbers:
            raise MeasurementError(f"the SEG has no segment labelled {seg_label!r}")
        extras_per_group.append(extra_items(extras))
        volumetric.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=_tracking_uid(series_instance_uid, algorithm, segment.label),
                    identifier=segment.name,
                ),
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=str(seg.SOPClassUID),
                    sop_instance_uid=str(seg.SOPInstanceUID),
                    segment_number=segment_numbers[seg_label],
                    source_series=hd.sr.SourceSeriesForSegmentation(series_instance_uid),
                ),
                finding_type=coded(segment.type),
                finding_category=coded(segment.category),
                algorithm_id=algorithm_id,
                measurements=_group_measurements(measured, intensity),
            )
        )
    return volumetric, extras_per_group, used


@dataclass(frozen=True)
class _Header:
    """What the document says besides its content."""

    modality: str
    algorithm: AlgorithmIdentity
    series_number: int
    coding_schemes: tuple[CodingSchemeIdentification, ...]


def _used(
    coding_schemes: Sequence[CodingSchemeIdentification], designators: set[str]
) -> tuple[CodingSchemeIdentification, ...]:
    """The identifications of the schemes the document uses, once per designator."""
    found: dict[str, CodingSchemeIdentification] = {}
    for scheme in coding_schemes:
        if scheme.designator in designators:
            found.setdefault(scheme.designator, scheme)
    return tuple(found.values())


def _tracking_uid(series_instance_uid: str, algorithm: AlgorithmIdentity, label: int) -> str:
    return derive_uid(
        series_instance_uid, algorithm.name, algorithm.version, "SR", "tracking", str(label)
    )


def _absent_groups(
    labelmap: LabelMap,
    algorithm: AlgorithmIdentity,
    algorithm_id: hd.sr.AlgorithmIdentification,
    series_instance_uid: str,
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One TID 1501 group per segment the model looks for, evaluating it as absent."""
    return [
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=_tracking_uid(series_instance_uid, algorithm, segment.label),
                identifier=segment.name,
            ),
            finding_type=coded(segment.type),
            finding_category=coded(segment.category),
            algorithm_id=algorithm_id,
            qualitative_evaluations=[
                hd.sr.QualitativeEvaluation(name=coded(segment.type), value=codes.SCT.Absent)
            ],
        )
        for segment in sorted(labelmap.segments, key=lambda s: s.label)
    ]


def _document(
    source: ImageSeries,
    extra_evidence: Sequence[Dataset],
    groups: Sequence[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ],
    header: _Header,
    *,
    library: Sequence[Dataset] = (),
) -> Dataset:
    """The Comprehensive 3D SR document holding the measurement ``groups``; its Image
    Library (TID 1600) lists ``library``, the images the report's content references."""
    modality, algorithm = header.modality, header.algorithm
    source_series_uid = str(source.volume.series_instance_uid)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derive_uid("device", algorithm.name, algorithm.version),
            name=MANUFACTURER,
            manufacturer_name=MANUFACTURER,
            model_name=f"{algorithm.name} {algorithm.version}",
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=_PROCEDURES.get(modality, codes.SCT.ImagingProcedure),
        imaging_measurements=groups,
        # The Image Library (TID 1600) viewers look the key slices up in: the images the
        # content references, not the whole series (48 entries took 1.5 s and 190 KB).
        referenced_images=list(library) or None,
    )
    series_instance_uid, sop_instance_uid = sr_uids(source_series_uid, algorithm)
    try:
        with warnings.catch_warnings():
            # highdicom warns with the Patient's Name itself when it has one component: PHI.
            warnings.filterwarnings("ignore", message=".*person name", category=UserWarning)
            sr = hd.sr.Comprehensive3DSR(
                evidence=[
                    source_for_derivation(source.headers[0]),
                    *source.headers[1:],
                    *extra_evidence,
                ],
                content=report[0],
                series_instance_uid=series_instance_uid,
                series_number=header.series_number,
                sop_instance_uid=sop_instance_uid,
                instance_number=1,
                manufacturer=MANUFACTURER,
                is_complete=True,
                coding_schemes=[scheme.item() for scheme in header.coding_schemes] or None,
            )
    except (AttributeError, ValueError) as exc:
        raise MeasurementError(f"cannot build the SR document: {exc}") from exc
    sr.ManufacturerModelName = f"{algorithm.name} {algorithm.version}"[:64]
    sr.SoftwareVersions = algorithm.software_versions[:64]
    sr.SeriesDescription = (
        f"AI measurements ({algorithm.name} {algorithm.version}) - requires review"[:64]
    )
    sr.ContributingEquipmentSequence = [
        *sr.get("ContributingEquipmentSequence", []),
        *contributing_equipment(algorithm),
    ]
    set_series_date_time([sr])
    return sr


def _match_inputs(
    labelmap: LabelMap,
    measurements: Sequence[SegmentMeasurements],
    extra_measurements: Mapping[int, Sequence[NumericMeasurement]],
) -> list[tuple[SegmentInfo, SegmentMeasurements, Sequence[NumericMeasurement]]]:
    if not measurements:
        raise MeasurementError("no measurements to report: no segment has any voxel")
    segments = {s.label: s for s in labelmap.segments}
    labels = [m.label for m in measurements]
    unknown = sorted(set(labels) - set(segments))
    if unknown:
        raise MeasurementError(f"measurements for labels not in the label map: {unknown}")
    if len(set(labels)) != len(labels):
        raise MeasurementError("more than one set of measurements for the same label")
    orphans = sorted(set(extra_measurements) - set(labels))
    if orphans:
        raise MeasurementError(f"extra measurements for labels without measurements: {orphans}")
    return [(segments[m.label], m, extra_measurements.get(m.label, ())) for m in measurements]


def _segment_numbers(seg: Dataset, volume: Volume) -> dict[str, int]:
    """Segment Number by Segment Label; checks that ``seg`` belongs to ``volume``."""
    if str(seg.get("SOPClassUID", "")) not in SEG_SOP_CLASS_UIDS or "SOPInstanceUID" not in seg:
        raise MeasurementError("the referenced object is not a DICOM SEG")
    seg_frame = seg.get("FrameOfReferenceUID")
    if (
        volume.frame_of_reference_uid
        and seg_frame
        and str(seg_frame) != volume.frame_of_reference_uid
    ):
        raise MeasurementError("the SEG is in another Frame of Reference than the source series")
    referenced = {
        str(item.get("SeriesInstanceUID", "")) for item in seg.get("ReferencedSeriesSequence", [])
    }
    if referenced and volume.series_instance_uid not in referenced:
        raise MeasurementError("the SEG does not reference the source series")
    numbers: dict[str, int] = {}
    duplicates: set[str] = set()
    for item in seg.get("SegmentSequence", []):
        label = str(item.get("SegmentLabel", ""))
        if label in numbers:
            duplicates.add(label)
        numbers[label] = int(item.SegmentNumber)
    for label in duplicates:
        del numbers[label]  # ambiguous: reported as missing if measured
    return numbers


def _group_measurements(
    measured: SegmentMeasurements, intensity: tuple[PydicomCode, PydicomCode] | None
) -> list[hd.sr.Measurement]:
    items = [
        hd.sr.Measurement(
            name=codes.SCT.Volume,
            value=float(measured.volume_mm3),
            unit=codes.UCUM.CubicMillimeter,
        )
    ]
    if intensity is not None:
        concept, unit = intensity
        items.extend(
            hd.sr.Measurement(
                name=concept,
                value=float(getattr(measured, attribute)),
                unit=unit,
                derivation=derivation,
            )
            for attribute, derivation in _DERIVATIONS
        )
    return items
