"""Fixtures of the browser tests: the real server with the real model and the installed OHIF,
the bundled study processed through it, and Debian's Chromium driven by Playwright.

Playwright cannot download its own browsers here; it drives ``/usr/bin/chromium`` (Debian
package ``chromium``) headless, WebGL on SwiftShader. The viewer is the one ``make`` installs
(``.viewer``, or ``RADSERVE_VIEWER_DIR``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright import sync_api as playwright_api

from radserve.dicom_io import iter_instances
from radserve.server import (
    OHIF_VERSION,
    PacsClient,
    hash_token,
    installed_version,
    load_settings,
)
from tests.conftest import REPO_ROOT, require
from tests.live_server import RunningServer, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODELS = REPO_ROOT / "models"
READER_TOKEN = "viewer-reader-token-0123456789abcdef"
SUBMIT_TOKEN = "viewer-submit-token-0123456789abcdef"


def viewer_dir() -> Path:
    return Path(os.environ.get("RADSERVE_VIEWER_DIR", REPO_ROOT / ".viewer"))


@dataclass
class ProcessedStudy:
    """The bundled study processed by the real server, and that server."""

    server: RunningServer
    study_instance_uid: str
    job: dict[str, Any]
    requests: list[tuple[int, str, str]] = field(default_factory=list)

    def result(self, kind: str) -> dict[str, Any]:
        (found,) = [r for r in self.job["results"] if r["kind"] == kind]
        return found


@pytest.fixture(scope="session")
def chromium() -> Path:
    require(CHROMIUM.exists(), "Debian chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def processed(
    tmp_path_factory: pytest.TempPathFactory, demo_study: Path, chromium: Path
) -> Iterator[ProcessedStudy]:
    folder = viewer_dir()
    assert installed_version(folder) == OHIF_VERSION, (
        f"no OHIF {OHIF_VERSION} in {folder}: run `make viewer` (radserve viewer install)"
    )
    require(any(MODELS.glob("*/*/manifest.yaml")), "no model package in models/")
    root = tmp_path_factory.mktemp("viewer-server")
    settings = load_settings(
        data_dir=root / "data",
        models_dir=MODELS,
        viewer_dir=folder,
        tokens=[
            {"name": "reader", "sha256": hash_token(READER_TOKEN), "roles": ["read"]},
            {"name": "pacs", "sha256": hash_token(SUBMIT_TOKEN), "roles": ["submit", "read"]},
        ],
        routing_stable_s=0.5,
        workers=1,
    )
    instances = list(iter_instances([demo_study / "image"]))
    study_uid = str(instances[0].StudyInstanceUID)
    with running_server(settings) as server:
        headers = {"Authorization": f"Bearer {SUBMIT_TOKEN}"}
        PacsClient(f"{server.url}/dicomweb", headers=headers).store(instances)
        job = _wait_for_done(server, study_uid, headers)
        yield ProcessedStudy(server, study_uid, job)
    shutil.rmtree(root, ignore_errors=True)


def _wait_for_done(
    server: RunningServer, study_uid: str, headers: dict[str, str], timeout_s: float = 600
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        while time.monotonic() < deadline:
            jobs = client.get("/jobs", params={"study_instance_uid": study_uid}).json()["jobs"]
            if jobs and jobs[0]["state"] in ("done", "failed"):
                assert jobs[0]["state"] == "done", jobs[0]
                job: dict[str, Any] = jobs[0]
                return job
            time.sleep(0.5)
    raise AssertionError("the routed job did not finish in time")


@contextmanager
def viewer_page(
    processed: ProcessedStudy, chromium: Path, *, app_config: str | None = None
) -> Iterator[Any]:
    """A Chromium page logged in to ``/viewer`` with the processed study open.

    Every DICOMweb response (and every failed one) is recorded in ``processed.requests``.
    ``app_config`` replaces the server's ``app-config.js`` in this browser only (to open the
    study as an OHIF with other settings would).
    """
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        if app_config is not None:
            page.route(
                "**/viewer/app-config.js",
                lambda route: route.fulfill(
                    status=200, content_type="text/javascript", body=app_config
                ),
            )

        def record(response: Any) -> None:
            if "/dicomweb/" in response.url or response.status >= 400:
                processed.requests.append((response.status, response.request.method, response.url))

        page.on("response", record)
        page.goto(
            f"{processed.server.url}/viewer/viewer?StudyInstanceUIDs={processed.study_instance_uid}"
        )
        assert "/login" in page.url  # no session yet: the viewer asks for a login
        page.fill("#token", READER_TOKEN)
        page.click("button[type=submit]")
        skip = page.get_by_text("Skip all")
        skip.wait_for(timeout=60_000)
        skip.click()
        try:
            yield page
        finally:
            browser.close()
