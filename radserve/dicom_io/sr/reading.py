"""Reading the numeric measurements of a TID 1500 measurement report, tolerantly."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import highdicom as hd
from pydicom.dataset import Dataset

from radserve.dicom_io.errors import MeasurementError
from radserve.dicom_io.reading.instances import read_instance
from radserve.dicom_io.sr.content import (
    DERIVATION,
    IMAGING_MEASUREMENTS,
    MEASUREMENT_GROUP,
    MEASUREMENT_REPORT,
    TRACKING_IDENTIFIER,
    TRACKING_UID,
    children_with,
    concept_of,
)

_V = TypeVar("_V")

_SR_CLASSES: dict[str, type[hd.sr.EnhancedSR | hd.sr.ComprehensiveSR | hd.sr.Comprehensive3DSR]] = {
    "1.2.840.10008.5.1.4.1.1.88.22": hd.sr.EnhancedSR,
    "1.2.840.10008.5.1.4.1.1.88.33": hd.sr.ComprehensiveSR,
    "1.2.840.10008.5.1.4.1.1.88.34": hd.sr.Comprehensive3DSR,
}


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
        if concept_of(dataset) != MEASUREMENT_REPORT:
            raise MeasurementError("the SR is not a TID 1500 measurement report")
        result: dict[str, dict[str, float]] = {}
        planar: list[tuple[str, dict[str, float]]] = []
        number = 0
        for container in children_with(dataset, IMAGING_MEASUREMENTS):
            for group in children_with(container, MEASUREMENT_GROUP):
                number += 1
                values: dict[str, float] = {}
                name: str | None = None
                uid: str | None = None
                items = group.get("ContentSequence", [])
                is_planar = any(item.get("ValueType") == "SCOORD" for item in items)
                for item in items:
                    concept = concept_of(item)
                    if concept == TRACKING_IDENTIFIER and item.get("TextValue"):
                        name = str(item.TextValue)
                    elif concept == TRACKING_UID and item.get("UID"):
                        uid = str(item.UID)
                    elif item.get("ValueType") == "NUM":
                        value = _numeric_value(item)
                        if value is not None:
                            _put_unique(values, _measurement_key(item), value)
                key = name or uid or f"group {number}"
                if is_planar:
                    planar.append((key, values))
                else:
                    _put_unique(result, key, values)
        # A planar (key-slice) group of a segment that also has a volumetric group repeats
        # its headline values: the segment is reported once, from the volumetric group.
        for key, values in planar:
            if key not in result:
                _put_unique(result, key, values)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise MeasurementError(f"not a readable TID 1500 measurement report: {exc}") from exc
    return result


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
    for modifier in children_with(item, DERIVATION):
        return f"{meaning} ({modifier.ConceptCodeSequence[0].CodeMeaning})"
    return meaning


def _put_unique(mapping: dict[str, _V], key: str, value: _V) -> None:
    unique, count = key, 1
    while unique in mapping:
        count += 1
        unique = f"{key} #{count}"
    mapping[unique] = value
