"""WADO-RS against a second, independent client: dicomweb-client on a live uvicorn server."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pydicom
from dicomweb_client import DICOMwebClient
from PIL import Image

from tests.live_server import dicomweb_server

from .conftest import DICOM_MULTIPART, auth, make_settings, multipart


def test_frames_rendered_and_bulkdata_with_dicomweb_client(
    tmp_path: Path, demo_files: list[Path]
) -> None:
    with dicomweb_server(make_settings(tmp_path)) as url:
        stored = httpx.post(
            f"{url}/dicomweb/studies",
            content=multipart([p.read_bytes() for p in demo_files[:3]]),
            headers={**auth("submitter"), "Content-Type": DICOM_MULTIPART},
            timeout=60,
        )
        assert stored.status_code == 200, stored.text
        client = DICOMwebClient(url=f"{url}/dicomweb", headers=auth("reader"))
        ds = pydicom.dcmread(demo_files[1])
        uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        expected = ds.pixel_array.astype("<i2").tobytes()

        [frame] = client.retrieve_instance_frames(*uids, frame_numbers=[1])
        assert frame == expected
        png = client.retrieve_instance_rendered(
            *uids, media_types=("image/png",), params={"window": "40,400"}
        )
        image = np.asarray(Image.open(BytesIO(png)))
        assert image.shape == (ds.Rows, ds.Columns)
        values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        windowed = np.round(np.clip(((values - 39.5) / 399 + 0.5) * 255, 0, 255))
        assert np.array_equal(image, windowed.astype(np.uint8))
        metadata = client.retrieve_instance_metadata(*uids)
        uri = metadata["7FE00010"]["BulkDataURI"]
        # dicomweb-client sends "Host: 127.0.0.1" without the port, and the URI is built
        # from the Host header as HTTP says; so only the path is the server's to check.
        path = urlsplit(uri).path
        assert path == f"{urlsplit(url).path}/dicomweb/studies/{'/series/'.join(uids[:2])}" + (
            f"/instances/{uids[2]}/bulkdata/7FE00010"
        )
        [value] = client.retrieve_bulkdata(url + path)
        assert value == expected
