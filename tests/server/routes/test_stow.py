"""STOW-RS over the ASGI app: statuses, Failed SOP Sequence reasons, limits, back-pressure."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from radserve.server import (
    CANNOT_UNDERSTAND,
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    DUPLICATE_SOP_INSTANCE,
    OUT_OF_RESOURCES,
    create_app,
)

from .conftest import BOUNDARY, DICOM_MULTIPART, MAX_REQUEST_BYTES, auth, make_settings, multipart

pytestmark = pytest.mark.anyio

STUDY_UID = "1.3.6.1.4.1.14519.5.2.1.5168.1900.190311276211389538203367070477"


async def _stow(
    client: httpx.AsyncClient,
    body: bytes | AsyncIterator[bytes],
    *,
    path: str = "/dicomweb/studies",
    token: str = "submitter",
    content_type: str = DICOM_MULTIPART,
) -> httpx.Response:
    headers = {**auth(token), "Content-Type": content_type}
    return await client.post(path, content=body, headers=headers)


def _items(response: httpx.Response, tag: str) -> list[dict[str, Any]]:
    return list(response.json().get(tag, {}).get("Value", []))


def _value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value", [None])
    return values[0]


def _changed(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    ds.InstanceNumber = 4242
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


async def test_demo_study_is_stored_and_acknowledged(
    client: httpx.AsyncClient, demo_files: list[Path]
) -> None:
    response = await _stow(client, multipart([p.read_bytes() for p in demo_files]))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    assert _value(response.json(), "00081190") == f"http://testserver/dicomweb/studies/{STUDY_UID}"
    referenced = _items(response, "00081199")
    assert len(referenced) == 49
    sops = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in demo_files}
    assert {_value(item, "00081155") for item in referenced} == sops
    assert all(
        _value(item, "00081190").startswith(f"http://testserver/dicomweb/studies/{STUDY_UID}/")
        for item in referenced
    )
    assert "00081198" not in response.json()


async def test_duplicates_same_bytes_succeed_changed_bytes_conflict(
    client: httpx.AsyncClient, demo_files: list[Path], app: Any
) -> None:
    first = await _stow(client, multipart([demo_files[0].read_bytes()]))
    assert first.status_code == 200
    again = await _stow(client, multipart([demo_files[0].read_bytes()]))
    assert again.status_code == 200
    assert len(app.state.radserve.store.get_instances(STUDY_UID)) == 1
    conflict = await _stow(client, multipart([_changed(demo_files[0])]))
    assert conflict.status_code == 409
    [failed] = _items(conflict, "00081198")
    assert _value(failed, "00081197") == DUPLICATE_SOP_INSTANCE
    assert _value(failed, "00081155") == pydicom.dcmread(demo_files[0]).SOPInstanceUID
    assert "different content" in conflict.headers["warning"]
    mixed = await _stow(client, multipart([_changed(demo_files[0]), demo_files[1].read_bytes()]))
    assert mixed.status_code == 202
    assert len(_items(mixed, "00081199")) == 1 and len(_items(mixed, "00081198")) == 1


async def test_garbage_and_truncated_parts_fail_with_cannot_understand(
    client: httpx.AsyncClient, demo_files: list[Path]
) -> None:
    data = demo_files[0].read_bytes()
    parts = [b"garbage " * 50, data[: len(data) // 2], demo_files[1].read_bytes()]
    response = await _stow(client, multipart(parts))
    assert response.status_code == 202
    reasons = [_value(item, "00081197") for item in _items(response, "00081198")]
    assert reasons == [CANNOT_UNDERSTAND, CANNOT_UNDERSTAND]
    assert len(_items(response, "00081199")) == 1
    only_bad = await _stow(client, multipart(parts[:2]))
    assert only_bad.status_code == 400
    assert "truncated" in only_bad.headers["warning"]
    assert ".part" not in only_bad.headers["warning"]  # no staging file names
    assert len(only_bad.headers["warning"]) < 600 and len(only_bad.text) < 2000


async def test_a_file_meta_element_of_unknown_vr_fails_its_part(
    client: httpx.AsyncClient, demo_files: list[Path]
) -> None:
    """Found by the fuzzer: a truncated file whose Media Storage SOP Class UID has the VR
    ``U\\0`` (pydicom's unknown-VR exception reading it was once a 500)."""
    data = demo_files[0].read_bytes()
    meta_class = b"\x02\x00\x02\x00UI"
    assert data.count(meta_class) == 1
    hostile = data.replace(meta_class, meta_class[:5] + b"\x00")[:400]
    response = await _stow(client, multipart([hostile]))
    assert response.status_code == 400
    [failed] = _items(response, "00081198")
    assert _value(failed, "00081197") == CANNOT_UNDERSTAND


@pytest.mark.parametrize("vr", [b"ZZ", b"\x00\x01"])
async def test_an_element_of_unknown_vr_fails_its_part_only(
    client: httpx.AsyncClient, demo_files: list[Path], app: Any, vr: bytes
) -> None:
    ds = pydicom.dcmread(demo_files[0])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    accession = b"\x08\x00\x50\x00SH"  # Accession Number, explicit VR
    assert data.count(accession) == 1
    hostile = data.replace(accession, accession[:4] + vr)
    response = await _stow(client, multipart([hostile, demo_files[1].read_bytes()]))
    assert response.status_code == 202
    [failed] = _items(response, "00081198")
    assert _value(failed, "00081197") == CANNOT_UNDERSTAND
    assert len(_items(response, "00081199")) == 1
    assert len(app.state.radserve.store.get_instances(STUDY_UID)) == 1
    assert not list((app.state.radserve.store.data_dir / "tmp").iterdir())


async def test_a_zip_part_is_refused_not_stored(
    client: httpx.AsyncClient, demo_files: list[Path], app: Any
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("IM1.dcm", demo_files[0].read_bytes())
    response = await _stow(client, multipart([buffer.getvalue(), demo_files[1].read_bytes()]))
    assert response.status_code == 202
    [failed] = _items(response, "00081198")
    assert _value(failed, "00081197") == CANNOT_UNDERSTAND
    assert "not a DICOM file" in response.headers["warning"]
    assert len(app.state.radserve.store.get_instances(STUDY_UID)) == 1


async def test_a_transfer_syntax_that_does_not_match_the_pixel_encoding_is_refused(
    client: httpx.AsyncClient, demo_files: list[Path]
) -> None:
    ds = pydicom.dcmread(demo_files[0])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    explicit = f"{ExplicitVRLittleEndian}\0".encode()
    assert buffer.getvalue().count(explicit) == 1
    # RLE Lossless declared (same length in the file meta), the pixels left native.
    lying = buffer.getvalue().replace(explicit, f"{RLELossless}\0".encode())
    response = await _stow(client, multipart([lying]))
    assert response.status_code == 409
    [failed] = _items(response, "00081198")
    assert _value(failed, "00081197") == DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    assert "Pixel Data is native" in response.headers["warning"]


async def test_part_of_another_type_fails(client: httpx.AsyncClient) -> None:
    response = await _stow(client, multipart([b"{}"], part_type="application/dicom+json"))
    assert response.status_code == 400
    assert "not application/dicom" in response.headers["warning"]


async def test_study_in_the_path_must_match(
    client: httpx.AsyncClient, demo_files: list[Path]
) -> None:
    path = "/dicomweb/studies/1.2.3.4"
    response = await _stow(client, multipart([demo_files[0].read_bytes()]), path=path)
    assert response.status_code == 409
    [failed] = _items(response, "00081198")
    assert _value(failed, "00081197") == DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    assert _value(response.json(), "00081190").endswith("/studies/1.2.3.4")
    good = await _stow(
        client, multipart([demo_files[0].read_bytes()]), path=f"/dicomweb/studies/{STUDY_UID}"
    )
    assert good.status_code == 200


@pytest.mark.parametrize(
    ("content_type", "status", "message"),
    [
        ("application/dicom", 415, "not application/dicom"),
        ('multipart/related; type="application/dicom+xml"; boundary=x', 415, "dicom+xml"),
        ('multipart/related; type="application/dicom"', 400, "no boundary"),
        ("multipart/related; boundary=other-boundary", 400, "no multipart delimiter"),
        ("not a type", 400, "malformed media type"),
    ],
)
async def test_content_type_problems(
    client: httpx.AsyncClient, demo_files: list[Path], content_type: str, status: int, message: str
) -> None:
    body = multipart([demo_files[0].read_bytes()])
    response = await _stow(client, body, content_type=content_type)
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_malformed_bodies(
    client: httpx.AsyncClient, demo_files: list[Path], app: Any
) -> None:
    complete = multipart([demo_files[0].read_bytes()])
    truncated = await _stow(client, complete[: len(complete) // 2])
    assert truncated.status_code == 400
    assert "closing multipart delimiter" in truncated.json()["error"]
    empty = await _stow(client, f"--{BOUNDARY}--\r\n".encode())
    assert empty.status_code == 400
    assert empty.json() == {"error": "the request holds no parts"}
    assert list((app.state.radserve.store.data_dir / "tmp").iterdir()) == []


async def test_oversized_requests_are_refused(
    client: httpx.AsyncClient, demo_files: list[Path], app: Any
) -> None:
    parts = [p.read_bytes() for p in demo_files] * 2  # ~5 MB, over the 4 MiB limit
    body = multipart(parts)
    assert len(body) > MAX_REQUEST_BYTES
    declared = await _stow(client, body)
    assert declared.status_code == 413

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    streamed = await _stow(client, chunked())
    assert streamed.status_code == 413
    assert "larger than the limit" in streamed.json()["error"]
    store = app.state.radserve.store
    assert list((store.data_dir / "tmp").iterdir()) == []
    assert list((store.data_dir / "instances").rglob("*.dcm")) == []


async def test_chunked_request_within_the_limit_is_stored(
    client: httpx.AsyncClient, demo_files: list[Path]
) -> None:
    body = multipart([p.read_bytes() for p in demo_files[:20]])

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 10000):
            yield body[start : start + 10000]

    response = await _stow(client, chunked())
    assert response.status_code == 200
    assert len(_items(response, "00081199")) == 20


async def test_tokens_and_roles(client: httpx.AsyncClient, demo_files: list[Path]) -> None:
    body = multipart([demo_files[0].read_bytes()])
    missing = await client.post("/dicomweb/studies", content=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="radserve"'
    wrong = await client.post(
        "/dicomweb/studies", content=body, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert wrong.json() == {"error": "invalid token"}
    reader = await _stow(client, body, token="reader")
    assert reader.status_code == 403
    assert reader.json() == {"error": "this token lacks the 'submit' role"}
    assert (await _stow(client, body, token="admin")).status_code == 403  # roles are not nested
    assert (await _stow(client, body, token="both")).status_code == 200


async def test_retrieve_urls_come_from_the_public_url_not_the_host_header(
    tmp_path: Path, demo_files: list[Path]
) -> None:
    public = "https://radserve.hospital.example/ai"
    app = create_app(make_settings(tmp_path, public_url=public))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            headers = {"Host": "attacker.example"}
            stored = await client.post(
                "/dicomweb/studies",
                content=multipart([demo_files[0].read_bytes()]),
                headers={**auth("submitter"), "Content-Type": DICOM_MULTIPART, **headers},
            )
            metadata = await client.get(
                f"/dicomweb/studies/{STUDY_UID}/metadata", headers={**auth("reader"), **headers}
            )
        assert stored.status_code == 200
        assert _value(stored.json(), "00081190") == f"{public}/dicomweb/studies/{STUDY_UID}"
        [item] = metadata.json()
        uri = item["7FE00010"]["BulkDataURI"]
        assert uri.startswith(f"{public}/dicomweb/studies/{STUDY_UID}/series/")
        assert "attacker" not in stored.text + metadata.text
    finally:
        app.state.radserve.store.close()


async def test_backpressure_answers_503_before_reading(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), backpressure=lambda: 2.5)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await _stow(client, multipart([b"x"]))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
    finally:
        app.state.radserve.store.close()


async def test_instances_per_study_limit_is_out_of_resources(
    tmp_path: Path, demo_files: list[Path]
) -> None:
    app = create_app(make_settings(tmp_path, max_instances_per_study=2))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await _stow(client, multipart([p.read_bytes() for p in demo_files[:3]]))
        assert response.status_code == 202
        [failed] = _items(response, "00081198")
        assert _value(failed, "00081197") == OUT_OF_RESOURCES
    finally:
        app.state.radserve.store.close()


async def test_a_failing_store_is_a_500_not_a_conflict(
    client: httpx.AsyncClient, demo_files: list[Path], app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app.state.radserve.store._index.close()  # the index becomes unusable
    response = await _stow(client, multipart([demo_files[0].read_bytes()]))
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal server error",
        "request_id": response.headers["x-request-id"],
    }
    assert "StoreError: instances cannot be stored (ProgrammingError)" in caplog.text
