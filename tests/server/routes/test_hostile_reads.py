"""Hostile requests of an authenticated reader (or sender), found by fuzzing the API: memory
stays bounded however many parts a retrieve asks for, a rendering cannot be made huge,
numbers are ASCII digits everywhere, and a STOW-RS path names a UID."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import httpx
import pydicom
import pytest

from radserve.dicom_io import MAX_VIEWPORT
from radserve.server import create_app
from tests.live_server import serving

from .conftest import DICOM_MULTIPART, auth, instance_path, make_settings, multipart, stow

pytestmark = pytest.mark.anyio

READ = auth("reader")


def test_a_frame_list_naming_a_frame_thousands_of_times_is_streamed(
    tmp_path: Path, demo_files: list[Path]
) -> None:
    """Before: every part was built before the first byte was sent (2.6 times the answer's
    size in memory, unbounded with the frame list's length)."""
    first = demo_files[0]
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    frame_bytes = ds.Rows * ds.Columns * 2
    repeats = 2000
    app = create_app(make_settings(tmp_path))
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=120) as client:
            stored = client.post(
                "/dicomweb/studies",
                content=multipart([first.read_bytes()]),
                headers={**auth("submitter"), "Content-Type": DICOM_MULTIPART},
            )
            assert stored.status_code == 200
            path = f"{instance_path(ds)}/frames/" + ",".join(["1"] * repeats)
            tracemalloc.start()
            received = 0
            try:
                with client.stream("GET", path, headers=READ) as response:
                    assert response.status_code == 200
                    for chunk in response.iter_bytes():
                        received += len(chunk)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    finally:
        app.state.radserve.store.close()
    assert received > repeats * frame_bytes
    assert peak < received / 10, f"peak {peak / 1e6:.0f} MB for {received / 1e6:.0f} MB sent"


async def test_a_viewport_beyond_the_maximum_is_refused(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    """Before: ``viewport=60000,60000`` upscaled a CT slice into a 3.6 GB image."""
    ds = pydicom.dcmread(demo_stored[0], stop_before_pixels=True)
    rendered = f"{instance_path(ds)}/rendered"
    for viewport in (f"{MAX_VIEWPORT + 1},100", f"100,{MAX_VIEWPORT + 1}", "60000,60000"):
        response = await client.get(rendered, params={"viewport": viewport}, headers=READ)
        assert response.status_code == 400, viewport
        assert str(MAX_VIEWPORT) in response.json()["error"]
    largest = await client.get(rendered, params={"viewport": "512,512"}, headers=READ)
    assert largest.status_code == 200


@pytest.mark.parametrize(
    ("resource", "params"),
    [
        ("/dicomweb/studies", {"limit": "\u0665"}),  # ARABIC-INDIC DIGIT FIVE
        ("/dicomweb/studies", {"offset": "+1"}),
        ("/dicomweb/studies", {"limit": " 5"}),
        ("/dicomweb/studies", {"StudyDate": "\u0662\u0660\u0662\u0660\u0660\u0661\u0660\u0661"}),
        ("/dicomweb/series", {"SeriesNumber": "1_0"}),
        ("/dicomweb/instances", {"InstanceNumber": "\u0661"}),
        ("/dicomweb/instances", {"InstanceNumber": " 1"}),
    ],
)
async def test_query_numbers_are_ascii_digits(
    client: httpx.AsyncClient, demo_stored: list[Path], resource: str, params: dict[str, str]
) -> None:
    """Before: Python's int() and ``\\d`` took other scripts' digits, signs, blanks and
    underscores, beyond what the API description (and PS3.18) says."""
    response = await client.get(resource, params=params, headers=READ)
    assert response.status_code == 400, response.text


async def test_rendering_and_frame_numbers_are_ascii_digits(
    client: httpx.AsyncClient, demo_stored: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_stored[0], stop_before_pixels=True)
    path = instance_path(ds)
    for url, params in (
        (f"{path}/frames/\u0661", {}),
        (f"{path}/frames/1,+1", {}),
        (f"{path}/rendered", {"quality": "\u0665\u0660"}),
        (f"{path}/rendered", {"viewport": "\u0661\u0660,10"}),
    ):
        response = await client.get(url, params=params, headers=READ)
        assert response.status_code == 400, (url, params)
    assert (await client.get(f"{path}/frames/1", headers=READ)).status_code == 200


async def test_a_stow_path_names_a_uid_before_the_body_is_read(
    client: httpx.AsyncClient, demo_files: list[Path]
) -> None:
    """Before: ``/studies/u%17`` was taken, and its control character written into the
    answer's Retrieve URL."""
    body = multipart([demo_files[0].read_bytes()])
    headers = {"Content-Type": DICOM_MULTIPART}
    for study in ("u%17", "1.2.abc", "1" * 65, "1..2"):
        unauthenticated = await client.post(
            f"/dicomweb/studies/{study}", content=body, headers=headers
        )
        assert unauthenticated.status_code == 401, study
        response = await client.post(
            f"/dicomweb/studies/{study}", content=body, headers={**headers, **auth("submitter")}
        )
        assert response.status_code == 400, study
    await stow(client, [demo_files[0].read_bytes()])
