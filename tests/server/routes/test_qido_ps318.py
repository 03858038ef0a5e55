"""QIDO-RS to the letter of PS3.18, each test citing its clause: the Required result
attributes (Tables 10.6.3-3, -4, -5) present even where the data have none, the Warning for
fuzzy matching (8.3.4.2), and the Accept header (10.6.2: DICOM JSON or XML, or 406)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pydicom
import pytest

from .conftest import auth, dicom_bytes, stow

pytestmark = pytest.mark.anyio

READ = auth("reader")
STUDY_REQUIRED = {
    "00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00100010",
    "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208",
    "00081190",
}  # fmt: skip
SERIES_REQUIRED = {
    "00080060", "0008103E", "0020000E", "00200011", "00201209", "00400244", "00400245",
    "00081190",
}  # fmt: skip
INSTANCE_REQUIRED = {
    "00080016", "00080018", "00080056", "00200013", "00280010", "00280011", "00280100",
    "00280008", "00081190",
}  # fmt: skip


@pytest.fixture
async def sparse(client: httpx.AsyncClient, demo_files: list[Path]) -> pydicom.Dataset:
    """A CT slice without Referring Physician's Name and Patient's Birth Date (both Type 2,
    often left out by real modalities), stored."""
    ds = pydicom.dcmread(demo_files[0])
    for keyword in (
        "ReferringPhysicianName",
        "PatientBirthDate",
        "PerformedProcedureStepStartDate",
    ):
        if keyword in ds:
            delattr(ds, keyword)
    await stow(client, [dicom_bytes(ds)])
    return ds


async def test_results_hold_every_required_attribute_empty_where_unknown(
    client: httpx.AsyncClient, sparse: pydicom.Dataset
) -> None:
    """PS3.18 Tables 10.6.3-3 (study), 10.6.3-4 (series) and 10.6.3-5 (instance)."""
    study = sparse.StudyInstanceUID
    [result] = (await client.get("/dicomweb/studies", headers=READ)).json()
    assert set(result) >= STUDY_REQUIRED, STUDY_REQUIRED - set(result)
    assert result["00080090"] == {"vr": "PN"} and result["00100030"] == {"vr": "DA"}
    assert result["00080056"] == {"vr": "CS", "Value": ["ONLINE"]}
    [series] = (await client.get(f"/dicomweb/studies/{study}/series", headers=READ)).json()
    assert set(series) >= SERIES_REQUIRED, SERIES_REQUIRED - set(series)
    [instance] = (await client.get(f"/dicomweb/studies/{study}/instances", headers=READ)).json()
    assert set(instance) >= INSTANCE_REQUIRED, INSTANCE_REQUIRED - set(instance)
    assert instance["00280010"]["Value"] == [sparse.Rows]


async def test_fuzzy_matching_asked_for_gets_the_warning(
    client: httpx.AsyncClient, sparse: pydicom.Dataset
) -> None:
    """PS3.18 8.3.4.2: an origin server that does not support fuzzy matching shall answer
    ``fuzzymatching=true`` with a 299 Warning saying so."""
    asked = await client.get("/dicomweb/studies", params={"fuzzymatching": "true"}, headers=READ)
    assert asked.status_code == 200
    assert asked.headers["warning"].startswith("299 ")
    assert "fuzzymatching parameter is not supported" in asked.headers["warning"]
    literal = await client.get("/dicomweb/studies", params={"fuzzymatching": "false"}, headers=READ)
    assert "warning" not in literal.headers


async def test_an_accept_header_allowing_neither_json_nor_xml_is_406(
    client: httpx.AsyncClient, sparse: pydicom.Dataset
) -> None:
    """PS3.18 10.6.2 / 8.7: search results are DICOM JSON or, one part each, PS3.19 XML
    (``tests/server/routes/test_dicom_xml.py``); an Accept header that allows neither gets
    406, not JSON with 200."""
    for accept in ("application/dicom+xml", "text/html", 'multipart/related; type="image/png"'):
        response = await client.get("/dicomweb/studies", headers={**READ, "Accept": accept})
        assert response.status_code == 406, accept
    for accept in ("application/dicom+json", "application/json", "*/*", "application/*"):
        response = await client.get("/dicomweb/studies", headers={**READ, "Accept": accept})
        assert response.status_code == 200, accept
