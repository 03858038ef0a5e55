"""Fixtures of the whole-server tests: model packages, settings, a running server, Orthanc.

The model is a tiny real ONNX model (label 1 where the CT value exceeds 300.5 HU, so its
mask is known exactly) and, once it exists in the repository, the real
``models/sts-ct-gtv/1.1.0`` package: tests taking ``model_package`` run once per package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from radserve.dicom_io import read_image_series
from radserve.server import (
    ServerSettings,
    hash_token,
    load_settings,
)
from tests.conftest import REPO_ROOT, run_orthanc
from tests.live_server import RunningServer, free_port, running_server
from tests.radiomics_sets import THRESHOLD_HU, bone_package

TINY_MODEL = "bone-threshold"
REAL_PACKAGE = REPO_ROOT / "models" / "sts-ct-gtv" / "1.1.0"
STUDY_UID = "1.3.6.1.4.1.14519.5.2.1.5168.1900.190311276211389538203367070477"
BOUNDARY = "radserve-server-test"
DICOM_MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
TOKENS = {"submitter": ["submit"], "reader": ["read"], "operator": ["admin"]}


def token_of(name: str) -> str:
    return f"{name}-token-0123456789abcdef0123456789"


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(name)}"}


def multipart(parts: list[bytes]) -> bytes:
    body = b"".join(
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
        for part in parts
    )
    return body + f"--{BOUNDARY}--\r\n".encode()


@dataclass(frozen=True)
class ModelPackageCase:
    """A model package to serve: its folder and whether its mask is known (the tiny one)."""

    name: str
    version: str
    directory: Path
    threshold_hu: float | None


@pytest.fixture(scope="session")
def demo_ct_files(demo_study: Path) -> list[Path]:
    return sorted((demo_study / "image").glob("*.dcm"))


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory: pytest.TempPathFactory, demo_study: Path) -> ModelPackageCase:
    spacing_mm = read_image_series(demo_study / "image").volume.spacing_mm
    directory = bone_package(
        tmp_path_factory.mktemp("tiny"),
        name=TINY_MODEL,
        spacing_mm=spacing_mm,
        threshold_hu=THRESHOLD_HU,
    )
    return ModelPackageCase(TINY_MODEL, "1.0.0", directory, THRESHOLD_HU)


def _package_params() -> list[Any]:
    params: list[Any] = [pytest.param("tiny", id="tiny-onnx")]
    if (REAL_PACKAGE / "manifest.yaml").is_file():
        params.append(pytest.param("real", id="sts-ct-gtv", marks=pytest.mark.slow))
    return params


@pytest.fixture(params=_package_params())
def model_package(
    request: pytest.FixtureRequest, tiny_package: ModelPackageCase
) -> ModelPackageCase:
    if request.param == "tiny":
        return tiny_package
    return ModelPackageCase("sts-ct-gtv", "1.1.0", REAL_PACKAGE, None)


def models_dir_with(root: Path, *packages: ModelPackageCase) -> Path:
    """A models folder linking to the packages (``<name>/<version>`` -> the package)."""
    models = root / "models-served"
    for package in packages:
        target = models / package.name / package.version
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(package.directory.resolve(), target_is_directory=True)
    return models


def server_settings(tmp_path: Path, models_dir: Path, **overrides: Any) -> ServerSettings:
    """Settings with one token per role, CPU inference and fast retries."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "models_dir": models_dir,
        "tokens": [
            {"name": name, "sha256": hash_token(token_of(name)), "roles": roles}
            for name, roles in TOKENS.items()
        ],
        "max_request_bytes": 64 * 1024 * 1024,
        "execution_providers": ["CPUExecutionProvider"],
        "workers": 1,
        "routing_stable_s": 0.5,
        "export_backoff_s": 0.3,
        "export_backoff_max_s": 1.0,
        "export_timeout_s": 20.0,
        **overrides,
    }
    return load_settings(**values)


@pytest.fixture
def start_server() -> Iterator[Callable[[ServerSettings], RunningServer]]:
    """Start the whole server (lifespan on: workers, exporter, router) on a loopback port."""
    with ExitStack() as stack:

        def start(settings: ServerSettings) -> RunningServer:
            return stack.enter_context(running_server(settings))

        yield start


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    until: Callable[[dict[str, Any]], bool],
    *,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Poll ``GET /jobs/{id}`` until ``until(job)``; fail with the last view after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(f"/jobs/{job_id}", headers=auth("reader"))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job did not get there in time: {job}"
        time.sleep(0.1)


def finished(job: dict[str, Any]) -> bool:
    return job["state"] in ("done", "failed")


def orthanc_instances(dicomweb_url: str, study: str, series: str) -> list[str]:
    """SOP Instance UIDs of a series in a PACS (QIDO-RS)."""
    response = httpx.get(f"{dicomweb_url}/studies/{study}/series/{series}/instances", timeout=30)
    if response.status_code == 204 or not response.content:
        return []
    assert response.status_code == 200, response.text
    return sorted(item["00080018"]["Value"][0] for item in response.json())


@contextmanager
def orthanc_on_port(root: Path, http_port: int) -> Iterator[str]:
    """A second private Orthanc on a given port (a destination that comes up late); yields
    its DICOMweb URL."""
    with run_orthanc(root, http_port=http_port) as server:
        yield server.dicomweb_url


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


def server_environment(tmp_path: Path, models_dir: Path, destination: str) -> dict[str, str]:
    """The environment of a server process on ``tmp_path/data``: one token per role, CPU
    inference, one worker, no routing, fast export retries to ``destination``."""
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
