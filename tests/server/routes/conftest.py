"""Fixtures of the HTTP API tests: settings with one token per role, the app, a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from radserve.server import (
    MultipartParser,
    PartData,
    PartStart,
    ServerSettings,
    create_app,
    hash_token,
    load_settings,
)

ROLES = {
    "submitter": ["submit"],
    "reader": ["read"],
    "both": ["submit", "read"],
    "admin": ["admin"],
}
BOUNDARY = "radserve-test-boundary"
DICOM_MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
MAX_REQUEST_BYTES = 4 * 1024 * 1024


def token_of(name: str) -> str:
    """The (test) bearer token of the token named ``name``."""
    return f"{name}-token-0123456789abcdef0123456789"


def auth(name: str) -> dict[str, str]:
    """The Authorization header of the token named ``name``."""
    return {"Authorization": f"Bearer {token_of(name)}"}


def multipart(
    parts: list[bytes], *, boundary: str = BOUNDARY, part_type: str | None = "application/dicom"
) -> bytes:
    """A multipart/related body of ``parts``."""
    header = f"Content-Type: {part_type}\r\n" if part_type else ""
    body = b"".join(f"--{boundary}\r\n{header}\r\n".encode() + part + b"\r\n" for part in parts)
    return body + f"--{boundary}--\r\n".encode()


def make_settings(tmp_path: Path, **overrides: object) -> ServerSettings:
    models = tmp_path / "models"
    models.mkdir(parents=True, exist_ok=True)
    tokens = [
        {"name": name, "sha256": hash_token(token_of(name)), "roles": roles}
        for name, roles in ROLES.items()
    ]
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "models_dir": models,
        "tokens": tokens,
        "max_request_bytes": MAX_REQUEST_BYTES,
        **overrides,
    }
    return load_settings(**values)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def demo_files(demo_study: Path) -> list[Path]:
    return [*sorted((demo_study / "image").glob("*.dcm")), demo_study / "mask" / "RS.dcm"]


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    return make_settings(tmp_path)


@pytest.fixture
def app(settings: ServerSettings) -> Iterator[FastAPI]:
    app = create_app(settings)
    yield app
    app.state.radserve.store.close()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


DEMO_STUDY_UID = "1.3.6.1.4.1.14519.5.2.1.5168.1900.190311276211389538203367070477"


def dicom_bytes(ds: Any) -> bytes:
    """A pydicom data set as the bytes of a DICOM file."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


async def stow(client: httpx.AsyncClient, files: list[bytes]) -> None:
    """Store DICOM files through STOW-RS (the test fails unless all are stored)."""
    response = await client.post(
        "/dicomweb/studies",
        content=multipart(files),
        headers={**auth("submitter"), "Content-Type": DICOM_MULTIPART},
    )
    assert response.status_code == 200, response.text


def instance_path(ds: Any) -> str:
    """The WADO-RS path of an instance (a data set or header)."""
    return (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def multipart_parts(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart response: their headers (names lower case) and data."""
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/related"), content_type
    parser = MultipartParser(content_type.rsplit("boundary=", 1)[1])
    parts: list[tuple[dict[str, str], bytes]] = []
    for event in parser.feed(response.content):
        if isinstance(event, PartStart):
            parts.append((dict(event.headers), b""))
        elif isinstance(event, PartData):
            parts[-1] = (parts[-1][0], parts[-1][1] + event.data)
    parser.close()
    return parts


@pytest.fixture
async def demo_stored(client: httpx.AsyncClient, demo_files: list[Path]) -> list[Path]:
    """The demo study (CT series and RTSTRUCT) stored; the files."""
    await stow(client, [p.read_bytes() for p in demo_files])
    return demo_files
