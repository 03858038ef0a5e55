"""STOW-RS of DICOM JSON metadata with bulk data parts (PS3.18 10.5.1.2.2,
``multipart/related; type="application/dicom+json"``): stored as the binary instances
would be, one failure per instance, nothing left in the staging folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import JPEGLSLossless, generate_uid

from .conftest import auth

pytestmark = pytest.mark.anyio

BOUNDARY = "radserve-json-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}'
READ, SUBMIT = auth("reader"), auth("submitter")


def _body(metadata: list[dict[str, Any]], parts: dict[str, tuple[str, bytes]]) -> bytes:
    """The request: the metadata part, then each bulk part (Content-Location: its URI)."""
    chunks = [
        f"--{BOUNDARY}\r\nContent-Type: application/dicom+json\r\n\r\n".encode()
        + json.dumps(metadata).encode()
        + b"\r\n"
    ]
    for uri, (content_type, data) in parts.items():
        head = f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\nContent-Location: {uri}\r\n\r\n"
        chunks.append(head.encode() + data + b"\r\n")
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


def _as_json(ds: pydicom.Dataset, uri: str) -> dict[str, Any]:
    """``ds`` as DICOM JSON, its Pixel Data by reference to ``uri``."""
    item = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda e: uri)
    item["7FE00010"] = {"vr": "OW", "BulkDataURI": uri}
    return item


def _renamed(path: Path) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


async def test_native_instances_from_metadata_and_bulk_data(
    client: httpx.AsyncClient, demo_files: list[Path], app: Any
) -> None:
    sources = [_renamed(p) for p in demo_files[:3]]
    metadata, parts = [], {}
    for k, ds in enumerate(sources):
        uri = f"http://sender.example/bulk/{k}"
        metadata.append(_as_json(ds, uri))
        parts[uri] = ("application/octet-stream", ds.PixelData)
    response = await client.post(
        "/dicomweb/studies",
        content=_body(metadata, parts),
        headers={**SUBMIT, "Content-Type": CONTENT_TYPE},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["00081199"]["Value"]) == 3
    for ds in sources:
        [stored] = app.state.radserve.store.get_instances(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        )
        back = pydicom.dcmread(stored.path)
        np.testing.assert_array_equal(back.pixel_array, ds.pixel_array)
        assert (
            back.PatientID == ds.PatientID and back.ImagePositionPatient == ds.ImagePositionPatient
        )
    assert not list((app.state.radserve.store.data_dir / "tmp").iterdir())


async def test_compressed_pixel_data_names_its_syntax_in_the_part(
    client: httpx.AsyncClient, demo_files: list[Path], app: Any
) -> None:
    ds = _renamed(demo_files[0])
    original = ds.pixel_array.copy()
    ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    [frame] = list(generate_frames(ds.PixelData, number_of_frames=1))
    uri = "bulk/frame-1"
    item = _as_json(ds, uri)
    body = _body([item], {uri: (f"image/jls; transfer-syntax={JPEGLSLossless}", frame)})
    response = await client.post(
        "/dicomweb/studies", content=body, headers={**SUBMIT, "Content-Type": CONTENT_TYPE}
    )
    assert response.status_code == 200, response.text
    [stored] = app.state.radserve.store.get_instances(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    back = pydicom.dcmread(stored.path)
    assert back.file_meta.TransferSyntaxUID == JPEGLSLossless
    np.testing.assert_array_equal(back.pixel_array, original)


async def test_an_instance_whose_bulk_data_is_missing_fails_alone(
    client: httpx.AsyncClient, demo_files: list[Path], app: Any
) -> None:
    good, bad = _renamed(demo_files[0]), _renamed(demo_files[1])
    metadata = [_as_json(good, "bulk/good"), _as_json(bad, "bulk/missing")]
    body = _body(metadata, {"bulk/good": ("application/octet-stream", good.PixelData)})
    response = await client.post(
        "/dicomweb/studies", content=body, headers={**SUBMIT, "Content-Type": CONTENT_TYPE}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert len(answer["00081199"]["Value"]) == 1
    [failed] = answer["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [bad.SOPInstanceUID]
    assert "names no part" in response.headers["warning"]
    assert not list((app.state.radserve.store.data_dir / "tmp").iterdir())


JSON_PART = f"--{BOUNDARY}\r\nContent-Type: application/dicom+json\r\n\r\n"
BULK_PART = f"--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\nxx\r\n"
END = f"--{BOUNDARY}--\r\n"


@pytest.mark.parametrize(
    "body",
    [
        JSON_PART + "{not json\r\n" + END,  # not JSON
        JSON_PART + "{}\r\n" + END,  # not an array
        BULK_PART + END,  # no metadata first
        JSON_PART + "[]\r\n" + BULK_PART + END,  # a bulk part without Content-Location
    ],
)
async def test_malformed_requests_are_400_and_store_nothing(
    client: httpx.AsyncClient, app: Any, body: str
) -> None:
    response = await client.post(
        "/dicomweb/studies", content=body.encode(), headers={**SUBMIT, "Content-Type": CONTENT_TYPE}
    )
    assert response.status_code == 400, response.text
    assert not list((app.state.radserve.store.data_dir / "tmp").iterdir())
