"""Restart in the middle: a real server process killed (SIGKILL) with one job running and one
queued, restarted on the same data folder: both jobs complete, nothing accepted is lost, and
Orthanc holds exactly one copy of each result; and killed at seeded random times during
STOW-RS: no acknowledged instance is lost."""

from __future__ import annotations

import io
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from .conftest import (
    DICOM_MULTIPART,
    STUDY_UID,
    ModelPackageCase,
    auth,
    finished,
    models_dir_with,
    multipart,
    orthanc_instances,
    server_environment,
    server_process,
    wait_for_job,
)

pytestmark = pytest.mark.pacs


def test_killed_server_reruns_interrupted_jobs_without_duplicates(
    tmp_path: Path,
    tiny_package: ModelPackageCase,
    demo_ct_files: list[Path],
    orthanc: Any,
) -> None:
    env = server_environment(
        tmp_path, models_dir_with(tmp_path, tiny_package), orthanc.dicomweb_url
    )
    url = f"http://127.0.0.1:{env['RADSERVE_PORT']}"
    log = tmp_path / "server.log"
    body = {"study_instance_uid": STUDY_UID, "model": tiny_package.name}
    with server_process(env, log) as proc, httpx.Client(base_url=url, timeout=60) as client:
        stored = client.post(
            "/dicomweb/studies",
            content=multipart([p.read_bytes() for p in demo_ct_files]),
            headers={**auth("submitter"), "Content-Type": DICOM_MULTIPART},
        )
        assert stored.status_code == 200
        first = client.post("/jobs", json=body, headers=auth("submitter")).json()["id"]
        second = client.post("/jobs", json=body, headers=auth("submitter")).json()["id"]
        running = wait_for_job(client, first, lambda job: job["state"] != "queued", timeout_s=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert running["state"] == "running", "the job finished before the kill"
    assert running["attempts"] == 1

    with server_process(env, log), httpx.Client(base_url=url, timeout=60) as client:
        jobs = [wait_for_job(client, job_id, finished) for job_id in (first, second)]
        instances = client.get(
            f"/dicomweb/studies/{STUDY_UID}/instances", headers=auth("reader")
        ).json()
    for job in jobs:
        assert job["state"] == "done", job["error"]
        assert job["exports"][0]["state"] == "delivered"
    assert jobs[0]["attempts"] == 2  # interrupted once, then run again
    assert jobs[0]["results"] == jobs[1]["results"]  # the same UIDs: no duplicates
    sources = [i for i in instances if i["00080060"]["Value"][0] == "CT"]
    assert len(sources) == len(demo_ct_files)
    by_series: dict[str, set[str]] = {}
    for result in jobs[0]["results"]:
        by_series.setdefault(result["series_instance_uid"], set()).add(result["sop_instance_uid"])
    for series, expected in by_series.items():
        assert orthanc_instances(orthanc.dicomweb_url, STUDY_UID, series) == sorted(expected)


def _copies(files: list[Path], count: int) -> list[tuple[str, bytes]]:
    """``count`` copies of the CT series as STOW-RS bodies, each a new study: (UID, body)."""
    datasets = [pydicom.dcmread(path) for path in files]
    copies = []
    for _ in range(count):
        study, series = generate_uid(), generate_uid()
        parts = []
        for ds in datasets:
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            parts.append(buffer.getvalue())
        copies.append((study, multipart(parts)))
    return copies


def test_sigkill_during_stow_loses_no_acknowledged_instance(
    tmp_path: Path, tiny_package: ModelPackageCase, demo_ct_files: list[Path]
) -> None:
    """The kill suite's bounded form: the server is killed (SIGKILL) at seeded random times
    while senders store studies; every instance ever acknowledged is there after the
    restarts, and no staging file is left."""
    rng = random.Random(20261207)
    env = server_environment(
        tmp_path, models_dir_with(tmp_path, tiny_package), "http://127.0.0.1:9"
    )
    url = f"http://127.0.0.1:{env['RADSERVE_PORT']}"
    log = tmp_path / "server.log"
    copies = _copies(demo_ct_files, 24)
    acknowledged: set[str] = set()
    answered_studies: set[str] = set()
    kills = 0
    while len(answered_studies) < len(copies) and kills < 5:
        with server_process(env, log) as proc:
            stop = threading.Event()

            def send(stop: threading.Event = stop) -> None:
                with httpx.Client(base_url=url, timeout=60) as client:
                    for study, body in copies:
                        if study in answered_studies or stop.is_set():
                            continue
                        try:
                            response = client.post(
                                "/dicomweb/studies",
                                content=body,
                                headers={**auth("submitter"), "Content-Type": DICOM_MULTIPART},
                            )
                        except httpx.HTTPError:
                            return  # killed mid-request: nothing of it was acknowledged
                        assert response.status_code == 200, response.text
                        referenced = response.json()["00081199"]["Value"]
                        acknowledged.update(item["00081155"]["Value"][0] for item in referenced)
                        answered_studies.add(study)

            sender = threading.Thread(target=send)
            sender.start()
            time.sleep(rng.uniform(0.1, 0.8))
            if sender.is_alive():
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                kills += 1
            stop.set()
            sender.join(timeout=120)
    assert kills >= 3, "the senders finished before the server could be killed"
    with server_process(env, log), httpx.Client(base_url=url, timeout=60) as client:
        stored: set[str] = set()
        for study, _ in copies:
            found = client.get(f"/dicomweb/studies/{study}/instances", headers=auth("reader"))
            if found.status_code == 200:
                stored.update(item["00080018"]["Value"][0] for item in found.json())
    assert acknowledged, "nothing was acknowledged"
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged instances lost"
    assert not list((tmp_path / "data" / "tmp").glob("*")), "staging files left behind"
    print(f"{kills} kills, {len(acknowledged)} instances acknowledged, all stored")
