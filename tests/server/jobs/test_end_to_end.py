"""The whole server with a real Orthanc: STOW-RS in, routed job, results exported to Orthanc;
pull mode; an export retried until a destination that was down comes up."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient

from radserve.dicom_io import read_image_series, read_seg
from radserve.server import ServerSettings
from tests.live_server import RunningServer, free_port

from .conftest import (
    DICOM_MULTIPART,
    STUDY_UID,
    ModelPackageCase,
    auth,
    finished,
    models_dir_with,
    multipart,
    orthanc_instances,
    orthanc_on_port,
    server_settings,
    wait_for_job,
)

pytestmark = pytest.mark.pacs

StartServer = Callable[[ServerSettings], RunningServer]


def _stow(client: httpx.Client, files: list[Path]) -> httpx.Response:
    return client.post(
        "/dicomweb/studies",
        content=multipart([p.read_bytes() for p in files]),
        headers={**auth("submitter"), "Content-Type": DICOM_MULTIPART},
    )


def _jobs(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/jobs", headers=auth("reader"))
    assert response.status_code == 200
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


def _assert_results_in_pacs(job: dict[str, Any], dicomweb_url: str) -> None:
    """Every result instance is in the PACS, once, and nothing else is in its series."""
    by_series: dict[str, set[str]] = {}
    for result in job["results"]:
        by_series.setdefault(result["series_instance_uid"], set()).add(result["sop_instance_uid"])
    for series, expected in by_series.items():
        found = orthanc_instances(dicomweb_url, job["study_instance_uid"], series)
        assert sorted(expected) == found


def test_stowed_series_is_routed_and_results_reach_orthanc(
    tmp_path: Path,
    model_package: ModelPackageCase,
    demo_ct_files: list[Path],
    demo_study: Path,
    orthanc: Any,
    start_server: StartServer,
) -> None:
    settings = server_settings(
        tmp_path,
        models_dir_with(tmp_path, model_package),
        destinations=[{"name": "orthanc", "url": orthanc.dicomweb_url}],
    )
    server = start_server(settings)
    with server.client() as client:
        assert _stow(client, demo_ct_files).status_code == 200
        job = wait_for_job(client, _wait_for_a_job(client), finished, timeout_s=600)
        assert job["state"] == "done", job["error"]
        assert job["origin"] == "routing" and job["stage"] == "done"
        assert job["model"] == {"name": model_package.name, "version": model_package.version}
        assert job["provider"] == "CPUExecutionProvider"
        assert {"fetch_s", "inference_s", "store_s", "export_s"} <= set(job["timings_s"])
        [export] = job["exports"]
        assert (export["destination"], export["state"], export["attempts"]) == (
            "orthanc",
            "delivered",
            1,
        )
        kinds = [r["kind"] for r in job["results"]]
        assert kinds.count("SEG") == 1 and kinds.count("SR") == 1
        # Every result passed the conformance gate (the default, block) before it was stored.
        gate = job["conformance"]
        assert (gate["mode"], gate["passed"], gate["validated"]) == ("block", True, True)
        assert gate["problems"] == [] and "conformance_s" in job["timings_s"]

        # The same study again: acknowledged, and no second job.
        assert _stow(client, demo_ct_files).status_code == 200
        time.sleep(settings.routing_stable_s + 0.2)
        assert server.lifecycle.router is not None
        assert server.lifecycle.router.run_due() == []
        assert len(_jobs(client)) == 1

        # radserve serves its results over WADO-RS too.
        [seg_result] = [r for r in job["results"] if r["kind"] == "SEG"]
        local = DICOMwebClient(url=f"{server.url}/dicomweb", headers=auth("reader"))
        local_seg = local.retrieve_instance(
            STUDY_UID, seg_result["series_instance_uid"], seg_result["sop_instance_uid"]
        )

    _assert_results_in_pacs(job, orthanc.dicomweb_url)
    pacs_seg = DICOMwebClient(url=orthanc.dicomweb_url).retrieve_instance(
        STUDY_UID, seg_result["series_instance_uid"], seg_result["sop_instance_uid"]
    )
    volume = read_image_series(demo_study / "image").volume
    from_pacs = read_seg(pacs_seg, reference=volume).volume.array
    from_radserve = read_seg(local_seg, reference=volume).volume.array
    np.testing.assert_array_equal(from_pacs, from_radserve)
    if model_package.threshold_hu is not None:  # the tiny model's mask is known exactly
        expected = volume.array > model_package.threshold_hu
        assert expected.sum() > 1000
        np.testing.assert_array_equal(from_pacs == 1, expected)


def _wait_for_a_job(client: httpx.Client) -> str:
    deadline = time.monotonic() + 30
    while not (jobs := _jobs(client)):
        assert time.monotonic() < deadline, "routing created no job"
        time.sleep(0.1)
    assert len(jobs) == 1
    job_id: str = jobs[0]["id"]
    return job_id


def test_pull_mode_retrieves_the_study_from_orthanc(
    tmp_path: Path,
    tiny_package: ModelPackageCase,
    demo_ct_files: list[Path],
    orthanc: Any,
    start_server: StartServer,
) -> None:
    pacs = DICOMwebClient(url=orthanc.dicomweb_url)
    pacs.store_instances([pydicom.dcmread(p) for p in demo_ct_files])
    settings = server_settings(
        tmp_path,
        models_dir_with(tmp_path, tiny_package),
        destinations=[{"name": "orthanc", "url": orthanc.dicomweb_url}],
        pull_sources=[{"name": "pacs", "url": orthanc.dicomweb_url}],
    )
    server = start_server(settings)
    with server.client() as client:
        missing = client.post(
            "/jobs",
            json={"study_instance_uid": STUDY_UID, "model": tiny_package.name},
            headers=auth("submitter"),
        )
        assert missing.status_code == 404  # not in radserve's store, and no source named
        created = client.post(
            "/jobs",
            json={"study_instance_uid": STUDY_UID, "model": tiny_package.name, "source": "pacs"},
            headers=auth("submitter"),
        )
        assert created.status_code == 202, created.text
        assert created.headers["Location"] == f"/jobs/{created.json()['id']}"
        job = wait_for_job(client, created.json()["id"], finished, timeout_s=120)
        assert job["state"] == "done", job["error"]
        assert job["source"] == "pacs" and job["series_instance_uid"] is not None
        # The pulled series is in radserve's store now, and routing did not run it again.
        local = DICOMwebClient(url=f"{server.url}/dicomweb", headers=auth("reader"))
        assert len(local.search_for_instances(STUDY_UID, job["series_instance_uid"])) == 48
        time.sleep(settings.routing_stable_s + 0.2)
        assert server.lifecycle.router is not None
        assert server.lifecycle.router.run_due() == []
        assert len(_jobs(client)) == 1
    _assert_results_in_pacs(job, orthanc.dicomweb_url)


def test_failing_export_is_retried_until_the_destination_comes_up(
    tmp_path: Path,
    tiny_package: ModelPackageCase,
    demo_ct_files: list[Path],
    start_server: StartServer,
) -> None:
    port = free_port()  # nothing listens there yet
    settings = server_settings(
        tmp_path,
        models_dir_with(tmp_path, tiny_package),
        destinations=[{"name": "late", "url": f"http://127.0.0.1:{port}/dicom-web"}],
        routing_enabled=False,
    )
    server = start_server(settings)
    with server.client() as client:
        assert _stow(client, demo_ct_files).status_code == 200
        created = client.post(
            "/jobs",
            json={"study_instance_uid": STUDY_UID, "model": f"{tiny_package.name}/1.0.0"},
            headers=auth("submitter"),
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        failing = wait_for_job(
            client,
            job_id,
            lambda job: (
                bool(job["exports"])
                and job["exports"][0]["attempts"] >= 2
                and job["exports"][0]["state"] == "pending"
            ),
        )
        assert failing["state"] == "exporting" and failing["stage"] == "exporting"
        [export] = failing["exports"]
        assert export["destination"] == "late"
        failed_attempts = export["attempts"]
        assert "STOW-RS to" in export["last_error"] and "failed" in export["last_error"]
        assert export["next_attempt_at"] is not None
        metrics = client.get("/metrics", headers=auth("reader")).text
        assert 'radserve_export_failures_total{destination="late"}' in metrics
        assert 'radserve_exports_pending{destination="late"} 1' in metrics

        with orthanc_on_port(tmp_path / "late-orthanc", port) as dicomweb_url:
            job = wait_for_job(client, job_id, finished)
            assert job["state"] == "done"
            [export] = job["exports"]
            assert export["state"] == "delivered" and export["attempts"] > failed_attempts
            assert export["last_error"] is None
            _assert_results_in_pacs(job, dicomweb_url)
