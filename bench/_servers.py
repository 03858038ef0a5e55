"""Servers the benchmarks start: a private Orthanc with its DICOMweb plugin, child processes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up: {log.read_text()[-2000:]}")
        time.sleep(0.2)


@contextlib.contextmanager
def child_process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def orthanc_server(root: Path) -> Iterator[tuple[str, int]]:
    """A private Orthanc with the DICOMweb plugin on a free loopback port; URL and pid."""
    exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    plugins = [
        p
        for folder in ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
        for p in sorted(Path(folder).glob("libOrthancDicomWeb.so*"))
    ]
    if not Path(exe).exists() or not plugins:
        raise SystemExit("Orthanc with the DICOMweb plugin is needed (orthanc, orthanc-dicomweb)")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "radserve-bench",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "HttpPort": port,
        "DicomPort": free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpBindAddress": "127.0.0.1",
        "DicomServerEnabled": False,
        "Plugins": [str(plugins[0])],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    url = f"http://127.0.0.1:{port}"
    log = root / "orthanc.log"
    with child_process([exe, str(root / "orthanc.json")], dict(os.environ), log) as proc:
        wait_http(f"{url}/system", proc, log, 30)
        yield url, proc.pid


@contextlib.contextmanager
def radserve_process(
    root: Path, *, models_dir: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[tuple[str, str, int]]:
    """``radserve serve`` in a child process (routing off unless ``env`` says otherwise).

    Yields the base URL, a one-off development token and the pid.
    """
    root.mkdir(parents=True, exist_ok=True)
    if models_dir is None:
        models_dir = root / "models"
        models_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    port = free_port()
    variables = {
        **os.environ,
        "RADSERVE_DEV_TOKEN": token,
        "RADSERVE_ROUTING_ENABLED": "false",
        **(env or {}),
    }
    command = [sys.executable, "-m", "radserve", "serve", "--port", str(port)]
    command += ["--data-dir", str(root / "data"), "--models-dir", str(models_dir)]
    url = f"http://127.0.0.1:{port}"
    log = root / "radserve.log"
    with child_process(command, variables, log) as proc:
        wait_http(f"{url}/readyz", proc, log, 120)
        yield url, token, proc.pid
