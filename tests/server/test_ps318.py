"""PS3.18 (DICOMweb) resource by resource, against a real server (uvicorn on loopback)
holding the bundled study, each check citing the clause it holds radserve to. The finer
cases are in ``tests/server/routes`` (test_wado_transfer_syntax, test_qido_ps318,
test_dicom_xml, test_stow_json, test_wado_frames, test_wado_bulkdata, test_wado_rendered)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from radserve.server import create_app
from tests.live_server import serving
from tests.server.routes.conftest import (
    DICOM_MULTIPART,
    auth,
    make_settings,
    multipart,
    multipart_parts,
)

EXPLICIT = "1.2.840.10008.1.2.1"
DICOM = 'multipart/related; type="application/dicom"'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_study: Path) -> Iterator[httpx.Client]:
    app = create_app(make_settings(tmp_path_factory.mktemp("ps318")))
    files = [*sorted((demo_study / "image").glob("*.dcm")), demo_study / "mask" / "RS.dcm"]
    try:
        with serving(app) as url, httpx.Client(base_url=f"{url}/dicomweb", timeout=60) as client:
            client.headers.update(auth("both"))
            stored = client.post(
                "/studies",
                content=multipart([f.read_bytes() for f in files]),
                headers={"Content-Type": DICOM_MULTIPART},
            )
            assert stored.status_code == 200, stored.text
            yield client
    finally:
        app.state.radserve.store.close()


@pytest.fixture(scope="module")
def ct(demo_study: Path) -> pydicom.Dataset:
    return pydicom.dcmread(sorted((demo_study / "image").glob("*.dcm"))[0])


def _path(ds: pydicom.Dataset) -> str:
    return (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def _parts(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    assert response.status_code == 200, response.text
    return multipart_parts(response)


def test_10_5_stow_answers_with_the_referenced_sops_and_their_urls(
    server: httpx.Client, ct: pydicom.Dataset
) -> None:
    """10.5.3 / Table 10.5.3-1: Retrieve URL (0008,1190) and Referenced SOP Sequence
    (0008,1199), an item per stored instance with its own Retrieve URL."""
    again = server.post(
        "/studies",
        content=multipart([_file_bytes(ct)]),
        headers={"Content-Type": DICOM_MULTIPART, "Accept": "application/dicom+json"},
    )
    assert again.status_code == 200
    body = again.json()
    [item] = body["00081199"]["Value"]
    assert item["00081155"]["Value"] == [ct.SOPInstanceUID]
    assert item["00081190"]["Value"][0].endswith(_path(ct))
    assert body["00081190"]["Value"][0].endswith(f"/studies/{ct.StudyInstanceUID}")


def _file_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_8_7_3_5_instances_default_to_explicit_vr_never_implicit(
    server: httpx.Client, ct: pydicom.Dataset
) -> None:
    """8.7.3.5 and Table 8.7.3-5: no transfer-syntax means Explicit VR Little Endian;
    Implicit VR Little Endian (how the bundled study is stored) is never sent."""
    for accept in (DICOM, f"{DICOM}; transfer-syntax=*"):
        [(headers, data)] = _parts(server.get(_path(ct), headers={"Accept": accept}))
        assert headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT}"
        assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == EXPLICIT
    implicit = server.get(
        _path(ct), headers={"Accept": f"{DICOM}; transfer-syntax=1.2.840.10008.1.2"}
    )
    assert implicit.status_code == 406


def test_10_4_3_3_2_metadata_holds_every_attribute_and_bulk_data_by_uri(
    server: httpx.Client, ct: pydicom.Dataset
) -> None:
    """10.4.3.3.2: the metadata holds all attributes, bulk data by BulkDataURI; the URI
    resolves (10.4.1.1.5) to the value."""
    [item] = server.get(f"{_path(ct)}/metadata").json()
    expected = {f"{int(e.tag):08X}" for e in ct if e.tag.group != 0x0002}
    assert expected <= set(item), expected - set(item)
    uri = item["7FE00010"]["BulkDataURI"]
    [(headers, data)] = _parts(httpx.get(uri, headers=dict(server.headers), timeout=60))
    assert headers["content-type"].startswith("application/octet-stream")
    assert data == ct.PixelData


def test_table_10_4_4_1_metadata_as_xml(server: httpx.Client, ct: pydicom.Dataset) -> None:
    """Table 10.4.4-1: metadata as multipart/related; type="application/dicom+xml"."""
    accept = 'multipart/related; type="application/dicom+xml"'
    [(headers, data)] = _parts(server.get(f"{_path(ct)}/metadata", headers={"Accept": accept}))
    assert headers["content-type"] == "application/dicom+xml"
    assert ET.fromstring(data).tag == "NativeDicomModel"


def test_10_4_1_1_3_frames_native_by_default(server: httpx.Client, ct: pydicom.Dataset) -> None:
    """10.4.1.1.3 and Table 8.7.3-5: frames as application/octet-stream, native."""
    [(headers, data)] = _parts(server.get(f"{_path(ct)}/frames/1"))
    assert headers["content-type"] == f"application/octet-stream; transfer-syntax={EXPLICIT}"
    assert data == ct.PixelData


def test_8_3_5_1_rendered_jpeg_by_default_png_by_accept(
    server: httpx.Client, ct: pydicom.Dataset
) -> None:
    """8.3.5.1 and 10.4.1.1.4: a rendered instance is image/jpeg unless asked for PNG."""
    jpeg = server.get(f"{_path(ct)}/rendered")
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    png = server.get(f"{_path(ct)}/rendered", headers={"Accept": "image/png"})
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_10_6_search_matches_pages_and_warns(server: httpx.Client, ct: pydicom.Dataset) -> None:
    """10.6.1.2 matching, 8.3.4.4 paging (limit, offset, a Warning when more match),
    8.3.4.2 the fuzzy matching Warning, Table 10.6.3-3 the Required attributes."""
    [study] = server.get("/studies", params={"PatientID": ct.PatientID}).json()
    assert study["0020000D"]["Value"] == [ct.StudyInstanceUID]
    assert "00080090" in study and "00100030" in study
    assert server.get("/studies", params={"PatientID": "nobody"}).json() == []
    first = server.get(f"/studies/{ct.StudyInstanceUID}/instances", params={"limit": 1})
    assert len(first.json()) == 1 and first.headers["warning"].startswith("299 ")
    second = server.get(
        f"/studies/{ct.StudyInstanceUID}/instances", params={"limit": 1, "offset": 1}
    )
    assert second.json() != first.json()
    fuzzy = server.get("/studies", params={"fuzzymatching": "true"})
    assert "fuzzymatching parameter is not supported" in fuzzy.headers["warning"]


def test_8_7_5_nothing_acceptable_is_406_and_unknown_resources_404(
    server: httpx.Client, ct: pydicom.Dataset
) -> None:
    """8.7.5 (406 Not Acceptable) and 8.8.3 (404 for a resource that does not exist)."""
    assert server.get(_path(ct), headers={"Accept": "text/html"}).status_code == 406
    assert server.get(f"{_path(ct)}/metadata", headers={"Accept": "image/png"}).status_code == 406
    assert server.get("/studies/1.2.3.4").status_code == 404
    assert server.get(f"/studies/{ct.StudyInstanceUID}/series/1.2.3/metadata").status_code == 404
