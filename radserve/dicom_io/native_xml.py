"""The PS3.19 Native DICOM Model (``application/dicom+xml``) of a data set given as DICOM
JSON (PS3.18 Annex F): the XML form DICOMweb offers beside JSON for metadata and search
results (PS3.18 Table 10.4.4-1 marks it Required for metadata).

The two encodings carry the same model, so the XML is built from the JSON radserve already
makes (with its BulkDataURIs): an attribute is a ``DicomAttribute`` (``tag``, ``vr``,
``keyword`` for a standard one), each value a numbered ``Value``, a person name a numbered
``PersonName`` with its ``Alphabetic`` / ``Ideographic`` / ``Phonetic`` groups split into
``FamilyName``, ``GivenName``, ``MiddleName``, ``NamePrefix`` and ``NameSuffix``, a sequence
item a numbered ``Item``, bulk data a ``BulkData`` element with its ``uri``, small binary
values ``InlineBinary`` (base64, as in the JSON). The text is UTF-8 (PS3.19 A.1.6), so a
Specific Character Set becomes ``ISO_IR 192``, as dcmtk's ``dcm2xml`` writes it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from pydicom.datadict import keyword_for_tag

_NAME_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def native_dicom_model(dataset: Mapping[str, Any]) -> bytes:
    """One data set in DICOM JSON as a PS3.19 ``NativeDicomModel`` document, UTF-8."""
    root = ET.Element("NativeDicomModel", {"xml:space": "preserve"})
    if "00080005" in dataset:  # the values are Unicode now, written as UTF-8
        dataset = {**dataset, "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}}
    _add_attributes(root, dataset)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def _add_attributes(parent: ET.Element, dataset: Mapping[str, Any]) -> None:
    for tag in sorted(dataset):
        element: Mapping[str, Any] = dataset[tag]
        vr = str(element.get("vr", "UN"))
        attributes = {"tag": tag.upper(), "vr": vr}
        keyword = keyword_for_tag(int(tag, 16))
        if keyword:
            attributes["keyword"] = keyword
        attribute = ET.SubElement(parent, "DicomAttribute", attributes)
        if "BulkDataURI" in element:
            ET.SubElement(attribute, "BulkData", {"uri": str(element["BulkDataURI"])})
        elif "InlineBinary" in element:
            ET.SubElement(attribute, "InlineBinary").text = str(element["InlineBinary"])
        else:
            _add_values(attribute, vr, element.get("Value") or [])


def _add_values(attribute: ET.Element, vr: str, values: Sequence[Any]) -> None:
    for number, value in enumerate(values, start=1):
        if vr == "SQ":
            item = ET.SubElement(attribute, "Item", {"number": str(number)})
            _add_attributes(item, value or {})
        elif vr == "PN":
            _add_person_name(attribute, number, value)
        elif value is not None:
            ET.SubElement(attribute, "Value", {"number": str(number)}).text = _text(value)


def _add_person_name(attribute: ET.Element, number: int, value: Any) -> None:
    name = ET.SubElement(attribute, "PersonName", {"number": str(number)})
    groups = value if isinstance(value, Mapping) else {"Alphabetic": str(value)}
    for group in _GROUPS:
        text = groups.get(group)
        if not text:
            continue
        group_element = ET.SubElement(name, group)
        for part, component in zip(_NAME_PARTS, str(text).split("^"), strict=False):
            if component:
                ET.SubElement(group_element, part).text = component


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
