"""Content items shared by the SR writer and reader: measurements, coding schemes, concepts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset

from radserve.dicom_io.masks.labelmap import Code

# Concept names (Coding Scheme Designator, Code Value) of the TID 1500 containers and items.
MEASUREMENT_REPORT = ("DCM", "126000")
IMAGING_MEASUREMENTS = ("DCM", "126010")
MEASUREMENT_GROUP = ("DCM", "125007")
TRACKING_IDENTIFIER = ("DCM", "112039")
TRACKING_UID = ("DCM", "112040")
DERIVATION = ("DCM", "121401")


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


def concept_of(item: Dataset) -> tuple[str, str]:
    """(Coding Scheme Designator, Code Value) of an item's concept name; blank if none."""
    concept = item.get("ConceptNameCodeSequence")
    if not concept:
        return ("", "")
    return (str(concept[0].CodingSchemeDesignator), str(concept[0].CodeValue))


def coded(code: Code) -> hd.sr.CodedConcept:
    """The highdicom coded concept of a code."""
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def children_with(item: Dataset, concept: tuple[str, str]) -> list[Dataset]:
    """The content items of ``item`` whose concept name is ``concept``."""
    return [c for c in item.get("ContentSequence", []) if concept_of(c) == concept]
