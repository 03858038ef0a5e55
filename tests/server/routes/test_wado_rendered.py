"""WADO-RS rendered resources and thumbnails (PS3.18 10.4.1.1.4-5) over the ASGI app."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from .conftest import DEMO_STUDY_UID, auth, instance_path

pytestmark = pytest.mark.anyio

READ = auth("reader")


def _linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    out = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.round(np.clip(out, 0, 255)).astype(np.uint8)


async def _image(client: httpx.AsyncClient, url: str, **headers: str) -> Image.Image:
    response = await client.get(url, headers={**READ, **headers})
    assert response.status_code == 200, response.text
    image = Image.open(BytesIO(response.content))
    assert response.headers["content-type"] == f"image/{image.format.lower()}"
    return image


async def test_png_is_the_windowed_frame(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_stored[20])
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    url = f"{instance_path(ds)}/rendered?window=40,400"
    png = await _image(client, url, Accept="image/png")
    assert png.format == "PNG" and png.size == (ds.Columns, ds.Rows)
    assert np.array_equal(np.asarray(png), _linear(values, 40, 400))
    frame = await _image(client, f"{instance_path(ds)}/frames/1/rendered?window=40,400",
                         Accept="image/png")  # fmt: skip
    assert np.array_equal(np.asarray(frame), np.asarray(png))
    # No window stored in the demo CT: its minimum to maximum.
    full = np.asarray(await _image(client, f"{instance_path(ds)}/rendered", Accept="image/png"))
    assert full.min() == 0 and full.max() == 255
    jpeg = await _image(client, f"{instance_path(ds)}/rendered?window=40,400")
    assert jpeg.format == "JPEG" and jpeg.size == (ds.Columns, ds.Rows)
    error = np.abs(np.asarray(jpeg, dtype=float) - _linear(values, 40, 400))
    assert error.mean() < 3


async def test_viewport_quality_and_errors(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_stored[20], stop_before_pixels=True)
    url = f"{instance_path(ds)}/rendered"
    small = await _image(client, f"{url}?viewport=64,64")
    assert small.size == (64, round(143 * 64 / 161))
    low = await client.get(f"{url}?quality=5", headers=READ)
    high = await client.get(f"{url}?quality=95", headers=READ)
    assert len(low.content) < len(high.content)
    for query in ("window=40", "window=a,b", "window=40,400,cubic", "viewport=0,5", "quality=0"):
        assert (await client.get(f"{url}?{query}", headers=READ)).status_code == 400, query
    refused = await client.get(url, headers={**READ, "Accept": "application/pdf"})
    assert refused.status_code == 406 and "image/jpeg" in refused.json()["error"]


async def test_thumbnails(client: httpx.AsyncClient, demo_stored: list[Path]) -> None:
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in demo_stored[:-1]]
    middle = sorted(headers, key=lambda h: int(h.InstanceNumber))[(len(headers) - 1) // 2]
    series = f"/dicomweb/studies/{DEMO_STUDY_UID}/series/{middle.SeriesInstanceUID}"
    thumb = await client.get(f"{series}/thumbnail", headers={**READ, "Accept": "image/png"})
    own = await client.get(
        f"{instance_path(middle)}/thumbnail", headers={**READ, "Accept": "image/png"}
    )
    assert thumb.content == own.content
    image = Image.open(BytesIO(thumb.content))
    assert max(image.size) == 128
    study = await _image(client, f"/dicomweb/studies/{DEMO_STUDY_UID}/thumbnail?viewport=50,50")
    assert study.format == "JPEG" and max(study.size) == 50
    rtstruct = pydicom.dcmread(demo_stored[-1], stop_before_pixels=True)
    missing = await client.get(f"{instance_path(rtstruct)}/thumbnail", headers=READ)
    assert missing.status_code == 404
