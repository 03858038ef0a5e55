"""Fixtures of the whole-server tests: model packages, settings, a running server, Orthanc.

The model is a tiny real ONNX model (label 1 where the CT value exceeds 300.5 HU, so its
mask is known exactly) and, once it exists in the repository, the real
``models/sts-ct-gtv/1.1.0`` package: tests taking ``model_package`` run once per package.
"""

from __future__ import annotations

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
from tests.live_server import RunningServer, running_server
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
