"""Viewer benchmark: time for OHIF to show the first image of a 300-slice CT, radserve against
Orthanc's DICOMweb plugin serving the same study to the same OHIF.

The study is an uncompressed CT of ``--slices`` slices of 512x512 built from the 20 real
``totalseg_ct`` slices (``bench/ingest.py``), stored in both servers over STOW-RS. The same
OHIF build (the one ``radserve viewer install`` put in ``.viewer``) is served to Chromium for
both, from this process (Playwright route fulfilment, with the cross-origin isolation
headers radserve sends), on each server's origin, with the same configuration except the
DICOMweb root (``/dicomweb`` or ``/dicom-web``): only the DICOMweb traffic differs. Each run
is a fresh browser context (empty cache) that opens
``/viewer/viewer?StudyInstanceUIDs=<study>``; radserve's run logs in first (its session
cookie), Orthanc runs without authentication.

Figures per server, the first opening of the study (radserve converts each instance's
header to DICOM JSON then; later openings get it from its metadata cache) and the median of
``--runs`` runs after it, runs alternating: OHIF's own ``studyToFirstImage`` timer (from the
study's metadata request to the first image drawn) and the wall time from navigation to
that moment. The ratio is radserve / Orthanc
(below 1: radserve shows the image sooner). Debian's Chromium, headless, WebGL on
SwiftShader. This is a benchmark, not a test: it prints a Markdown table.

Run: ``.venv/bin/python bench/viewer_first_image.py [--runs 5 --slices 300]``
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
from _servers import orthanc_server, radserve_process
from ingest import build_uncompressed_ct
from playwright.sync_api import Browser, Route, sync_playwright

from radserve.server import PacsClient, ViewerOptions, app_config_js

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RADSERVE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
TOTALSEG_DICOM = SHARED_DATA / "totalseg_ct" / "dicom"
VIEWER_DIR = Path(os.environ.get("RADSERVE_VIEWER_DIR", REPO_ROOT / ".viewer"))
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
ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
TYPES = {".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css"}
TIMER = re.compile(r"studyToFirstImage: ([0-9.]+) ?ms")


@dataclass(frozen=True)
class Target:
    name: str
    origin: str
    dicomweb_path: str
    token: str | None


def _static(dicomweb_path: str):  # type: ignore[no-untyped-def]
    config = app_config_js(ViewerOptions(dicomweb_path=dicomweb_path)).encode()
    index = (VIEWER_DIR / "index.html").read_bytes()

    def handle(route: Route) -> None:
        path = route.request.url.split("/viewer/", 1)[1].split("?", 1)[0]
        if path == "app-config.js":
            route.fulfill(body=config, headers={**ISOLATION, "Content-Type": "text/javascript"})
            return
        found = VIEWER_DIR / path
        if path and found.is_file():
            kind = TYPES.get(found.suffix, "application/octet-stream")
            route.fulfill(path=str(found), headers={**ISOLATION, "Content-Type": kind})
            return
        route.fulfill(body=index, headers={**ISOLATION, "Content-Type": "text/html"})

    return handle


def _run(browser: Browser, target: Target, study: str, timeout_s: float) -> tuple[float, float]:
    """OHIF's studyToFirstImage (s) and the wall time from navigation (s), one fresh context."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        context.route(f"{target.origin}/viewer/**", _static(target.dicomweb_path))
        if target.token is not None:
            login = context.request.post(
                f"{target.origin}/login", form={"token": target.token}, max_redirects=0
            )
            if login.status != 303:
                raise SystemExit(f"login failed: {login.status}")
        page = context.new_page()
        found: list[float] = []
        seen_at: list[float] = []

        def on_console(message: object) -> None:
            match = TIMER.search(str(getattr(message, "text", "")))
            if match and not found:
                found.append(float(match.group(1)) / 1000)
                seen_at.append(time.perf_counter())

        page.on("console", on_console)
        started = time.perf_counter()
        page.goto(f"{target.origin}/viewer/viewer?StudyInstanceUIDs={study}")
        deadline = started + timeout_s
        while not found:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{target.name}: no first image within {timeout_s:.0f} s")
            page.wait_for_timeout(50)
        return found[0], seen_at[0] - started
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    if not (VIEWER_DIR / "index.html").is_file():
        raise SystemExit(f"no viewer in {VIEWER_DIR}: run `make viewer`")
    with tempfile.TemporaryDirectory(prefix="radserve-bench-viewer-") as tmp:
        work = Path(tmp)
        series = build_uncompressed_ct(TOTALSEG_DICOM, work / "ct", n_slices=args.slices)
        datasets = [pydicom.dcmread(p) for p in sorted(series.glob("*.dcm"))]
        study = str(datasets[0].StudyInstanceUID)
        with (
            orthanc_server(work / "orthanc") as (orthanc_url, _),
            radserve_process(work / "radserve", models_dir=REPO_ROOT / "models") as (
                radserve_url,
                token,
                _,
            ),
        ):
            targets = [
                Target("radserve", radserve_url, "/dicomweb", token),
                Target("Orthanc", orthanc_url, "/dicom-web", None),
            ]
            PacsClient(
                f"{radserve_url}/dicomweb", headers={"Authorization": f"Bearer {token}"}
            ).store(datasets)
            PacsClient(f"{orthanc_url}/dicom-web").store(datasets)
            del datasets
            timer: dict[str, list[float]] = {t.name: [] for t in targets}
            wall: dict[str, list[float]] = {t.name: [] for t in targets}
            first: dict[str, tuple[float, float]] = {}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                for k in range(args.runs + 1):
                    for target in targets if k % 2 == 0 else list(reversed(targets)):
                        ohif_s, wall_s = _run(browser, target, study, args.timeout)
                        if k:
                            timer[target.name].append(ohif_s)
                            wall[target.name].append(wall_s)
                        else:
                            first[target.name] = (ohif_s, wall_s)
                browser.close()
    print(
        f"OHIF {VIEWER_DIR.name} first image of a {args.slices}-slice 512x512 CT; first opening "
        f"and median of {args.runs} later runs; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores\n"
    )
    print("| measure | radserve (s) | Orthanc (s) | ratio (radserve / Orthanc) |")
    print("|---|---|---|---|")
    rows = [
        ("first opening: OHIF studyToFirstImage", first["radserve"][0], first["Orthanc"][0]),
        ("first opening: navigation to first image", first["radserve"][1], first["Orthanc"][1]),
    ]
    for label, values in (("OHIF studyToFirstImage", timer), ("navigation to first image", wall)):
        rows.append(
            (
                f"later: {label}",
                statistics.median(values["radserve"]),
                statistics.median(values["Orthanc"]),
            )
        )
    for label, ours, theirs in rows:
        print(f"| {label} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
    main()
