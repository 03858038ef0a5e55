"""The jobs, models and metrics endpoints of the whole app (workers not started), and bad
uploads and tokens that must create no job."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from radserve.radiomics import load_parameter_set
from radserve.server import ServerLifecycle, create_app, open_server
from tests.onnx_models import SMALL_SET_FILE

from .conftest import (
    DICOM_MULTIPART,
    STUDY_UID,
    TINY_MODEL,
    ModelPackageCase,
    auth,
    models_dir_with,
    multipart,
    server_settings,
)

pytestmark = pytest.mark.anyio

JSON = "application/json"

Client = httpx.AsyncClient
MakeClient = Callable[..., Awaitable[tuple[Client, ServerLifecycle]]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make_client(tmp_path: Path, tiny_package: ModelPackageCase) -> AsyncIterator[MakeClient]:
    opened: list[tuple[Client, ServerLifecycle]] = []

    async def make(**overrides: Any) -> tuple[Client, ServerLifecycle]:
        settings = server_settings(
            tmp_path,
            models_dir_with(tmp_path, tiny_package),
            destinations=[{"name": "pacs", "url": "http://127.0.0.1:9/dicom-web"}],
            **overrides,
        )
        lifecycle = open_server(settings)
        app = create_app(settings, server=lifecycle)
        transport = httpx.ASGITransport(app=app)  # no lifespan: no workers
        client = Client(transport=transport, base_url="http://testserver")
        opened.append((client, lifecycle))
        return client, lifecycle

    yield make
    for client, lifecycle in opened:
        await client.aclose()
        lifecycle.stop()


async def _stow(client: Client, parts: list[bytes], **headers: str) -> httpx.Response:
    return await client.post(
        "/dicomweb/studies",
        content=multipart(parts),
        headers={**auth("submitter"), "Content-Type": DICOM_MULTIPART, **headers},
    )


async def test_post_jobs_checks_everything_before_queueing(
    make_client: MakeClient, demo_ct_files: list[Path]
) -> None:
    client, _ = await make_client(routing_enabled=False)
    body = {"study_instance_uid": STUDY_UID, "model": TINY_MODEL}

    async def post(payload: dict[str, Any], who: str | None = "submitter") -> httpx.Response:
        return await client.post("/jobs", json=payload, headers=auth(who) if who else {})

    async def status(payload: dict[str, Any], who: str | None = "submitter") -> int:
        return (await post(payload, who)).status_code

    assert await status(body, None) == 401
    wrong = await client.post("/jobs", json=body, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401
    assert await status(body, "reader") == 403
    assert await status({**body, "study_instance_uid": "1.2.abc"}) == 400
    extra = await post({**body, "priority": 1})
    assert extra.json()["error"].startswith("invalid request: body.priority")
    assert await status({**body, "model": "lung"}) == 404
    unknown = await post({**body, "destinations": ["elsewhere"]})
    assert unknown.json() == {"error": "unknown destinations ['elsewhere'] (configured: ['pacs'])"}
    assert await status({**body, "source": "cloud"}) == 400
    not_stored = await post(body)
    assert not_stored.status_code == 404 and "no such study in the store" in not_stored.text

    assert (await _stow(client, [p.read_bytes() for p in demo_ct_files])).status_code == 200
    created = await post({**body, "destinations": []})
    assert created.status_code == 202
    job = created.json()
    assert created.headers["Location"] == f"/jobs/{job['id']}"
    assert (job["state"], job["stage"], job["origin"], job["destinations"]) == (
        "queued",
        "queued",
        "api",
        [],
    )
    assert job["model"] == {"name": TINY_MODEL, "version": "1.0.0"}
    assert (await post(body)).json()["destinations"] == ["pacs"]  # default: every destination

    read = await client.get(f"/jobs/{job['id']}", headers=auth("reader"))
    assert read.json()["id"] == job["id"]
    assert read.json()["radiomics"] is None  # not run yet
    assert (await client.get(f"/jobs/{job['id']}", headers=auth("submitter"))).status_code == 403
    assert (await client.get("/jobs/nope", headers=auth("reader"))).status_code == 404
    listed = await client.get(
        "/jobs", params={"state": "queued", "limit": 1}, headers=auth("reader")
    )
    assert len(listed.json()["jobs"]) == 1
    for params in ({"state": "lost"}, {"limit": 0}, {"offset": 2**63}, {"offset": -1}):
        assert (await client.get("/jobs", params=params, headers=auth("reader"))).status_code == 400


async def test_post_jobs_authenticates_before_reading_the_body_and_bounds_it(
    make_client: MakeClient,
) -> None:
    client, _ = await make_client(routing_enabled=False)
    sent: list[int] = []

    async def huge() -> AsyncIterator[bytes]:  # 400 MiB, if it were all read
        for _ in range(400):
            sent.append(1)
            yield b" " * 1024**2

    anonymous = await client.post("/jobs", content=huge(), headers={"Content-Type": JSON})
    assert anonymous.status_code == 401
    assert len(sent) <= 1, f"{len(sent)} MiB of an unauthenticated body were read"
    sent.clear()
    oversized = await client.post(
        "/jobs", content=huge(), headers={**auth("submitter"), "Content-Type": JSON}
    )
    assert oversized.status_code == 413
    assert len(sent) <= 2, f"{len(sent)} MiB read of a body over the limit"
    declared = await client.post(
        "/jobs",
        content=b"{}",
        headers={**auth("submitter"), "Content-Type": JSON, "Content-Length": str(1024**3)},
    )
    assert declared.status_code == 413
    for body in (b"", b"{", b"[]", b'{"study_instance_uid": 1}', b"\xff\xfe"):
        bad = await client.post("/jobs", content=body, headers=auth("submitter"))
        assert bad.status_code == 400, body
        assert bad.json()["error"].startswith("invalid request")


async def test_a_full_queue_answers_503_with_retry_after(
    make_client: MakeClient, demo_ct_files: list[Path]
) -> None:
    client, _ = await make_client(queue_max_jobs=1, routing_enabled=False)
    files = [p.read_bytes() for p in demo_ct_files]
    assert (await _stow(client, files)).status_code == 200
    body = {"study_instance_uid": STUDY_UID, "model": TINY_MODEL}
    assert (await client.post("/jobs", json=body, headers=auth("submitter"))).status_code == 202
    busy = await client.post("/jobs", json=body, headers=auth("submitter"))
    assert (busy.status_code, busy.headers["Retry-After"]) == (503, "30")
    stow = await _stow(client, files)
    assert (stow.status_code, stow.headers["Retry-After"]) == (503, "30")


async def test_the_queue_limit_holds_under_concurrent_submissions(
    make_client: MakeClient, demo_ct_files: list[Path]
) -> None:
    client, _ = await make_client(queue_max_jobs=3, routing_enabled=False)
    assert (await _stow(client, [p.read_bytes() for p in demo_ct_files])).status_code == 200
    body = {"study_instance_uid": STUDY_UID, "model": TINY_MODEL, "destinations": []}
    answers: list[int] = []

    async def submit() -> None:
        response = await client.post("/jobs", json=body, headers=auth("submitter"))
        answers.append(response.status_code)

    async with anyio.create_task_group() as group:
        for _ in range(12):
            group.start_soon(submit)
    assert sorted(answers) == [202] * 3 + [503] * 9
    listed = (await client.get("/jobs", headers=auth("reader"))).json()["jobs"]
    assert len(listed) == 3


async def test_models_metrics_and_readiness(
    make_client: MakeClient, tiny_package: ModelPackageCase
) -> None:
    client, _ = await make_client()
    [model] = (await client.get("/models", headers=auth("reader"))).json()["models"]
    assert (model["name"], model["version"], model["provider"]) == (
        TINY_MODEL,
        "1.0.0",
        "CPUExecutionProvider",
    )
    assert model["input"]["modalities"] == ["CT"]
    small = load_parameter_set(tiny_package.directory / SMALL_SET_FILE)
    assert model["radiomics"] == {
        "parameter_set": "small",
        "sha256": small.sha256,
        "identifier": small.identifier,
    }
    assert (await client.get("/models", headers=auth("submitter"))).status_code == 403

    for who in ("reader", "operator"):
        metrics = await client.get("/metrics", headers=auth(who))
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'radserve_jobs{state="queued"} 0.0\n' in text
    assert "radserve_queue_depth 0.0\n" in text
    assert 'radserve_exports_pending{destination="pacs"} 0.0\n' in text
    assert (await client.get("/metrics", headers=auth("submitter"))).status_code == 403
    assert (await client.get("/metrics")).status_code == 401

    ready = (await client.get("/readyz")).json()
    assert ready["checks"] == {"store": "ok", "models": "ok", "queue": "ok", "workers": "ok"}


async def test_http_requests_are_counted_by_route_template_and_status(
    make_client: MakeClient,
) -> None:
    client, _ = await make_client(routing_enabled=False)
    await client.get("/healthz")
    await client.get("/jobs/0123abcd", headers=auth("reader"))  # 404: no such job
    await client.get("/jobs", headers=auth("nobody-knows-this-token"))  # 401
    await client.get("/no/such/path/1.2.3")
    text = (await client.get("/metrics", headers=auth("reader"))).text
    counted = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("radserve_http_requests_total{")
    }
    labels = 'radserve_http_requests_total{{method="GET",route="{}",status="{}"}}'
    assert counted[labels.format("/healthz", 200)] == 1
    assert counted[labels.format("/jobs/{job_id}", 404)] == 1
    assert counted[labels.format("/jobs", 401)] == 1
    assert counted[labels.format("unmatched", 404)] == 1
    assert not [key for key in counted if "1.2.3" in key or "0123abcd" in key]
    assert 'radserve_http_request_seconds_count{method="GET",route="/healthz"} 1.0' in text


async def test_bad_uploads_and_tokens_create_no_job(
    make_client: MakeClient, demo_ct_files: list[Path]
) -> None:
    client, lifecycle = await make_client(routing_stable_s=0, max_request_bytes=2 * 1024 * 1024)
    good = demo_ct_files[0].read_bytes()
    assert (await _stow(client, [b"not dicom at all" * 100])).status_code == 400
    assert (await _stow(client, [good[: len(good) // 2]])).status_code == 400
    wrong_type = await client.post(
        "/dicomweb/studies",
        content=good,
        headers={**auth("submitter"), "Content-Type": "application/json"},
    )
    assert wrong_type.status_code == 415
    oversized = await _stow(client, [good] * (2 * 1024 * 1024 // len(good) + 2))
    assert oversized.status_code == 413
    no_token = await client.post(
        "/dicomweb/studies", content=multipart([good]), headers={"Content-Type": DICOM_MULTIPART}
    )
    assert no_token.status_code == 401
    assert (await _stow(client, [good], Authorization="Bearer wrong-token")).status_code == 401
    assert (await _stow(client, [good], **auth("reader"))).status_code == 403
    assert lifecycle.router is not None and lifecycle.router.run_due() == []
    assert (await client.get("/jobs", headers=auth("reader"))).json() == {"jobs": []}


async def test_the_api_description_needs_a_token_and_no_page_fetches_from_outside(
    make_client: MakeClient,
) -> None:
    client, _ = await make_client(routing_enabled=False)
    assert (await client.get("/openapi.json")).status_code == 401
    assert (await client.get("/openapi.json", headers=auth("submitter"))).status_code == 403
    assert (await client.get("/openapi.json", headers=auth("reader"))).status_code == 200
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert (await client.get(page)).status_code == 404, page


async def test_openapi_describes_the_jobs_and_models_bodies(make_client: MakeClient) -> None:
    client, _ = await make_client(routing_enabled=False)
    spec = (await client.get("/openapi.json", headers=auth("reader"))).json()

    def body_schema(path: str, method: str, status: str) -> str:
        content = spec["paths"][path][method]["responses"][status]["content"]
        return str(content["application/json"]["schema"]["$ref"]).rsplit("/", 1)[-1]

    assert body_schema("/jobs", "post", "202") == "JobView"
    request = spec["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert request["schema"]["title"] == "JobRequest"
    assert body_schema("/jobs", "get", "200") == "JobList"
    assert body_schema("/jobs/{job_id}", "get", "200") == "JobView"
    assert body_schema("/models", "get", "200") == "ModelList"
    job = spec["components"]["schemas"]["JobView"]["properties"]
    assert {"id", "state", "stage", "results", "exports", "radiomics"} <= set(job)
    model = spec["components"]["schemas"]["ModelView"]["properties"]
    assert {"name", "version", "provider", "input", "labels"} <= set(model)
