"""QIDO-RS and WADO-RS over the ASGI app, on the stored demo study."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from radserve.server import MultipartParser, PartData, PartEnd, PartStart

from .conftest import DICOM_MULTIPART, auth, multipart

pytestmark = pytest.mark.anyio

STUDY_UID = "1.3.6.1.4.1.14519.5.2.1.5168.1900.190311276211389538203367070477"
EXPLICIT = "1.2.840.10008.1.2.1"
READ = auth("reader")


@pytest.fixture
async def stored(client: httpx.AsyncClient, demo_files: list[Path]) -> dict[str, Any]:
    """The demo study stored; the SOP Instance UID -> file of each instance."""
    body = multipart([p.read_bytes() for p in demo_files])
    response = await client.post(
        "/dicomweb/studies",
        content=body,
        headers={**auth("submitter"), "Content-Type": DICOM_MULTIPART},
    )
    assert response.status_code == 200
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in demo_files}


def _value(item: dict[str, Any], tag: str) -> Any:
    return item.get(tag, {}).get("Value", [None])[0]


def _parts(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    content_type = response.headers["content-type"]
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    parser = MultipartParser(content_type.rsplit("boundary=", 1)[1])
    parts: list[tuple[dict[str, str], bytes]] = []
    for event in parser.feed(response.content):
        if isinstance(event, PartStart):
            parts.append((dict(event.headers), b""))
        elif isinstance(event, PartData):
            parts[-1] = (parts[-1][0], parts[-1][1] + event.data)
        else:
            assert isinstance(event, PartEnd)
    parser.close()
    return parts


async def test_search_studies_series_instances(
    client: httpx.AsyncClient, stored: dict[str, Path]
) -> None:
    studies = await client.get("/dicomweb/studies", params={"PatientName": "sts*"}, headers=READ)
    assert studies.status_code == 200
    assert studies.headers["content-type"] == "application/dicom+json"
    [study] = studies.json()
    assert _value(study, "0020000D") == STUDY_UID
    assert _value(study, "00201208") == 49
    assert _value(study, "00081190") == f"http://testserver/dicomweb/studies/{STUDY_UID}"
    series = await client.get(f"/dicomweb/studies/{STUDY_UID}/series", headers=READ)
    assert sorted(_value(s, "00080060") for s in series.json()) == ["CT", "RTSTRUCT"]
    ct = next(s for s in series.json() if _value(s, "00080060") == "CT")
    series_uid = _value(ct, "0020000E")
    assert _value(ct, "00201209") == 48
    instances = await client.get(
        f"/dicomweb/studies/{STUDY_UID}/series/{series_uid}/instances",
        params={"limit": "5", "offset": "10", "includefield": "00280010,Rows"},
        headers=READ,
    )
    assert [_value(i, "00200013") for i in instances.json()] == [10, 11, 12, 13, 14]
    assert {_value(i, "00080018") for i in instances.json()} <= set(stored)
    by_tag = await client.get("/dicomweb/series", params={"00080060": "RTSTRUCT"}, headers=READ)
    assert len(by_tag.json()) == 1
    everywhere = await client.get("/dicomweb/instances", params={"InstanceNumber": 3}, headers=READ)
    assert len(everywhere.json()) == 1


async def test_search_without_match_and_paging(
    client: httpx.AsyncClient, stored: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    none = await client.get("/dicomweb/studies", params={"StudyDate": "-19991231"}, headers=READ)
    assert (none.status_code, none.json()) == (200, [])
    limited = await client.get(
        f"/dicomweb/studies/{STUDY_UID}/instances", params={"limit": 48}, headers=READ
    )
    assert len(limited.json()) == 48
    assert "additional results" in limited.headers["warning"]
    full = await client.get(f"/dicomweb/studies/{STUDY_UID}/instances", headers=READ)
    assert len(full.json()) == 49 and "warning" not in full.headers


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"PatientWeight": "1"}, "PatientWeight is not supported for matching at the STUDY level"),
        ({"NotAKeyword": "1"}, "not a DICOM attribute keyword"),
        ({"99990010": "1"}, "not a known DICOM attribute tag"),
        ({"limit": "-1"}, "limit must be a non-negative integer"),
        ({"offset": "x"}, "offset must be a non-negative integer"),
        ({"offset": str(2**63)}, "offset must be at most"),
        ({"offset": "9" * 5000}, "offset must be a non-negative integer"),
        ({"StudyDate": "yesterday"}, "StudyDate value or range is malformed"),
        ({"includefield": "Bogus"}, "not a DICOM attribute keyword"),
        ({"ReferencedSOPSequence.ReferencedSOPInstanceUID": "1"}, "sequence matching"),
    ],
)
async def test_bad_queries_are_400(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await client.get("/dicomweb/studies", params=params, headers=READ)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_retrieve_study_series_instance(
    client: httpx.AsyncClient, stored: dict[str, Path]
) -> None:
    # Stored in Implicit VR Little Endian; sent in Explicit VR Little Endian (PS3.18 8.7.3.5;
    # tests/server/routes/test_wado_transfer_syntax.py has the other syntaxes).
    response = await client.get(f"/dicomweb/studies/{STUDY_UID}", headers=READ)
    assert response.status_code == 200
    parts = _parts(response)
    assert len(parts) == 49
    for headers, data in parts:
        original = pydicom.dcmread(stored[_sop(data)])
        sent = pydicom.dcmread(BytesIO(data))
        assert headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT}"
        assert sent.file_meta.TransferSyntaxUID == EXPLICIT
        assert sent == original  # every attribute, the pixel data included
    sop, path = next(iter(stored.items()))
    series_uid = pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID
    one = await client.get(
        f"/dicomweb/studies/{STUDY_UID}/series/{series_uid}/instances/{sop}",
        headers={
            **READ,
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
        },
    )
    [(headers, data)] = _parts(one)
    assert headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT}"
    assert pydicom.dcmread(BytesIO(data)) == pydicom.dcmread(path)
    series = await client.get(f"/dicomweb/studies/{STUDY_UID}/series/{series_uid}", headers=READ)
    assert len(_parts(series)) == 48


def _sop(data: bytes) -> str:
    return str(pydicom.dcmread(BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


async def test_metadata_links_pixel_data(
    client: httpx.AsyncClient, stored: dict[str, Path]
) -> None:
    response = await client.get(f"/dicomweb/studies/{STUDY_UID}/metadata", headers=READ)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    metadata = response.json()
    assert len(metadata) == 49
    images = [item for item in metadata if _value(item, "00080060") == "CT"]
    assert all(set(item["7FE00010"]) == {"vr", "BulkDataURI"} for item in images)
    assert all("7FE00010" not in item for item in metadata if item not in images)
    ct = next(item for item in metadata if _value(item, "00080060") == "CT")
    ds = pydicom.dcmread(stored[_value(ct, "00080018")], stop_before_pixels=True)
    assert _value(ct, "00280010") == ds.Rows
    assert ct["00200032"]["Value"] == [float(v) for v in ds.ImagePositionPatient]


async def test_metadata_served_again_is_the_same_under_each_root(
    client: httpx.AsyncClient, stored: dict[str, Path], app: Any
) -> None:
    path = f"/dicomweb/studies/{STUDY_UID}/metadata"
    first = (await client.get(path, headers=READ)).json()
    assert app.state.radserve.metadata_cache.size_bytes > 0  # kept
    again = (await client.get(path, headers=READ)).json()
    assert again == first
    elsewhere = (await client.get(path, headers={**READ, "Host": "pacs.example:8443"})).json()
    uris = [item["7FE00010"]["BulkDataURI"] for item in elsewhere if "7FE00010" in item]
    assert uris and all(u.startswith("http://pacs.example:8443/dicomweb/studies/") for u in uris)
    assert all("radserve-dicomweb-root" not in str(item) for item in elsewhere)


async def test_unknown_uids_and_bad_accept(
    client: httpx.AsyncClient, stored: dict[str, Path]
) -> None:
    for path in (
        "/dicomweb/studies/1.2.3",
        f"/dicomweb/studies/{STUDY_UID}/series/1.2.3",
        f"/dicomweb/studies/{STUDY_UID}/series/1.2.3/instances/1.2.4/metadata",
    ):
        response = await client.get(path, headers=READ)
        assert response.status_code == 404
        assert response.json()["error"].startswith("no such ")
    refused = await client.get(
        f"/dicomweb/studies/{STUDY_UID}", headers={**READ, "Accept": "application/zip"}
    )
    assert refused.status_code == 406
    json_only = await client.get(
        f"/dicomweb/studies/{STUDY_UID}/metadata", headers={**READ, "Accept": "image/png"}
    )
    assert json_only.status_code == 406


async def test_reading_needs_the_read_role(client: httpx.AsyncClient) -> None:
    assert (await client.get("/dicomweb/studies")).status_code == 401
    submitter = await client.get("/dicomweb/studies", headers=auth("submitter"))
    assert submitter.status_code == 403
    assert (
        await client.get("/dicomweb/studies/1.2/metadata", headers=auth("admin"))
    ).status_code == 403
