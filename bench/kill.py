"""Kill suite: radserve killed with SIGKILL at seeded random times while senders store
studies (STOW-RS), the router turns each series into a job on the shipped model, the workers
run the jobs and the exporter delivers the results to a real Orthanc; restarted after each
kill on the same data folder, as a process supervisor would.

The data: ``--studies`` copies of the bundled study (48 CT slices and an RTSTRUCT), each with
new UIDs, sent one at a time ``--pause`` seconds apart. A sender that loses its connection to
a kill sends the same study again to the restarted server, as a PACS would. After the last
kill the server runs until every job is finished and delivered, then the suite counts:

* acknowledged instances lost (acknowledged by a 200 or 202, missing afterwards);
* jobs lost (a study whose CT series has no job), duplicate jobs (two for one series);
* jobs failed (every job here is sound, so a failure is a bystander charged for a crash);
* results missing, stray or duplicated in Orthanc (against each job's result UIDs);
* staging files left behind.

Every count must be 0. The baseline is the same workload run without kills, in the same run:
the ratio (with kills / without) is the time the kills cost. With ``--check`` (used by the
test suite) there is no baseline run, and the exit status is 1 unless every count is 0.

Run: ``.venv/bin/python bench/kill.py [--studies 8 --kills 10 --seed 1]``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pydicom
from _servers import orthanc_server, radserve_process
from pydicom.uid import generate_uid

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_FILES = sorted((REPO_ROOT / "demo" / "study").rglob("*.dcm"))
BOUNDARY = "radserve-kill-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


@dataclass
class Study:
    uid: str
    ct_series: str
    body: bytes
    acknowledged: set[str] = field(default_factory=set)
    answered: bool = False


@dataclass
class Outcome:
    wall_s: float
    kills: list[str]
    counts: dict[str, int]
    attempts: Counter[int]


def _studies(count: int) -> list[Study]:
    datasets = [pydicom.dcmread(path) for path in DEMO_FILES]
    studies = []
    for _ in range(count):
        study_uid, series, parts = generate_uid(), {}, []
        for ds in datasets:
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series.setdefault(ds.Modality, generate_uid())
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
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
        studies.append(Study(study_uid, series["CT"], body))
    return studies


def _send(
    url: str, headers: dict[str, str], studies: list[Study], stop: threading.Event, pause_s: float
) -> None:
    """Send every study not yet answered, ``pause_s`` apart (a modality sends a study at a
    time); return when done, stopped or cut off."""
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        for study in studies:
            if study.answered or stop.is_set():
                continue
            stop.wait(pause_s)
            try:
                response = client.post(
                    "/dicomweb/studies", content=study.body, headers={"Content-Type": CONTENT_TYPE}
                )
            except httpx.HTTPError:
                return  # killed mid-request: nothing of it was acknowledged
            if response.status_code == 503:
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            if response.status_code not in (200, 202):
                raise SystemExit(f"STOW-RS answered {response.status_code}: {response.text}")
            referenced = response.json().get("00081199", {}).get("Value", [])
            study.acknowledged.update(item["00081155"]["Value"][0] for item in referenced)
            study.answered = response.status_code == 200


def _jobs(client: httpx.Client) -> list[dict[str, object]]:
    response = client.get("/jobs", params={"limit": 1000})
    response.raise_for_status()
    jobs: list[dict[str, object]] = response.json()["jobs"]
    return jobs


def _settled(job: dict[str, object]) -> bool:
    exports = job["exports"]
    assert isinstance(exports, list)
    return job["state"] == "failed" or (
        job["state"] == "done" and all(e["state"] == "delivered" for e in exports)
    )


def _what_runs(jobs: list[dict[str, object]], sending: bool) -> str:
    stages = sorted({str(job["stage"]) for job in jobs if job["state"] == "running"})
    exporting = any(job["state"] == "done" and not _settled(job) for job in jobs)
    what = (["STOW-RS"] if sending else []) + stages + (["export"] if exporting else [])
    return "+".join(what) or "idle"


def _orthanc_results(orthanc: str, study: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    response = httpx.get(f"{orthanc}/studies/{study}/instances", timeout=60)
    if response.status_code == 200 and response.content:
        for item in response.json():
            series = item["0020000E"]["Value"][0]
            found.setdefault(series, set()).add(item["00080018"]["Value"][0])
    return found


def run(work: Path, studies: list[Study], kills: int, seed: int, pause_s: float) -> Outcome:
    """Store ``studies`` through a server killed ``kills`` times; count what went wrong.

    A job may run ``kills + 1`` times: a job running alone when the process dies is charged
    a crash (it may be a poison job), and a job this suite happened to kill every time it
    ran must not be quarantined for it; the quarantine has its own test."""
    rng = random.Random(seed)
    with orthanc_server(work / "orthanc") as (orthanc_url, _):
        orthanc = f"{orthanc_url}/dicom-web"
        env = {
            "RADSERVE_ROUTING_ENABLED": "true",
            "RADSERVE_ROUTING_STABLE_S": "1",
            "RADSERVE_WORKERS": "2",
            "RADSERVE_DESTINATIONS": json.dumps([{"name": "orthanc", "url": orthanc}]),
            "RADSERVE_EXECUTION_PROVIDERS": json.dumps(["CPUExecutionProvider"]),
            "RADSERVE_EXPORT_BACKOFF_S": "0.5",
            "RADSERVE_JOB_MAX_ATTEMPTS": str(kills + 1),
        }
        models = REPO_ROOT / "models"
        done_kills: list[str] = []
        begin = time.perf_counter()
        while True:
            with radserve_process(work / "radserve", models_dir=models, env=env) as (
                url,
                token,
                pid,
            ):
                headers = {"Authorization": f"Bearer {token}"}
                stop = threading.Event()
                sender = threading.Thread(target=_send, args=(url, headers, studies, stop, pause_s))
                sender.start()
                with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                    if len(done_kills) < kills:
                        time.sleep(rng.uniform(0.5, 8.0))
                        what = _what_runs(_jobs(client), sender.is_alive())
                        os.kill(pid, signal.SIGKILL)
                        done_kills.append(what)
                        print(f"kill {len(done_kills)}: during {what}", file=sys.stderr)
                        stop.set()
                        sender.join()
                        continue
                    sender.join()
                    deadline = time.monotonic() + 900
                    while True:
                        jobs = _jobs(client)
                        expected = {s.ct_series for s in studies}
                        routed = {str(job["series_instance_uid"]) for job in jobs}
                        if expected <= routed and all(_settled(job) for job in jobs):
                            break
                        if time.monotonic() > deadline:
                            raise SystemExit(f"jobs did not settle: {jobs}")
                        time.sleep(0.5)
                    wall_s = time.perf_counter() - begin
                    stored = set()
                    for study in studies:
                        found = client.get(f"/dicomweb/studies/{study.uid}/instances")
                        if found.status_code == 200:
                            stored |= {item["00080018"]["Value"][0] for item in found.json()}
            break
        acknowledged = set().union(*(s.acknowledged for s in studies))
        per_series = Counter(str(job["series_instance_uid"]) for job in jobs)
        missing = stray = 0
        for study in studies:
            in_orthanc = _orthanc_results(orthanc, study.uid)
            expected_results: dict[str, set[str]] = {}
            for job in jobs:
                if job["study_instance_uid"] == study.uid and job["state"] == "done":
                    results = job["results"]
                    assert isinstance(results, list)
                    for result in results:
                        expected_results.setdefault(result["series_instance_uid"], set()).add(
                            result["sop_instance_uid"]
                        )
            for series in expected_results.keys() | in_orthanc.keys():
                want, have = expected_results.get(series, set()), in_orthanc.get(series, set())
                missing += len(want - have)
                stray += len(have - want)
        counts = {
            "acknowledged instances lost": len(acknowledged - stored),
            "jobs lost": len({s.ct_series for s in studies} - per_series.keys()),
            "duplicate jobs": sum(n - 1 for n in per_series.values() if n > 1),
            "jobs failed": sum(job["state"] == "failed" for job in jobs),
            "results missing in Orthanc": missing,
            "stray or duplicate results in Orthanc": stray,
            "staging files left": len(list((work / "radserve" / "data" / "tmp").glob("*"))),
        }
        attempts = Counter(int(str(job["attempts"])) for job in jobs)
        print(f"{len(acknowledged)} instances acknowledged, {len(jobs)} jobs", file=sys.stderr)
        return Outcome(wall_s, done_kills, counts, attempts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=8, help="studies sent (49 instances each)")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between two studies sent")
    parser.add_argument(
        "--check", action="store_true", help="no baseline run; exit 1 unless every count is 0"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radserve-bench-kill-") as tmp:
        work = Path(tmp)
        killed = run(work / "killed", _studies(args.studies), args.kills, args.seed, args.pause)
        baseline = (
            None if args.check else run(work / "baseline", _studies(args.studies), 0, 0, args.pause)
        )
    print(
        f"{args.studies} studies of {len(DEMO_FILES)} instances, {len(killed.kills)} SIGKILLs "
        f"(seed {args.seed}), a study every {args.pause:g} s, model sts-ct-gtv, 2 workers, "
        "loopback; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores\n"
    )
    during = Counter(killed.kills).items()
    print("kills during: " + "; ".join(f"{what} x{n}" for what, n in during))
    runs = sorted(killed.attempts.items())
    print("runs per job: " + ", ".join(f"{n} job(s) ran {k} time(s)" for k, n in runs))
    print("\n| count | with kills |\n|---|---|")
    for name, value in killed.counts.items():
        print(f"| {name} | {value} |")
    if baseline is not None:
        print(
            f"\nwall time until every job delivered: {killed.wall_s:.0f} s with kills, "
            f"{baseline.wall_s:.0f} s without (baseline); "
            f"ratio {killed.wall_s / baseline.wall_s:.2f}"
        )
    if args.check and any(killed.counts.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
