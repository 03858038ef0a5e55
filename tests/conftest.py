"""Shared fixtures: test data locations, the DICOM validator and a private Orthanc PACS.

Tests that need ``../shared/data``, a Debian-packaged tool (dciodvfy, Orthanc) or a GPU skip
with the reason printed on a user's machine. With ``RADSERVE_REQUIRE_ALL=1`` (set by CI) a
missing data folder or tool fails the test instead, so CI never silently skips.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from radserve.dicom_io import ValidatorReport, find_dciodvfy, run_dciodvfy

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = REPO_ROOT / "tests" / "data"
SHARED_DATA = Path(os.environ.get("RADSERVE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
DEMO_STUDY = REPO_ROOT / "demo" / "study"


def require(condition: bool, reason: str) -> None:
    """Skip (or, under ``RADSERVE_REQUIRE_ALL=1``, fail) the test when ``condition`` is false."""
    if condition:
        return
    if os.environ.get("RADSERVE_REQUIRE_ALL") == "1":
        pytest.fail(f"required in this run but missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ``../shared/data`` folder with the larger real data sets."""
    require(SHARED_DATA.is_dir(), f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_study() -> Path:
    """The real CT study bundled with the repository (STS_002: CT series + RTSTRUCT)."""
    assert DEMO_STUDY.is_dir(), "the bundled demo study is part of the repository"
    return DEMO_STUDY


@pytest.fixture(scope="session")
def dciodvfy() -> Callable[[Path], ValidatorReport]:
    """A function running the dicom3tools validator on a file (radserve's own runner, the
    one the conformance gate uses)."""
    exe = find_dciodvfy()
    require(exe is not None, "dciodvfy not installed (Debian package dicom3tools)")

    def run(path: Path) -> ValidatorReport:
        return run_dciodvfy(path, executable=exe)

    return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class OrthancServer:
    """A running private Orthanc."""

    url: str

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"


def _find_dicomweb_plugin() -> Path | None:
    for folder in ("/usr/share/orthanc/plugins", "/usr/lib/orthanc"):
        for candidate in sorted(Path(folder).glob("libOrthancDicomWeb.so*")):
            return candidate
    return None


def _orthanc_executable() -> str | None:
    return shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None
    )


@contextmanager
def run_orthanc(root: Path, *, http_port: int | None = None) -> Iterator[OrthancServer]:
    """A private Orthanc: loopback only, ``http_port`` (default: a free one), storage under
    ``root``, the DICOMweb plugin; stopped on exit. Skips (or fails, see :func:`require`)
    when Orthanc or its DICOMweb plugin is not installed."""
    exe = _orthanc_executable()
    require(exe is not None, "Orthanc not installed (Debian packages orthanc, orthanc-dicomweb)")
    plugin = _find_dicomweb_plugin()
    require(plugin is not None, "Orthanc DICOMweb plugin not installed (orthanc-dicomweb)")
    root.mkdir(parents=True, exist_ok=True)
    http_port = http_port or _free_port()
    config = {
        "Name": "radserve-test",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "HttpPort": http_port,
        "DicomPort": _free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpBindAddress": "127.0.0.1",
        "DicomServerEnabled": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
    }
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config))
    url = f"http://127.0.0.1:{http_port}"
    with (root / "orthanc.log").open("w") as log:
        proc = subprocess.Popen([str(exe), str(config_path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        try:
            while True:
                with suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/system", timeout=1).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "Orthanc did not start: " + (root / "orthanc.log").read_text()[-2000:]
                    )
                time.sleep(0.1)
            yield OrthancServer(url=url)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A private Orthanc for the whole session (see :func:`run_orthanc`)."""
    with run_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server
