"""DICOM SR measurement reports (TID 1500) for the segments of a DICOM SEG.

:func:`write_sr` writes a Comprehensive 3D SR with one Volumetric ROI measurement group
(TID 1411) per segment: tracking identifier and UID, finding category and type from the
segment's codes, a reference to the SEG segment and its source series, the algorithm, and the
measurements (volume, mean / minimum / maximum / standard deviation of the intensity, plus any
extra measurements such as radiomic features). Coding schemes outside PS3.16 Table 8-1 (a
private ``99...`` scheme) are identified in the Coding Scheme Identification Sequence
(0008,0110) when the caller describes them (:class:`CodingSchemeIdentification`) and the
document uses them. :func:`read_sr_measurements` reads such a report back, tolerantly, as
plain numbers.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code as PydicomCode
from pydicom.valuerep import DS

import radserve
from radserve.dicom_io.algorithm import MANUFACTURER, AlgorithmIdentity, contributing_equipment
from radserve.dicom_io.derived import source_for_derivation
from radserve.dicom_io.errors import MeasurementError
from radserve.dicom_io.masks.labelmap import Code, LabelMap, SegmentInfo
from radserve.dicom_io.masks.measurements import SegmentMeasurements, check_same_grid
from radserve.dicom_io.reading.instances import read_instance
from radserve.dicom_io.reading.series import ImageSeries
from radserve.dicom_io.uids import derive_uid
from radserve.dicom_io.volume import Volume

logger = logging.getLogger(__name__)
_V = TypeVar("_V")

SEG_SOP_CLASS_UIDS = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
        "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation Storage
    }
)

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
_MEASUREMENT_REPORT = ("DCM", "126000")
_IMAGING_MEASUREMENTS = ("DCM", "126010")
_MEASUREMENT_GROUP = ("DCM", "125007")
_TRACKING_IDENTIFIER = ("DCM", "112039")
_TRACKING_UID = ("DCM", "112040")
_DERIVATION = ("DCM", "121401")
# Patient and study attributes highdicom copies from the first evidence instance.
_SR_CLASSES: dict[str, type[hd.sr.EnhancedSR | hd.sr.ComprehensiveSR | hd.sr.Comprehensive3DSR]] = {
    "1.2.840.10008.5.1.4.1.1.88.22": hd.sr.EnhancedSR,
    "1.2.840.10008.5.1.4.1.1.88.33": hd.sr.ComprehensiveSR,
    "1.2.840.10008.5.1.4.1.1.88.34": hd.sr.Comprehensive3DSR,
}


@dataclass(frozen=True)
class NumericMeasurement:
    """An additional measurement of one segment (e.g. a radiomic feature).

    Attributes:
        name: Concept name of the quantity (e.g. an IBSI or DCM code).
        value: The value, in ``unit``.
        unit: UCUM unit code (``Code("1", "UCUM", "no units")`` for dimensionless values).
        description: Optional free text (e.g. the PyRadiomics feature name), written as the
            algorithm parameter of the measurement.
    """

    name: Code
    value: float
    unit: Code
    description: str | None = None

    def __post_init__(self) -> None:
        if self.unit.scheme != "UCUM":
            raise ValueError(f"{self.name.meaning}: the unit must be a UCUM code")
        if not math.isfinite(self.value):
            raise ValueError(f"{self.name.meaning}: the value must be a finite number")


@dataclass(frozen=True)
class CodingSchemeIdentification:
    """An item of the Coding Scheme Identification Sequence (0008,0110), which identifies a
    coding scheme that PS3.16 Table 8-1 does not list (a private ``99...`` scheme).

    Attributes:
        designator: The Coding Scheme Designator the codes use (``99RADSERVE``).
        name: Coding Scheme Name.
        version: Coding Scheme Version.
        responsible_organization: Coding Scheme Responsible Organization.
        uid: Coding Scheme UID, for a scheme registered under one (with ``registry``).
        registry: Coding Scheme Registry (e.g. ``HL7``), for a registered scheme.
    """

    designator: str
    name: str
    version: str | None = None
    responsible_organization: str | None = None
    uid: str | None = None
    registry: str | None = None

    def __post_init__(self) -> None:
        if not self.designator or len(self.designator) > 16:
            raise ValueError("a Coding Scheme Designator has 1 to 16 characters")
        if (self.registry is None) != (self.uid is None):
            raise ValueError(f"{self.designator}: a registered scheme needs registry and uid")

    def item(self) -> CodingSchemeIdentificationItem:
        """The sequence item."""
        return CodingSchemeIdentificationItem(
            designator=self.designator,
            name=self.name[:64],
            version=self.version,
            registry=self.registry,
            uid=self.uid,
            responsible_organization=self.responsible_organization,
        )


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
    series_number: int = 902,
    extra_measurements: Mapping[int, Sequence[NumericMeasurement]] | None = None,
    coding_schemes: Sequence[CodingSchemeIdentification] = (),
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
        series_number: Series Number of the SR.
        extra_measurements: Further measurements per label (e.g. radiomic features).
        coding_schemes: Coding schemes to identify in the Coding Scheme Identification
            Sequence; only those whose designator a code of the document uses are written
            (none at all: the sequence is left out).

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
    modality = (volume.modality or "").upper()
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=algorithm.name,
        version=algorithm.version,
        family=codes.DCM.ArtificialIntelligence,
    )
    if seg is None:
        if measurements or extra_measurements:
            raise MeasurementError("measurements need the SEG whose segments they describe")
        groups = _absent_groups(labelmap, algorithm, algorithm_id, volume.series_instance_uid)
        used = {code.scheme for s in labelmap.segments for code in (s.category, s.type)}
        return _document(
            source,
            [],
            groups,
            _Header(modality, algorithm, series_number, _used(coding_schemes, used)),
        )
    groups_input = _match_inputs(labelmap, measurements, extra_measurements or {})
    segment_numbers = _segment_numbers(seg, volume)

    intensity = _INTENSITY.get(modality)
    if intensity is None:
        logger.info("no intensity concept for modality %s: reporting volumes only", modality)
    volumetric = []
    extra_items: list[list[Dataset]] = []
    used = set()
    for segment, measured, extras in groups_input:
        used.update((segment.category.scheme, segment.type.scheme))
        used.update(code.scheme for extra in extras for code in (extra.name, extra.unit))
        seg_label = segment.name[:64]  # Segment Label is LO
        if seg_label not in segment_numbers:
            raise MeasurementError(f"the SEG has no segment labelled {seg_label!r}")
        group_measurements = _group_measurements(measured, intensity)
        extra_items.append(_extra_items(extras))
        volumetric.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=_tracking_uid(volume.series_instance_uid, algorithm, segment.label),
                    identifier=segment.name,
                ),
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=str(seg.SOPClassUID),
                    sop_instance_uid=str(seg.SOPInstanceUID),
                    segment_number=segment_numbers[seg_label],
                    source_series=hd.sr.SourceSeriesForSegmentation(volume.series_instance_uid),
                ),
                finding_type=_coded(segment.type),
                finding_category=_coded(segment.category),
                algorithm_id=algorithm_id,
                measurements=group_measurements,
            )
        )
    sr = _document(
        source,
        [seg],
        volumetric,
        _Header(modality, algorithm, series_number, _used(coding_schemes, used)),
    )
    if any(extra_items):
        sr = _with_extra_items(sr, extra_items)
    return sr


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
            finding_type=_coded(segment.type),
            finding_category=_coded(segment.category),
            algorithm_id=algorithm_id,
            qualitative_evaluations=[
                hd.sr.QualitativeEvaluation(name=_coded(segment.type), value=codes.SCT.Absent)
            ],
        )
        for segment in sorted(labelmap.segments, key=lambda s: s.label)
    ]


def _document(
    source: ImageSeries,
    extra_evidence: Sequence[Dataset],
    groups: Sequence[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ],
    header: _Header,
) -> Dataset:
    """The Comprehensive 3D SR document holding the measurement ``groups``."""
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
    return sr


def read_sr_measurements(sr: Dataset | str | Path) -> dict[str, dict[str, float]]:
    """Read the numeric measurements of a TID 1500 measurement report.

    Tolerant of reports written by other tools (dcmqi, highdicom, vendors): volumetric,
    planar and image-level measurement groups are all read, and measurements without a
    numeric value are skipped.

    Args:
        sr: An SR dataset or the path of an SR file.

    Returns:
        ``{tracking identifier (the segment name): {measurement: value}}``. A measurement is
        keyed by its concept name meaning, followed by the derivation in parentheses when it
        has one (``"Volume"``, ``"Attenuation Coefficient (Mean)"``). A repeated key gets a
        ``" #2"``, ``" #3"`` suffix.

    Raises:
        MeasurementError: The input is not an SR measurement report (TID 1500).
    """
    dataset = sr if isinstance(sr, Dataset) else read_instance(Path(sr))
    sop_class_uid = str(dataset.get("SOPClassUID", ""))
    if sop_class_uid not in _SR_CLASSES:
        raise MeasurementError(f"SOP Class {sop_class_uid} is not an SR class radserve reads")
    # A direct walk over the content tree: highdicom's parser re-validates every item, which
    # takes seconds for a report with a thousand radiomic features.
    try:
        if _concept(dataset) != _MEASUREMENT_REPORT:
            raise MeasurementError("the SR is not a TID 1500 measurement report")
        result: dict[str, dict[str, float]] = {}
        number = 0
        for container in _children(dataset, _IMAGING_MEASUREMENTS):
            for group in _children(container, _MEASUREMENT_GROUP):
                number += 1
                values: dict[str, float] = {}
                name: str | None = None
                uid: str | None = None
                for item in group.get("ContentSequence", []):
                    concept = _concept(item)
                    if concept == _TRACKING_IDENTIFIER and item.get("TextValue"):
                        name = str(item.TextValue)
                    elif concept == _TRACKING_UID and item.get("UID"):
                        uid = str(item.UID)
                    elif item.get("ValueType") == "NUM":
                        value = _numeric_value(item)
                        if value is not None:
                            _put_unique(values, _measurement_key(item), value)
                _put_unique(result, name or uid or f"group {number}", values)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise MeasurementError(f"not a readable TID 1500 measurement report: {exc}") from exc
    return result


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


def _extra_items(extras: Sequence[NumericMeasurement]) -> list[Dataset]:
    """The NUM content items (TID 300) of the extra measurements of one group.

    Each item is what ``hd.sr.Measurement(name, value, unit, algorithm_id=
    hd.sr.AlgorithmIdentification(radserve, version, [description]))`` makes (the tests
    compare them element by element), built directly: highdicom's constructors validate
    every code and value again, 1.2 ms per measurement, which made an SR with a thousand
    radiomic features take 1.5 s. Units, the algorithm name and version items and the
    concept of the algorithm parameters are built once and shared.
    """
    units: dict[Code, hd.sr.CodedConcept] = {}
    shared = [
        _text_item(_coded(_ALGORITHM_NAME), MANUFACTURER),
        _text_item(_coded(_ALGORITHM_VERSION), radserve.__version__),
    ]
    parameters = _coded(_ALGORITHM_PARAMETERS)
    items: list[Dataset] = []
    for extra in extras:
        unit = units.get(extra.unit)
        if unit is None:
            unit = units[extra.unit] = _coded(extra.unit)
        value = float(extra.value)
        measured = Dataset()
        measured.MeasurementUnitsCodeSequence = [unit]
        measured.FloatingPointValue = value
        measured.NumericValue = DS(value, auto_format=True)
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "NUM"
        item.ConceptNameCodeSequence = [_coded(extra.name)]
        item.MeasuredValueSequence = [measured]
        if extra.description:
            item.ContentSequence = [
                *shared,
                _text_item(parameters, extra.description),
            ]
        items.append(item)
    return items


_ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
_ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
_ALGORITHM_PARAMETERS = Code("111002", "DCM", "Algorithm Parameters")


def _text_item(concept: Dataset, text: str) -> Dataset:
    """A TEXT content item with relationship HAS CONCEPT MOD (as in TID 4019)."""
    item = Dataset()
    item.RelationshipType = "HAS CONCEPT MOD"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = [concept]
    item.TextValue = text
    return item


def _with_extra_items(sr: Dataset, extra_items: Sequence[Sequence[Dataset]]) -> Dataset:
    """Insert each group's extra NUM items after its measurements, where highdicom puts them.

    highdicom's document constructor deep-copies and re-parses the whole content tree,
    which takes seconds for a thousand radiomic features; the items are appended to the
    finished document instead. The result is a plain :class:`Dataset`, so that no stale
    highdicom view of the content remains.
    """
    document = Dataset(sr)  # the same elements, without highdicom's parsed copy
    document.file_meta = sr.file_meta
    containers = [
        item
        for item in document.ContentSequence
        if _concept(item) == _IMAGING_MEASUREMENTS and item.ValueType == "CONTAINER"
    ]
    groups = [
        item
        for container in containers
        for item in container.ContentSequence
        if _concept(item) == _MEASUREMENT_GROUP and item.ValueType == "CONTAINER"
    ]
    if len(groups) != len(extra_items):
        raise MeasurementError("internal: the SR's measurement groups are not the ones built")
    for group, items in zip(groups, extra_items, strict=True):
        content = list(group.ContentSequence)
        numeric = [n for n, item in enumerate(content) if item.ValueType == "NUM"]
        after = numeric[-1] + 1 if numeric else len(content)
        # As a plain element: highdicom's attribute setter wants its own item classes.
        group["ContentSequence"] = DataElement(
            "ContentSequence", "SQ", [*content[:after], *items, *content[after:]]
        )
    return document


def _concept(item: Dataset) -> tuple[str, str]:
    """(Coding Scheme Designator, Code Value) of an item's concept name; blank if none."""
    concept = item.get("ConceptNameCodeSequence")
    if not concept:
        return ("", "")
    return (str(concept[0].CodingSchemeDesignator), str(concept[0].CodeValue))


def _coded(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _children(item: Dataset, concept: tuple[str, str]) -> list[Dataset]:
    return [c for c in item.get("ContentSequence", []) if _concept(c) == concept]


def _numeric_value(item: Dataset) -> float | None:
    """The value of a NUM item; None for one that has a qualifier instead of a value."""
    measured = item.get("MeasuredValueSequence")
    if not measured:
        return None
    value = measured[0]
    if value.get("FloatingPointValue") is not None:
        return float(value.FloatingPointValue)
    return float(value.NumericValue)


def _measurement_key(item: Dataset) -> str:
    meaning = str(item.ConceptNameCodeSequence[0].CodeMeaning)
    for modifier in _children(item, _DERIVATION):
        return f"{meaning} ({modifier.ConceptCodeSequence[0].CodeMeaning})"
    return meaning


def _put_unique(mapping: dict[str, _V], key: str, value: _V) -> None:
    unique, count = key, 1
    while unique in mapping:
        count += 1
        unique = f"{key} #{count}"
    mapping[unique] = value
