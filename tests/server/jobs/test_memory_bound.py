"""The whole server process's memory against hostile requests, before and after
authentication: a real server process (uvicorn, the whole product) is sent bodies far
larger than its limits, streamed (so that no Content-Length stops them early), a deflate
bomb and a frame list naming one frame thousands of times; its peak resident memory
(``VmHWM``) grows by a bounded amount, far below what any of them would take if held."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.hostile_inputs import deflated_bomb
from tests.processes import peak_memory_mb

from .conftest import (
    DICOM_MULTIPART,
    ModelPackageCase,
    auth,
    models_dir_with,
    multipart,
    server_environment,
    server_process,
)

BODY_MB = 256
GROWTH_BOUND_MB = 96  # about a third of one hostile body


def _zeros(megabytes: int) -> Iterator[bytes]:
    chunk = bytes(1024 * 1024)
    for _ in range(megabytes):
        yield chunk


def _stow_body(megabytes: int) -> Iterator[bytes]:
    yield b"--radserve-server-test\r\nContent-Type: application/dicom\r\n\r\n"
    yield from _zeros(megabytes)


def _send(call: Callable[[], httpx.Response]) -> str:
    """The status, or how the server ended the exchange early (it may stop reading)."""
    try:
        return str(call().status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def test_hostile_requests_leave_the_server_memory_bounded(
    tmp_path: Path, tiny_package: ModelPackageCase, demo_ct_files: list[Path]
) -> None:
    env = server_environment(
        tmp_path, models_dir_with(tmp_path, tiny_package), "http://127.0.0.1:9"
    )
    url = f"http://127.0.0.1:{env['RADSERVE_PORT']}"
    stow_headers = {"Content-Type": DICOM_MULTIPART}
    first = pydicom.dcmread(demo_ct_files[0], stop_before_pixels=True)
    frames = (
        f"/dicomweb/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
        f"/instances/{first.SOPInstanceUID}/frames/" + ",".join(["1"] * 2000)
    )
    bomb = deflated_bomb(512 * 1024 * 1024)
    with (
        server_process(env, tmp_path / "server.log") as proc,
        httpx.Client(base_url=url, timeout=120) as client,
    ):
        # Warm up every path once, so that the baseline holds the code and caches they load.
        stored = client.post(
            "/dicomweb/studies",
            content=multipart([p.read_bytes() for p in demo_ct_files]),
            headers={**auth("submitter"), **stow_headers},
        )
        assert stored.status_code == 200
        assert client.get(frames.rsplit("/", 1)[0] + "/1", headers=auth("reader")).is_success
        assert client.post("/jobs", json={}, headers=auth("submitter")).status_code == 400
        baseline = peak_memory_mb(proc.pid)
        attacks: dict[str, Callable[[], httpx.Response]] = {
            "POST /jobs without a token": lambda: client.post("/jobs", content=_zeros(BODY_MB)),
            "STOW-RS without a token": lambda: client.post(
                "/dicomweb/studies", content=_stow_body(BODY_MB), headers=stow_headers
            ),
            "POST /jobs with a token": lambda: client.post(
                "/jobs", content=_zeros(BODY_MB), headers=auth("submitter")
            ),
            "STOW-RS with a token, over max_request_bytes": lambda: client.post(
                "/dicomweb/studies",
                content=_stow_body(BODY_MB),
                headers={**auth("submitter"), **stow_headers},
            ),
            "STOW-RS of a deflate bomb (512 MB inflated)": lambda: client.post(
                "/dicomweb/studies",
                content=multipart([bomb]),
                headers={**auth("submitter"), **stow_headers},
            ),
            "a frame list naming one frame 2000 times": lambda: client.get(
                frames, headers=auth("reader")
            ),
        }
        outcomes = {name: _send(attack) for name, attack in attacks.items()}
        peak = peak_memory_mb(proc.pid)
        assert client.get("/healthz").status_code == 200
    print(f"baseline {baseline:.0f} MB, peak {peak:.0f} MB; answers {outcomes}")
    assert outcomes["POST /jobs without a token"] in ("401", "RemoteProtocolError", "WriteError")
    assert outcomes["POST /jobs with a token"] in ("413", "RemoteProtocolError", "WriteError")
    assert outcomes["STOW-RS of a deflate bomb (512 MB inflated)"] in ("400", "409", "413")
    assert outcomes["a frame list naming one frame 2000 times"] == "200"
    assert peak - baseline < GROWTH_BOUND_MB, f"grew {peak - baseline:.0f} MB: {outcomes}"


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
