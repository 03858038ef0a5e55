"""Fixtures of the HTTP API tests: settings with one token per role, the app, a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from radserve.server import ServerSettings, create_app, hash_token, load_settings

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
