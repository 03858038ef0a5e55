"""Load benchmark: concurrent STOW-RS senders and QIDO-RS / WADO-RS readers, radserve against
Orthanc's DICOMweb plugin under the same load, in one run, on loopback.

The data: ``--studies`` copies of the bundled study (48 CT slices and an RTSTRUCT, 25 MB),
each with new Study, Series and SOP Instance UIDs, encoded before the clock starts. For each
server: ``--senders`` threads send the studies (one STOW-RS request per study) while
``--readers`` threads loop over QIDO-RS (studies, then the series of one), the series
metadata and one frame of a stored CT slice, and a probe asks ``/healthz`` every 0.2 s
(Orthanc: ``/system``). Every client uses its own keep-alive connection.

Figures per server: instances stored per second (wall time of the senders), p50 / p99
latency of a STOW-RS request and of a read, the share of 503 answers, ``/healthz`` p50 / max
latency, and the server's memory high-water mark (VmHWM of its process). The ratio is
radserve / Orthanc for rates (above 1: radserve faster) and for latencies (below 1: radserve
faster). It prints a Markdown table.

With ``--check`` (used by the test suite, in a bounded form) only radserve runs, and the exit
status is 1 unless radserve kept its promises under the load: every study stored, no 5xx but
503 (back-pressure, with Retry-After), ``/healthz`` always under a second.

Run: ``.venv/bin/python bench/load.py [--studies 8 --senders 4 --readers 4] [--check]``
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pydicom
from _servers import orthanc_server, radserve_process
from pydicom.uid import generate_uid

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_FILES = sorted((REPO_ROOT / "demo" / "study").rglob("*.dcm"))
BOUNDARY = "radserve-load-boundary"


@dataclass
class Figures:
    stow_s: list[float] = field(default_factory=list)
    read_s: list[float] = field(default_factory=list)
    health_s: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    stored: int = 0
    wall_s: float = 0.0
    rss_mb: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _studies(count: int) -> list[tuple[str, str, str, bytes]]:
    """``count`` copies of the demo study: (study UID, CT series UID, a CT SOP UID, body)."""
    datasets = [pydicom.dcmread(path) for path in DEMO_FILES]
    studies = []
    for _ in range(count):
        study_uid, series = generate_uid(), {}
        parts, ct = [], None
        for ds in datasets:
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series.setdefault(str(ds.Modality), generate_uid())
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            if ds.Modality == "CT" and ct is None:
                ct = (str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            parts.append(buffer.getvalue())
        body = (
            b"".join(
                f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
                for p in parts
            )
            + f"--{BOUNDARY}--\r\n".encode()
        )
        assert ct is not None
        studies.append((study_uid, ct[0], ct[1], body))
    return studies


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rss_high_water_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _load(
    base: str,
    health: str,
    headers: dict[str, str],
    studies: list[tuple[str, str, str, bytes]],
    args: argparse.Namespace,
    pid: int,
) -> Figures:
    figures = Figures()
    done = threading.Event()
    pending = list(studies)
    instances_per_study = len(DEMO_FILES)
    first = studies[0]

    def sender() -> None:
        with httpx.Client(headers=headers, timeout=300) as client:
            while True:
                with figures.lock:
                    if not pending:
                        return
                    study = pending.pop()
                body = study[3]
                begin = time.perf_counter()
                response = client.post(
                    f"{base}/studies",
                    content=body,
                    headers={
                        "Content-Type": f'multipart/related; type="application/dicom"; '
                        f"boundary={BOUNDARY}",
                        "Accept": "application/dicom+json",
                    },
                )
                with figures.lock:
                    figures.stow_s.append(time.perf_counter() - begin)
                    figures.statuses.append(response.status_code)
                    if response.status_code == 200:
                        figures.stored += instances_per_study
                    elif response.status_code == 503:  # back-pressure: send it again later
                        pending.insert(0, study)
                if response.status_code == 503:
                    time.sleep(float(response.headers.get("Retry-After", "1")))

    def reader() -> None:
        study, series, sop, _ = first
        paths = [
            ("/studies", "application/dicom+json"),
            (f"/studies/{study}/series", "application/dicom+json"),
            (f"/studies/{study}/series/{series}/metadata", "application/dicom+json"),
            (
                f"/studies/{study}/series/{series}/instances/{sop}/frames/1",
                'multipart/related; type="application/octet-stream"; transfer-syntax=*',
            ),
        ]
        with httpx.Client(headers=headers, timeout=300) as client:
            k = 0
            while not done.is_set():
                path, accept = paths[k % len(paths)]
                k += 1
                begin = time.perf_counter()
                response = client.get(f"{base}{path}", headers={"Accept": accept})
                with figures.lock:
                    figures.read_s.append(time.perf_counter() - begin)
                    figures.statuses.append(response.status_code)

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                begin = time.perf_counter()
                client.get(health, headers=headers)
                figures.health_s.append(time.perf_counter() - begin)
                time.sleep(0.2)

    with httpx.Client(headers=headers, timeout=300) as client:  # the study the readers read
        study = pending.pop(0)
        stored = client.post(
            f"{base}/studies",
            content=study[3],
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
            },
        )
        stored.raise_for_status()
    threads = [threading.Thread(target=reader) for _ in range(args.readers)]
    threads.append(threading.Thread(target=probe))
    senders = [threading.Thread(target=sender) for _ in range(args.senders)]
    for thread in threads:
        thread.start()
    begin = time.perf_counter()
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    figures.wall_s = time.perf_counter() - begin
    done.set()
    for thread in threads:
        thread.join()
    figures.rss_mb = _rss_high_water_mb(pid)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=8, help="studies sent (49 instances each)")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument(
        "--check", action="store_true", help="radserve only; exit 1 unless it kept its promises"
    )
    args = parser.parse_args()
    studies = _studies(args.studies + 1)
    results: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory(prefix="radserve-bench-load-") as tmp:
        work = Path(tmp)
        models = REPO_ROOT / "models"
        with radserve_process(work / "radserve", models_dir=models) as (url, token, pid):
            auth = {"Authorization": f"Bearer {token}"}
            results["radserve"] = _load(
                f"{url}/dicomweb", f"{url}/healthz", auth, studies, args, pid
            )
        if args.check:
            _check(results["radserve"], args)
            return
        with orthanc_server(work / "orthanc") as (url, pid):
            results["Orthanc"] = _load(f"{url}/dicom-web", f"{url}/system", {}, studies, args, pid)
    print(
        f"{args.studies} studies of {len(DEMO_FILES)} instances, {args.senders} STOW-RS senders, "
        f"{args.readers} readers, loopback; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores\n"
    )
    print("| measure | radserve | Orthanc | ratio (radserve / Orthanc) |")
    print("|---|---|---|---|")
    ours, theirs = results["radserve"], results["Orthanc"]

    def row(label: str, a: float, b: float, unit: str = "") -> None:
        print(f"| {label} | {a:.3g}{unit} | {b:.3g}{unit} | {a / b:.2f} |")

    row("instances stored / s", ours.stored / ours.wall_s, theirs.stored / theirs.wall_s)
    for name, pick in (("STOW-RS request", "stow_s"), ("read request", "read_s")):
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            a, b = _percentile(getattr(ours, pick), q), _percentile(getattr(theirs, pick), q)
            row(f"{name} {label} (ms)", a * 1000, b * 1000)
    row(
        "health probe p50 (ms)",
        statistics.median(ours.health_s) * 1000,
        statistics.median(theirs.health_s) * 1000,
    )
    row("health probe max (ms)", max(ours.health_s) * 1000, max(theirs.health_s) * 1000)
    for name, figures in results.items():
        busy = sum(s == 503 for s in figures.statuses) / max(1, len(figures.statuses))
        errors = sum(s >= 500 and s != 503 for s in figures.statuses)
        print(
            f"\n{name}: {len(figures.statuses)} requests, 503 share {busy:.1%}, "
            f"other 5xx {errors}, memory high-water mark {figures.rss_mb:.0f} MB"
        )


def _check(figures: Figures, args: argparse.Namespace) -> None:
    errors = sorted({s for s in figures.statuses if s >= 500 and s != 503})
    busy = sum(s == 503 for s in figures.statuses)
    print(
        f"{args.studies} studies, {args.senders} senders, {args.readers} readers: "
        f"{figures.stored / figures.wall_s:.0f} instances/s, "
        f"{len(figures.statuses)} requests, {busy} answered 503, "
        f"read p50 {_percentile(figures.read_s, 0.5) * 1000:.0f} ms "
        f"p99 {_percentile(figures.read_s, 0.99) * 1000:.0f} ms, "
        f"/healthz max {max(figures.health_s) * 1000:.0f} ms, "
        f"memory high-water mark {figures.rss_mb:.0f} MB"
    )
    broken = []
    if figures.stored != args.studies * len(DEMO_FILES):
        broken.append(f"{figures.stored} of {args.studies * len(DEMO_FILES)} instances stored")
    if errors:
        broken.append(f"5xx answers: {errors}")
    if max(figures.health_s) >= 1.0:
        broken.append(f"/healthz took {max(figures.health_s):.2f} s")
    if broken:
        raise SystemExit("; ".join(broken))


if __name__ == "__main__":
    main()
