"""BulkDataURI in WADO-RS metadata, and the bulk data resources they point at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.encaps import get_frame
from pydicom.uid import JPEGLSLossless, generate_uid

from .conftest import DEMO_STUDY_UID, auth, dicom_bytes, instance_path, multipart_parts, stow

pytestmark = pytest.mark.anyio

READ = auth("reader")
BASE = "http://testserver"


async def _metadata(client: httpx.AsyncClient, ds: pydicom.Dataset) -> dict[str, Any]:
    response = await client.get(f"{instance_path(ds)}/metadata", headers=READ)
    assert response.status_code == 200, response.text
    [item] = response.json()
    return dict(item)


async def test_pixel_data_bulkdata_uri_resolves(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_stored[5])
    item = await _metadata(client, ds)
    uri = item["7FE00010"]["BulkDataURI"]
    assert item["7FE00010"]["vr"] == "OW" and "InlineBinary" not in item["7FE00010"]
    assert uri == f"{BASE}{instance_path(ds)}/bulkdata/7FE00010"
    response = await client.get(uri.removeprefix(BASE), headers=READ)
    assert response.status_code == 200
    [(headers, data)] = multipart_parts(response)
    assert headers["content-type"].startswith("application/octet-stream")
    assert data == ds.PixelData == ds.pixel_array.astype("<i2").tobytes()


async def test_rtstruct_metadata_has_no_pixel_data(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    rtstruct = pydicom.dcmread(demo_stored[-1], stop_before_pixels=True)
    item = await _metadata(client, rtstruct)
    assert "7FE00010" not in item
    missing = await client.get(f"{instance_path(rtstruct)}/bulkdata/7FE00010", headers=READ)
    assert missing.status_code == 404
    for path in ("00100010", "zz", "7FE00010/0", "30060039/99/30060040"):
        response = await client.get(f"{instance_path(rtstruct)}/bulkdata/{path}", headers=READ)
        assert response.status_code == 404, path


async def test_large_binary_values_become_uris_also_in_sequences(
    client: httpx.AsyncClient, demo_files: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_files[3])
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    top, nested = bytes(range(256)) * 300, bytes(reversed(range(256))) * 400
    ds.add_new(0x00091010, "OB", top)  # private, top level
    ds.add_new(0x00091001, "LO", "RADSERVE TEST")
    item = pydicom.Dataset()
    item.add_new(0x00660023, "OB", nested)  # Triangle Point Index List-like binary value
    ds.add_new(0x00089215, "SQ", [item])
    await stow(client, [dicom_bytes(ds)])
    meta = await _metadata(client, ds)
    uri = meta["00091010"]["BulkDataURI"]
    assert uri.endswith("/bulkdata/00091010")
    nested_uri = meta["00089215"]["Value"][0]["00660023"]["BulkDataURI"]
    assert nested_uri.endswith("/bulkdata/00089215/0/00660023")
    for link, value in ((uri, top), (nested_uri, nested)):
        response = await client.get(link.removeprefix(BASE), headers=READ)
        assert response.status_code == 200, response.text
        assert [data for _, data in multipart_parts(response)] == [value]


async def test_encapsulated_pixel_data_bulkdata(
    client: httpx.AsyncClient, demo_files: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_files[7])
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    native = ds.pixel_array.astype("<i2").tobytes()
    ds.compress(JPEGLSLossless)
    await stow(client, [dicom_bytes(ds)])
    uri = (await _metadata(client, ds))["7FE00010"]["BulkDataURI"].removeprefix(BASE)
    any_syntax = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    [(headers, data)] = multipart_parts(
        await client.get(uri, headers={**READ, "Accept": any_syntax})
    )
    assert headers["content-type"].endswith(f"transfer-syntax={JPEGLSLossless}")
    assert data == get_frame(ds.PixelData, 0, number_of_frames=1)
    [(_, decoded)] = multipart_parts(await client.get(uri, headers=READ))
    assert decoded == native


async def test_study_metadata_links_every_image(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    response = await client.get(f"/dicomweb/studies/{DEMO_STUDY_UID}/metadata", headers=READ)
    linked = [i for i in response.json() if "7FE00010" in i]
    assert len(linked) == 48
    assert all(i["7FE00010"]["BulkDataURI"].endswith("/bulkdata/7FE00010") for i in linked)
