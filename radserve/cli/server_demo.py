"""The main job end to end: a real radserve server, the bundled study in, results out.

Starts ``radserve serve`` on the embedded default (SQLite, local files, CPU) with a fresh
data folder (``<out>/server-data``, kept afterwards so the results can be served again and
opened in the viewer) and a one-off development token, sends the study's CT series over
STOW-RS, waits for the automatically routed job, fetches the SEG and SR back over WADO-RS,
compares the model's mask with the radiologist's contour (the study's RTSTRUCT), renders the
key slice and stops the server.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from radserve.dicom_io import (
    DicomIOError,
    LabelMap,
    iter_instances,
    key_slice,
    read_image_series,
    read_rtstruct,
    read_seg,
    read_sr_measurements,
    render_slice,
    write_png,
)
from radserve.server import PacsClient

logger = logging.getLogger(__name__)


class DemoError(RuntimeError):
    """The demo could not complete (the server did not start, the job failed, ...)."""


@dataclass(frozen=True)
class ServerDemoResult:
    """What the server demo produced."""

    job: dict[str, Any]
    labelmap: LabelMap
    sr_measurements: dict[str, dict[str, float]]
    dice_vs_reference: float | None
    png: Path
    stow_s: float
    job_s: float
    features: list[dict[str, Any]]
    features_csv: Path | None
    data_dir: Path
    study_instance_uid: str


@dataclass(frozen=True)
class ServerDemoOptions:
    """How the demo runs its server.

    Attributes:
        models_dir: The model packages the server loads.
        viewer_dir: An installed OHIF viewer for the server to serve at ``/viewer``.
        timeout_s: Longest wait for the job.
    """

    models_dir: Path
    viewer_dir: Path | None = None
    timeout_s: float = 600.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


class _Server:
    """``radserve serve`` in a child process."""

    def __init__(
        self, options: ServerDemoOptions, *, data_dir: Path, token: str, log: Path
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "RADSERVE_DEV_TOKEN": token,
            "RADSERVE_ROUTING_STABLE_S": "1",
            "RADSERVE_WORKERS": "1",
        }
        command = [sys.executable, "-m", "radserve", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(data_dir), "--models-dir", str(options.models_dir)]
        if options.viewer_dir is not None:
            command += ["--viewer-dir", str(options.viewer_dir)]
        self._log = log.open("w")
        self._proc = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._log_path = log

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DemoError("the server exited: " + self._log_path.read_text()[-2000:])
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise DemoError(f"the server was not ready within {timeout_s:.0f} s")

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()


def _wait_for_job(
    client: httpx.Client, study_uid: str, progress: Callable[[str], None], timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        response = client.get("/jobs", params={"study_instance_uid": study_uid})
        response.raise_for_status()
        body = response.json()
        jobs = body["jobs"] if isinstance(body, dict) else body
        if jobs:
            job: dict[str, Any] = jobs[0]
            status = f"job {job['state']}: {job['stage']}"
            if status != last:
                progress(status)
                last = status
            if job["state"] == "done":
                return job
            if job["state"] == "failed":
                raise DemoError(f"the job failed: {job['error']}")
        time.sleep(0.5)
    raise DemoError(f"no finished job within {timeout_s:.0f} s")


def run_server_demo(
    study_dir: Path,
    out_dir: Path,
    options: ServerDemoOptions,
    *,
    progress: Callable[[str], None] = lambda message: None,
) -> ServerDemoResult:
    """Run the main job end to end against a real server (see the module docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    series = read_image_series(study_dir / "image")
    instances = list(iter_instances([study_dir / "image"]))
    token = secrets.token_urlsafe(32)
    headers = {"Authorization": f"Bearer {token}"}
    timeout_s = options.timeout_s
    data_dir = out_dir / "server-data"
    if data_dir.exists():
        shutil.rmtree(data_dir)  # the previous run's: a fresh store, a fresh job
    server = _Server(options, data_dir=data_dir, token=token, log=out_dir / "server.log")
    try:
        progress("starting the server")
        server.wait_ready()
        progress(f"server ready at {server.url}; sending {len(instances)} instances")
        started = time.monotonic()
        PacsClient(f"{server.url}/dicomweb", headers=headers).store(instances)
        stow_s = time.monotonic() - started
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            job = _wait_for_job(client, str(instances[0].StudyInstanceUID), progress, timeout_s)
            job_s = time.monotonic() - started - stow_s
            features: list[dict[str, Any]] = []
            features_csv: Path | None = None
            if job.get("radiomics"):
                table = client.get(f"/jobs/{job['id']}/features")
                table.raise_for_status()
                features = list(table.json()["segments"])
                as_csv = client.get(f"/jobs/{job['id']}/features", params={"format": "csv"})
                as_csv.raise_for_status()
                features_csv = out_dir / "features.csv"
                features_csv.write_text(as_csv.text, encoding="utf-8")
        pacs = PacsClient(f"{server.url}/dicomweb", headers=headers)
        by_kind = {r["kind"]: r for r in job["results"]}
        fetched = {}
        for kind in ("SEG", "SR"):
            ref = by_kind[kind]
            (fetched[kind],) = [
                ds
                for ds in pacs.retrieve_series(
                    str(instances[0].StudyInstanceUID), ref["series_instance_uid"]
                )
                if str(ds.SOPInstanceUID) == ref["sop_instance_uid"]
            ]
    finally:
        server.stop()

    labelmap = read_seg(fetched["SEG"], reference=series.volume)
    measurements = read_sr_measurements(fetched["SR"])
    dice = None
    rtstructs = [
        ds
        for ds in iter_instances([study_dir], stop_before_pixels=True)
        if str(ds.get("Modality", "")) == "RTSTRUCT"
    ]
    if rtstructs:
        reference = read_rtstruct(rtstructs[0], series.volume)
        dice = _dice(labelmap.volume.array > 0, reference.volume.array > 0)
    try:
        k = key_slice(labelmap)
    except DicomIOError:
        k = series.volume.shape[0] // 2
    png = out_dir / "key_slice.png"
    write_png(render_slice(series.volume, labelmap, k, caption=f"slice {k + 1}"), png)
    fetched["SEG"].save_as(out_dir / "seg.dcm", enforce_file_format=True)
    fetched["SR"].save_as(out_dir / "sr.dcm", enforce_file_format=True)
    return ServerDemoResult(
        job=job,
        labelmap=labelmap,
        sr_measurements=measurements,
        dice_vs_reference=dice,
        png=png,
        stow_s=stow_s,
        job_s=job_s,
        features=features,
        features_csv=features_csv,
        data_dir=data_dir,
        study_instance_uid=str(instances[0].StudyInstanceUID),
    )
