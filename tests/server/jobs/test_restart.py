"""Restart in the middle: a real server process killed (SIGKILL) with one job running and one
queued, restarted on the same data folder: both jobs complete, nothing accepted is lost, and
Orthanc holds exactly one copy of each result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO_ROOT
from tests.live_server import free_port

from .conftest import (
    DICOM_MULTIPART,
    STUDY_UID,
    TOKENS,
    ModelPackageCase,
    auth,
    finished,
    models_dir_with,
    multipart,
    orthanc_instances,
    token_of,
    wait_for_job,
)

pytestmark = pytest.mark.pacs

_SERVE = (
    "import logging; logging.basicConfig(level=logging.INFO); "
    "from radserve.server.app import serve; "
    "from radserve.server.settings import load_settings; serve(load_settings())"
)


@contextmanager
def server_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``radserve`` in its own process; yields once ``/healthz`` answers."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE], env=env, cwd=REPO_ROOT, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{env['RADSERVE_PORT']}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "server exited: " + log.read_text()[-3000:]
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def _environment(tmp_path: Path, models_dir: Path, destination: str) -> dict[str, str]:
    from radserve.server import hash_token

    tokens = [
        {"name": name, "sha256": hash_token(token_of(name)), "roles": roles}
        for name, roles in TOKENS.items()
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSERVE_")}
    env.update(
        RADSERVE_DATA_DIR=str(tmp_path / "data"),
        RADSERVE_MODELS_DIR=str(models_dir),
        RADSERVE_PORT=str(free_port()),
        RADSERVE_TOKENS=json.dumps(tokens),
        RADSERVE_DESTINATIONS=json.dumps([{"name": "orthanc", "url": destination}]),
        RADSERVE_EXECUTION_PROVIDERS=json.dumps(["CPUExecutionProvider"]),
        RADSERVE_ROUTING_ENABLED="false",
        RADSERVE_WORKERS="1",
        RADSERVE_MAX_REQUEST_BYTES=str(64 * 1024 * 1024),
        RADSERVE_EXPORT_BACKOFF_S="0.5",
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


def test_killed_server_reruns_interrupted_jobs_without_duplicates(
    tmp_path: Path,
    tiny_package: ModelPackageCase,
    demo_ct_files: list[Path],
    orthanc: Any,
) -> None:
    env = _environment(tmp_path, models_dir_with(tmp_path, tiny_package), orthanc.dicomweb_url)
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
