"""A job's radiomic features: the registry's parameter sets, ``GET /jobs/{id}`` and
``GET /jobs/{id}/features`` (JSON and CSV) on the whole app, run by its own worker."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from radserve.dicom_io import read_image_series, read_sr_measurements
from radserve.inference import CPU, RuntimeSettings
from radserve.radiomics import RadiomicsOptions, load_parameter_set
from radserve.server import (
    ModelRegistry,
    ModelRegistryError,
    ServerLifecycle,
    create_app,
    open_server,
)
from tests.radiomics_sets import bone_package

from .conftest import STUDY_UID, auth, server_settings

CPU_ONLY = RuntimeSettings(providers=(CPU,), intra_op_threads=1)
MODEL = "bone-radiomics"
Client = httpx.AsyncClient
Serve = Callable[[], Awaitable[tuple[Client, ServerLifecycle]]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_manifest_naming_an_unknown_parameter_set_refuses_to_load(tmp_path: Path) -> None:
    bone_package(tmp_path, radiomics_parameter_set="nope")
    with pytest.raises(
        ModelRegistryError,
        match=r"models/bone-radiomics/1\.0\.0 cannot be loaded: radiomics_parameter_set "
        r"'nope': unknown parameter set 'nope'; known: \[.*'default'.*\]",
    ):
        ModelRegistry(tmp_path / "models", runtime=CPU_ONLY)
    # Without radiomics the set is not needed.
    registry = ModelRegistry(
        tmp_path / "models", runtime=CPU_ONLY, radiomics=RadiomicsOptions(enabled=False)
    )
    assert registry.get(MODEL).radiomics is None


def test_an_invalid_parameter_set_refuses_to_load(tmp_path: Path) -> None:
    directory = bone_package(tmp_path, radiomics_parameter_set="broken.yaml")
    (directory / "broken.yaml").write_text("imageType:\n  Blur: {}\n", encoding="utf-8")
    with pytest.raises(
        ModelRegistryError, match=r"radiomics_parameter_set 'broken\.yaml': parameter set broken"
    ):
        ModelRegistry(tmp_path / "models", runtime=CPU_ONLY)


def test_each_model_gets_its_parameter_set_and_the_shared_pool(tmp_path: Path) -> None:
    directory = bone_package(tmp_path)
    bone_package(tmp_path, name="bone-default", radiomics_parameter_set="default")
    bone_package(tmp_path, name="bone-plain", radiomics_parameter_set=None)
    registry = ModelRegistry(
        tmp_path / "models", runtime=CPU_ONLY, radiomics=RadiomicsOptions(workers=2)
    )
    try:
        small, default = registry.get(MODEL).radiomics, registry.get("bone-default").radiomics
        assert small is not None and default is not None
        assert small.parameter_set == load_parameter_set(directory / "small.yaml")
        assert default.parameter_set == load_parameter_set("default")
        assert small.pool is default.pool and small.pool is not None
        assert small.pool.workers == 2
        assert registry.get("bone-plain").radiomics is None
    finally:
        registry.close()


@pytest.fixture
async def serve(
    tmp_path: Path, demo_study: Path, demo_ct_files: list[Path]
) -> AsyncIterator[Serve]:
    """The whole app (no lifespan: its worker runs jobs only when the test says so) over a
    models folder with the small-set package, the demo CT in its store."""
    spacing_mm = read_image_series(demo_study / "image").volume.spacing_mm
    bone_package(tmp_path, spacing_mm=spacing_mm)
    opened: list[tuple[Client, ServerLifecycle]] = []

    async def start() -> tuple[Client, ServerLifecycle]:
        settings = server_settings(
            tmp_path, tmp_path / "models", routing_enabled=False, radiomics_workers=0
        )
        lifecycle = open_server(settings)
        app = create_app(settings, server=lifecycle)
        if not opened:
            for path in demo_ct_files:
                lifecycle.store.store(path)
        client = Client(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        opened.append((client, lifecycle))
        return client, lifecycle

    yield start
    for client, lifecycle in opened:
        await client.aclose()
        lifecycle.stop()


async def _done_job(client: Client, lifecycle: ServerLifecycle) -> dict[str, Any]:
    body = {"study_instance_uid": STUDY_UID, "model": MODEL, "destinations": []}
    created = await client.post("/jobs", json=body, headers=auth("submitter"))
    assert created.status_code == 202, created.text
    assert lifecycle.workers.run_next()
    job: dict[str, Any] = (
        await client.get(f"/jobs/{created.json()['id']}", headers=auth("reader"))
    ).json()
    assert job["state"] == "done", job["error"]
    return job


@pytest.mark.anyio
async def test_the_job_shows_a_summary_and_serves_its_feature_table(serve: Serve) -> None:
    client, lifecycle = await serve()
    job = await _done_job(client, lifecycle)
    [sr] = [r for r in job["results"] if r["kind"] == "SR"]
    [seg] = [r for r in job["results"] if r["kind"] == "SEG"]
    [stored] = lifecycle.store.get_instances(STUDY_UID, sr["series_instance_uid"])
    in_sr = read_sr_measurements(stored.path)["Bone"]
    assert "radiomics_s" in job["timings_s"]

    summary = job["radiomics"]
    assert summary["parameter_set"].startswith("small sha256:")
    assert summary["feature_table"] == f"/jobs/{job['id']}/features"
    assert summary["segments"] == [
        {
            "label": 1,
            "segment": "Bone",
            "volume_mm3": in_sr["Volume"],
            "feature_count": 32,
            "skipped": [],
        }
    ]

    url = f"/jobs/{job['id']}/features"
    table = await client.get(url, headers=auth("reader"))
    assert table.status_code == 200 and table.headers["content-type"] == "application/json"
    document = table.json()
    assert (document["job_id"], document["parameter_set"]) == (job["id"], summary["parameter_set"])
    (segment,) = document["segments"]
    values = {f["name"]: f["value"] for f in segment["features"]}
    assert len(values) == 32
    assert values["original_shape_Sphericity"] == in_sr["Sphericity"]
    units = {f["name"]: f["unit"] for f in segment["features"]}
    assert units["original_firstorder_Mean"] == "[hnsf'U]"

    for request in ({"params": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}):
        headers = {**auth("reader"), **request.get("headers", {})}
        answer = await client.get(url, params=request.get("params"), headers=headers)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/csv")
        reader = csv.DictReader(io.StringIO(answer.text))
        assert reader.fieldnames is not None
        assert reader.fieldnames[:5] == ["Case", "Image", "Mask", "Label", "Segment"]
        (row,) = list(reader)
        assert (row["Case"], row["Image"], row["Mask"], row["Segment"]) == (
            job["id"],
            job["series_instance_uid"],
            seg["sop_instance_uid"],
            "Bone",
        )
        assert {name: float(row[name]) for name in values} == values
    preferred = await client.get(
        url, headers={**auth("reader"), "Accept": "text/csv;q=0.5, application/json"}
    )
    assert preferred.headers["content-type"] == "application/json"
    refused = await client.get(url, headers={**auth("reader"), "Accept": "application/xml"})
    assert refused.status_code == 406
    assert (
        await client.get(url, params={"format": "xlsx"}, headers=auth("reader"))
    ).status_code == 400

    # Durable: a restarted server serves the same table.
    lifecycle.stop()
    client, lifecycle = await serve()
    again = await client.get(url, headers=auth("reader"))
    assert again.json() == document
    [model] = (await client.get("/models", headers=auth("reader"))).json()["models"]
    parameter_set = lifecycle.registry.get(MODEL).radiomics
    assert parameter_set is not None
    assert model["radiomics"] == {
        "parameter_set": "small",
        "sha256": parameter_set.parameter_set.sha256,
        "identifier": summary["parameter_set"],
    }


@pytest.mark.anyio
async def test_the_feature_table_needs_a_reader_and_a_finished_radiomics_job(
    serve: Serve,
) -> None:
    client, _ = await serve()
    body = {"study_instance_uid": STUDY_UID, "model": MODEL, "destinations": []}
    queued = (await client.post("/jobs", json=body, headers=auth("submitter"))).json()
    assert queued["radiomics"] is None
    url = f"/jobs/{queued['id']}/features"
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert (await client.get(url, headers=auth("submitter"))).status_code == 403
    missing = await client.get(url, headers=auth("reader"))
    assert missing.status_code == 404
    assert missing.json() == {"error": "this job has no feature table"}
    unknown = await client.get("/jobs/nope/features", headers=auth("reader"))
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no job with this id"})
