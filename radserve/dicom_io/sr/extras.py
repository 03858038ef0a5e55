"""The NUM items of extra measurements (e.g. radiomic features), built and inserted directly.

highdicom validates every code and value of every item again, which made a report with a
thousand radiomic features take seconds; these items are built as plain datasets and added
to the finished document instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import DS

import radserve
from radserve.dicom_io.algorithm import MANUFACTURER
from radserve.dicom_io.errors import MeasurementError
from radserve.dicom_io.masks.labelmap import Code
from radserve.dicom_io.sr.content import (
    IMAGING_MEASUREMENTS,
    MEASUREMENT_GROUP,
    NumericMeasurement,
    coded,
    concept_of,
)

_ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
_ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
_ALGORITHM_PARAMETERS = Code("111002", "DCM", "Algorithm Parameters")


def extra_items(extras: Sequence[NumericMeasurement]) -> list[Dataset]:
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
        _text_item(coded(_ALGORITHM_NAME), MANUFACTURER),
        _text_item(coded(_ALGORITHM_VERSION), radserve.__version__),
    ]
    parameters = coded(_ALGORITHM_PARAMETERS)
    items: list[Dataset] = []
    for extra in extras:
        unit = units.get(extra.unit)
        if unit is None:
            unit = units[extra.unit] = coded(extra.unit)
        value = float(extra.value)
        measured = Dataset()
        measured.MeasurementUnitsCodeSequence = [unit]
        measured.FloatingPointValue = value
        measured.NumericValue = DS(value, auto_format=True)
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "NUM"
        item.ConceptNameCodeSequence = [coded(extra.name)]
        item.MeasuredValueSequence = [measured]
        if extra.description:
            item.ContentSequence = [
                *shared,
                _text_item(parameters, extra.description),
            ]
        items.append(item)
    return items


def _text_item(concept: Dataset, text: str) -> Dataset:
    """A TEXT content item with relationship HAS CONCEPT MOD (as in TID 4019)."""
    item = Dataset()
    item.RelationshipType = "HAS CONCEPT MOD"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = [concept]
    item.TextValue = text
    return item


def with_extra_items(sr: Dataset, items_per_group: Sequence[Sequence[Dataset]]) -> Dataset:
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
        if concept_of(item) == IMAGING_MEASUREMENTS and item.ValueType == "CONTAINER"
    ]
    groups = [
        item
        for container in containers
        for item in container.ContentSequence
        if concept_of(item) == MEASUREMENT_GROUP and item.ValueType == "CONTAINER"
    ]
    if len(groups) != len(items_per_group):
        raise MeasurementError("internal: the SR's measurement groups are not the ones built")
    for group, items in zip(groups, items_per_group, strict=True):
        content = list(group.ContentSequence)
        numeric = [n for n, item in enumerate(content) if item.ValueType == "NUM"]
        after = numeric[-1] + 1 if numeric else len(content)
        # As a plain element: highdicom's attribute setter wants its own item classes.
        group["ContentSequence"] = DataElement(
            "ContentSequence", "SQ", [*content[:after], *items, *content[after:]]
        )
    return document
