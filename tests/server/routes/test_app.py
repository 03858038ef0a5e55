"""The app: health, readiness, request ids, the error mapping, the dev token."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from radserve.dicom_io import MaskError
from radserve.inference import ModelNotFoundError
from radserve.server import ServiceBusyError, StoreError, create_app, status_for

from .conftest import auth, make_settings

pytestmark = pytest.mark.anyio


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_health_endpoints_need_no_token(client: httpx.AsyncClient) -> None:
    alive = await client.get("/healthz")
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ready", "checks": {"store": "ok"}},
    )


async def test_failed_readiness_check_is_503_without_detail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def models_loaded() -> None:
        raise RuntimeError("model file /secret/path missing")

    app = create_app(make_settings(tmp_path), readiness_checks={"models": models_loaded})
    try:
        async with _client(app) as client:
            response = await client.get("/readyz")
    finally:
        app.state.radserve.store.close()
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "checks": {"store": "ok", "models": "failed"}}
    assert "readiness check models failed: RuntimeError" in caplog.text
    assert "/secret/path" not in caplog.text


async def test_request_ids_are_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert len(generated.headers["x-request-id"]) == 32
    assert (
        generated.headers["x-request-id"] != (await client.get("/healthz")).headers["x-request-id"]
    )


async def test_unexpected_errors_are_generic_500s_logged_with_the_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(tmp_path))
    router = APIRouter()

    patient_name = "DOE^JOHN"

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError(f"patient {patient_name} exploded")  # a message quoting data

    @router.get("/store-broken")
    def store_broken() -> None:
        raise StoreError("index query failed (disk I/O error)")

    app.include_router(router)
    try:
        async with _client(app) as client:
            response = await client.get("/boom", headers={"X-Request-ID": "req-1"})
            broken = await client.get("/store-broken", headers={"X-Request-ID": "req-2"})
    finally:
        app.state.radserve.store.close()
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error", "request_id": "req-1"}
    assert response.headers["x-request-id"] == "req-1"
    assert "unexpected RuntimeError [request req-1]" in caplog.text
    assert "DOE^JOHN" not in caplog.text
    assert broken.status_code == 500
    assert broken.json() == {"error": "internal server error", "request_id": "req-2"}
    assert "StoreError: index query failed (disk I/O error) [request req-2]" in caplog.text


async def test_unknown_routes_and_methods(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nothing-here")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    wrong = await client.delete("/dicomweb/studies", headers=auth("both"))
    assert wrong.status_code == 405


def test_status_mapping() -> None:
    assert status_for(ModelNotFoundError("x")) == 404
    assert status_for(MaskError("x")) == 422
    assert status_for(ServiceBusyError("x", retry_after_s=1)) == 503
    assert status_for(StoreError("x")) == 500
    assert status_for(KeyError("x")) == 500


async def test_dev_token_has_every_role_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dev = "development-token-0123456789abcdef"
    with caplog.at_level(logging.WARNING):
        app = create_app(make_settings(tmp_path, tokens=[], dev_token=dev))
    try:
        assert "not for production" in caplog.text
        async with _client(app) as client:
            headers = {"Authorization": f"Bearer {dev}"}
            assert (await client.get("/dicomweb/studies", headers=headers)).status_code == 200
            assert (
                await client.get("/dicomweb/studies", headers=auth("reader"))
            ).status_code == 401
    finally:
        app.state.radserve.store.close()


async def test_access_log_lines_cannot_be_forged_or_carry_path_text(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="radserve")
    forged = "/healthz%0A2026-12-07 11:00:00 ERROR radserve: forged%0D"
    await client.get(forged)
    await client.get("/dicomweb/studies/1.2.3/series/DOE%5EJOHN%20born%201970")
    await client.get("/" + "/".join(["a"] * 40))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("radserve")]
    access = [m for m in lines if " -> " in m]
    assert len(access) == 3
    assert all("\n" not in m and "\r" not in m for m in lines)
    assert not [m for m in lines if "forged" in m or "DOE" in m or "1970" in m]
    assert access[0].startswith("GET /{text} -> 404")
    assert access[1].startswith("GET /dicomweb/studies/{uid}/series/{text} -> ")
    assert access[2].startswith("GET /" + "a/" * 15 + "a/... -> 404")
