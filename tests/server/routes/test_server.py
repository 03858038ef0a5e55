"""A real server on a loopback socket, used by dicomweb-client and raw httpx.

The demo study goes in over STOW-RS as its original files (a chunked raw httpx request) and,
re-encoded with new UIDs, through dicomweb-client; it comes back over QIDO-RS and WADO-RS
through dicomweb-client with the same bytes, UIDs and pixel data. No log record of the whole
exchange holds the demo patient's name or ID.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.uid import generate_uid

from tests.live_server import dicomweb_server

from .conftest import DICOM_MULTIPART, auth, make_settings, multipart

STUDY_UID = "1.3.6.1.4.1.14519.5.2.1.5168.1900.190311276211389538203367070477"
PATIENT = "STS_002"  # the demo study's Patient's Name and Patient ID


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    with dicomweb_server(make_settings(tmp_path, max_request_bytes=64 * 1024 * 1024)) as url:
        yield url


def test_round_trip_over_a_real_socket(
    server_url: str, demo_files: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = multipart([p.read_bytes() for p in demo_files])

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    headers = {**auth("both"), "Content-Type": DICOM_MULTIPART}
    with httpx.Client(timeout=60) as http:
        stored = http.post(f"{server_url}/dicomweb/studies", content=chunks(), headers=headers)
        assert stored.status_code == 200, stored.text
        assert len(stored.json()["00081199"]["Value"]) == 49
        again = http.post(
            f"{server_url}/dicomweb/studies/{STUDY_UID}",
            content=multipart([demo_files[-1].read_bytes()]),
            headers=headers,
        )
        assert again.status_code == 200
        assert http.get(f"{server_url}/healthz").status_code == 200
        bad = http.post(
            f"{server_url}/dicomweb/studies",
            content=body,
            headers={"Content-Type": DICOM_MULTIPART, "Authorization": "Bearer wrong"},
        )
        assert bad.status_code == 401

    client = DICOMwebClient(url=f"{server_url}/dicomweb", headers=auth("both"))
    [study] = client.search_for_studies(search_filters={"PatientID": PATIENT})
    assert study["0020000D"]["Value"] == [STUDY_UID]
    series = client.search_for_series(STUDY_UID, search_filters={"Modality": "CT"})
    series_uid = series[0]["0020000E"]["Value"][0]
    assert len(client.search_for_instances(STUDY_UID, series_uid)) == 48

    originals = {}
    for path in demo_files:
        ds = pydicom.dcmread(path)
        originals[ds.SOPInstanceUID] = ds
    retrieved = client.retrieve_study(STUDY_UID)
    assert len(retrieved) == 49
    for ds in retrieved:
        original = originals[ds.SOPInstanceUID]
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPClassUID) == (
            original.StudyInstanceUID,
            original.SeriesInstanceUID,
            original.SOPClassUID,
        )
        if "PixelData" in original:
            assert np.array_equal(ds.pixel_array, original.pixel_array)
    metadata = client.retrieve_series_metadata(STUDY_UID, series_uid)
    assert len(metadata) == 48  # Pixel Data by reference only (a BulkDataURI)
    assert all(set(m["7FE00010"]) == {"vr", "BulkDataURI"} for m in metadata)

    # dicomweb-client's own STOW-RS: the study again as a new study (new UIDs).
    copies = []
    new_study, new_series = generate_uid(), {}
    for path in demo_files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = new_study
        ds.SeriesInstanceUID = new_series.setdefault(ds.SeriesInstanceUID, generate_uid())
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        copies.append(ds)
    response = client.store_instances(copies)
    assert len(response.ReferencedSOPSequence) == 49
    assert "FailedSOPSequence" not in response
    assert len(client.search_for_studies()) == 2
    copy = client.retrieve_instance(
        new_study, copies[5].SeriesInstanceUID, copies[5].SOPInstanceUID
    )
    assert np.array_equal(copy.pixel_array, copies[5].pixel_array)

    # Records of the server side (the clients log in this process too, with their URLs).
    server_side = ("radserve", "uvicorn", "fastapi", "starlette", "pydicom", "anyio")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith(server_side)]
    assert any("POST /dicomweb/studies -> 200" in m for m in messages)
    assert any("GET /dicomweb/studies/{uid}/series -> 200" in m for m in messages)
    assert not [m for m in messages if PATIENT in m]
    assert not [r for r in caplog.records if r.name == "uvicorn.access"]
