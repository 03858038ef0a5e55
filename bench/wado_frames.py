"""Frame retrieval benchmark: radserve's WADO-RS ``/frames`` against Orthanc's DICOMweb plugin.

The same instances are stored in both servers (STOW-RS, the same client): the 20 real
512x512 CT slices of ``../shared/data/totalseg_ct`` (a) decompressed to Explicit VR Little
Endian ("native") and (b) as they are, JPEG 2000 lossless. Clients then ask each server for
``frames/1`` of the instances, round robin, with ``--concurrency`` threads each holding a
keep-alive connection, as a viewer does while it loads a series:

* "as a viewer asks": ``Accept: multipart/related; type="application/octet-stream";
  transfer-syntax=*`` (OHIF's request): any transfer syntax, so the stored pixels go out as
  they are (native bytes, or the JPEG 2000 codestream);
* "decoded": ``Accept: multipart/related; type="application/octet-stream"`` (PS3.18's
  default: Explicit VR Little Endian), which makes the server decode JPEG 2000 frames.

Each figure is the median frames/s of ``--rounds`` rounds of ``--requests`` requests after a
warm-up round; rounds alternate between the servers. The ratio is radserve / Orthanc (above
1: radserve serves more frames per second). Every response is checked (status, one part,
bytes) before it counts. This is a benchmark, not a test: it prints a Markdown table.

Run: ``.venv/bin/python bench/wado_frames.py [--rounds 5 --requests 400 --concurrency 4]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
from _servers import orthanc_server, radserve_process
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radserve.server import PacsClient

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RADSERVE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
TOTALSEG_DICOM = SHARED_DATA / "totalseg_ct" / "dicom"
AS_A_VIEWER_ASKS = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
DECODED = 'multipart/related; type="application/octet-stream"'


@dataclass(frozen=True)
class Server:
    name: str
    dicomweb: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Case:
    name: str
    study: str
    series: str
    instances: tuple[str, ...]


def _cases() -> tuple[list[Dataset], list[Dataset]]:
    """The totalseg CT as stored (JPEG 2000) and decompressed, each with its own UIDs."""
    stored = [pydicom.dcmread(p) for p in sorted(TOTALSEG_DICOM.iterdir()) if p.is_file()]
    compressed, native = [], []
    for kind, target in (("j2k", compressed), ("native", native)):
        study, series, frame = generate_uid(), generate_uid(), generate_uid()
        for ds in stored:
            copy = pydicom.dcmread(ds.filename)
            if kind == "native":
                copy.decompress()
                copy.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            copy.SOPClassUID = copy.SOPClassUID or pydicom.uid.CTImageStorage
            copy.file_meta.MediaStorageSOPClassUID = copy.SOPClassUID
            copy.StudyInstanceUID, copy.SeriesInstanceUID = study, series
            copy.FrameOfReferenceUID = frame
            copy.SOPInstanceUID = generate_uid()
            copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
            copy.PatientID = copy.PatientID or "BENCH"
            target.append(copy)
    return compressed, native


@contextlib.contextmanager
def radserve(root: Path) -> Iterator[Server]:
    """``radserve serve`` in a child process with the bundled model, routing off."""
    with radserve_process(root, models_dir=REPO_ROOT / "models") as (url, token, _):
        yield Server("radserve", f"{url}/dicomweb", {"Authorization": f"Bearer {token}"})


def _round(server: Server, case: Case, accept: str, requests: int, concurrency: int) -> float:
    """Frames per second of ``requests`` frame requests from ``concurrency`` threads."""
    urls = [
        f"{server.dicomweb}/studies/{case.study}/series/{case.series}/instances/{uid}/frames/1"
        for uid in case.instances
    ]
    errors: list[str] = []
    counter = iter(range(requests))
    lock = threading.Lock()

    def work() -> None:
        with httpx.Client(headers={**server.headers, "Accept": accept}, timeout=60) as client:
            while True:
                with lock:
                    k = next(counter, None)
                if k is None:
                    return
                response = client.get(urls[k % len(urls)])
                if response.status_code != 200 or len(response.content) < 1000:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    return

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(errors[0].split("\n")[0])
    return requests / elapsed


def _measure(
    servers: Sequence[Server], case: Case, accept: str, args: argparse.Namespace
) -> dict[str, float]:
    """Median frames/s per server; NaN for a server that fails the requests (logged)."""
    rates: dict[str, list[float]] = {s.name: [] for s in servers}
    failed: set[str] = set()
    for k in range(args.rounds + 1):
        order = servers if k % 2 == 0 else list(reversed(servers))
        for server in order:
            if server.name in failed:
                continue
            try:
                rate = _round(server, case, accept, args.requests, args.concurrency)
            except RuntimeError as exc:
                print(f"{server.name}, {case.name}, {accept}: fails: {exc}", file=sys.stderr)
                failed.add(server.name)
                continue
            if k:  # round 0 warms up both servers
                rates[server.name].append(rate)
    return {
        name: statistics.median(values) if name not in failed else float("nan")
        for name, values in rates.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if not TOTALSEG_DICOM.is_dir():
        raise SystemExit(f"{TOTALSEG_DICOM} is missing (../shared/data)")
    compressed, native = _cases()
    with tempfile.TemporaryDirectory(prefix="radserve-bench-frames-") as tmp:
        work = Path(tmp)
        with orthanc_server(work / "orthanc") as (orthanc_url, _), radserve(work / "r") as ours:
            orthanc = Server("Orthanc", f"{orthanc_url}/dicom-web", {})
            servers = [ours, orthanc]
            for server in servers:
                PacsClient(server.dicomweb, headers=server.headers).store([*compressed, *native])
            cases = [
                Case(
                    name,
                    str(datasets[0].StudyInstanceUID),
                    str(datasets[0].SeriesInstanceUID),
                    tuple(str(ds.SOPInstanceUID) for ds in datasets),
                )
                for name, datasets in (("native", native), ("JPEG 2000", compressed))
            ]
            rows = []
            for case in cases:
                for label, accept in (("as a viewer asks", AS_A_VIEWER_ASKS), ("decoded", DECODED)):
                    if case.name == "native" and label == "decoded":
                        continue  # the same bytes as "as a viewer asks"
                    rates = _measure(servers, case, accept, args)
                    rows.append((case.name, label, rates["radserve"], rates["Orthanc"]))
    print(
        f"Frame retrieval, 512x512 CT (20 instances), {args.concurrency} client threads, "
        f"median of {args.rounds} rounds of {args.requests} requests; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores\n"
    )
    print("| case | Accept | radserve frames/s | Orthanc frames/s | ratio (radserve / Orthanc) |")
    print("|---|---|---|---|---|")
    for name, label, ours_rate, theirs in rows:
        ratio = f"{ours_rate / theirs:.2f}" if theirs == theirs else "Orthanc fails"
        print(f"| {name} | {label} | {ours_rate:.0f} | {theirs:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
