"""PS3.19 Native DICOM Model XML from WADO-RS metadata (PS3.18 Table 10.4.4-1: Required) and
QIDO-RS (10.6.3.2), checked against dcmtk's ``dcm2xml --native-format`` on the same files."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.conftest import require

from .conftest import auth, instance_path, multipart_parts

pytestmark = pytest.mark.anyio

READ = auth("reader")
XML = 'multipart/related; type="application/dicom+xml"'
NUMERIC = {"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"}
BINARY = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


def _values(attribute: ET.Element) -> list[object]:
    vr = attribute.get("vr")
    if vr == "PN":
        return [
            tuple((part.tag, part.text) for group in name for part in group)
            for name in attribute.findall("PersonName")
        ]
    texts = [value.text or "" for value in attribute.findall("Value")]
    if vr in NUMERIC:
        return [round(float(t), 6) for t in texts]
    return texts


def _attributes(root: ET.Element) -> dict[str, tuple[str | None, list[object]]]:
    return {
        a.get("tag", ""): (a.get("vr"), _values(a))
        for a in root.findall("DicomAttribute")
        if a.get("vr") not in BINARY and a.get("vr") != "SQ"
    }


def _dcm2xml(path: Path) -> ET.Element:
    exe = shutil.which("dcm2xml")
    require(exe is not None, "dcm2xml not installed (Debian package dcmtk)")
    assert exe is not None
    out = subprocess.run(
        [exe, "--native-format", "--convert-to-utf8", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return ET.fromstring(out)


async def test_metadata_as_xml_says_what_dcmtk_says(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    for path in (demo_stored[0], demo_stored[-1]):  # a CT slice, the RT Structure Set
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        response = await client.get(
            f"{instance_path(ds)}/metadata", headers={**READ, "Accept": XML}
        )
        assert response.status_code == 200, response.text
        [(headers, body)] = multipart_parts(response)
        assert headers["content-type"] == "application/dicom+xml"
        ours = ET.fromstring(body)
        assert ours.tag == "NativeDicomModel"
        theirs = _attributes(_dcm2xml(path))
        mine = _attributes(ours)
        shared = [tag for tag in theirs if not tag.startswith("0002")]
        assert len(shared) > 20
        for tag in shared:
            assert mine.get(tag) == theirs[tag], tag
        if ds.Modality == "CT":
            [pixel] = [a for a in ours.findall("DicomAttribute") if a.get("tag") == "7FE00010"]
            assert pixel.find("BulkData").get("uri", "").endswith("/bulkdata/7FE00010")
        else:  # sequences become numbered items
            contours = [
                a for a in ours.iter("DicomAttribute") if a.get("keyword") == "ROIContourSequence"
            ]
            assert contours and contours[0].find("Item").get("number") == "1"


async def test_search_results_as_xml_one_part_each(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_stored[0], stop_before_pixels=True)
    response = await client.get(
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series", headers={**READ, "Accept": XML}
    )
    assert response.status_code == 200, response.text
    parts = multipart_parts(response)
    assert len(parts) == 2  # the CT series and the RT Structure Set's
    uids = set()
    for headers, body in parts:
        assert headers["content-type"] == "application/dicom+xml"
        [attribute] = [
            a for a in ET.fromstring(body).findall("DicomAttribute") if a.get("tag") == "0020000E"
        ]
        uids.add(attribute.find("Value").text)
    assert ds.SeriesInstanceUID in uids
