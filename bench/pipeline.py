"""Server pipeline benchmark: every stage of radserve's job path against a MONAI Deploy style app.

Cases: (a) the bundled study (``demo/study/image``, 48 CT slices of 143x161); (b) a full-size
CT of ``--slices`` slices of 512x512, built from the 20 real ``totalseg_ct`` slices
(decompressed, repeated, shifted along the normal, new UIDs; ``bench/ingest.py``).

Every run sends a fresh copy of the case (new Study, Series, Frame of Reference and SOP
Instance UIDs) through both pipelines, with the same client (``PacsClient``, i.e.
dicomweb-client) for every STOW-RS:

* radserve: STOW-RS to a real ``radserve serve`` (a child process; routing off, so no job
  starts by itself), then in this process the worker's own calls: load (the stored files
  read with ``read_instance``, ``image_series_from_instances``, the selection check),
  ``Predictor.predict`` (preprocess, ONNX Runtime sliding window, postprocess; the
  session's runs timed apart as the forward passes), ``measure_segments``, ``write_seg``,
  ``write_sr``, ``write_overlay_sc`` (JPEG-LS, segmented slices), storing the results in an
  instance store as the worker does, and the export (the stored files sent as they are over
  STOW-RS to Orthanc, as the exporter does). "radserve, SEG only" is the same path without
  measurements, SR and overlay: the reference's outputs. Radiomic features, which the
  reference has no counterpart for, are timed apart, once per case (``radiomics_once``: the
  manifest's parameter set on the server's default pool of ``min(2, cores)`` processes, and
  the SR written with the features), and the server runs with radiomics off;
* reference (``bench/_reference_pipeline.py``): STOW-RS of the study to Orthanc (standing in
  for the gateway that hands a MONAI Deploy app its study), then MONAI transforms, MONAI's
  ``sliding_window_inference`` with the PyTorch network in eager mode, ``Invertd``, a
  highdicom SEG, and its export to Orthanc.

Each side's runs alternate (rotating which goes first); the medians of ``--runs`` runs after
one warm-up run are reported. STOW ingest is also measured alone: the same study, fresh UIDs
each time, to radserve and to Orthanc alternately (``--stow-repeats``). Finally one job per
case runs inside the radserve server (POST /jobs, Orthanc as its destination) as a check
that the in-process stages match what the server records.

This is a benchmark, not a test: it asserts nothing and prints Markdown tables.

The reference runs the package's own network in PyTorch, rebuilt from the package alone
(its training config and the weights of its ONNX graph, ``network_from_package``), so the
benchmark runs from a fresh clone once ``make demo`` has set up ``.venv``; ``--checkpoint``
takes a training checkpoint instead. The conformance gate (the validator on every result,
with the structural checks) is part of radserve's path and timed as its own stage.

Run: ``.venv/bin/python bench/pipeline.py [--runs 3 --slices 120]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import highdicom as hd
import httpx
import monai
import numpy as np
import onnxruntime as ort
import pydicom
import torch
from _reference_pipeline import ReferencePipeline, ReferenceRun
from _servers import child_process, free_port, orthanc_server, wait_http
from ingest import build_uncompressed_ct
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from radserve.dicom_io import (
    ImageSeries,
    LabelMap,
    SrOptions,
    image_series_from_instances,
    measure_segments,
    read_image_series,
    read_instance,
    write_overlay_sc,
    write_seg,
    write_sr,
)
from radserve.inference import (
    CPU,
    ModelPackage,
    OnnxSession,
    Predictor,
    RuntimeSettings,
    load_model_package,
)
from radserve.radiomics import (
    CODING_SCHEMES,
    RadiomicsPool,
    RadiomicsRunner,
    extra_measurements,
    resolve_parameter_set,
)
from radserve.server import (
    ConformanceGate,
    GateMode,
    InstanceStore,
    PacsClient,
    algorithm_identity,
    check_selection,
)
from radserve.training import network_from_package, restore

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RADSERVE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
TOTALSEG_DICOM = SHARED_DATA / "totalseg_ct" / "dicom"
DEMO_STUDY = REPO_ROOT / "demo" / "study" / "image"
MODEL_NAME = "sts-ct-gtv"

STAGES = (
    "STOW",
    "load",
    "preprocess",
    "inference",
    "postprocess",
    "measurements",
    "SEG",
    "SR",
    "SC",
    "conformance",
    "store results",
    "export",
)
RADSERVE, SEG_ONLY, REFERENCE = "radserve", "radserve, SEG only", "reference"
SIDES = (RADSERVE, SEG_ONLY, REFERENCE)
# The server's default radiomics_workers on this machine: min(2, cores).
RADIOMICS_WORKERS = min(2, os.cpu_count() or 1)
WEIGHTS_ATOL = 0.02  # max |logit difference| of one patch for "same weights" (export: ~4e-3)


@dataclass(frozen=True)
class Run:
    """One run of one pipeline on one case."""

    stages_s: dict[str, float]
    forward_s: float
    windows: int
    labels_by_instance_number: dict[int, np.ndarray] = field(repr=False)
    results: int = 1
    result_bytes: int = 0
    busy_after_stow_s: float = 0.0

    @property
    def total_s(self) -> float:
        """Every stage, STOW to export."""
        return sum(self.stages_s.values())


@dataclass(frozen=True)
class Servers:
    """The running servers and the in-process parts of the radserve side."""

    radserve: PacsClient
    radserve_url: str
    radserve_data: Path
    server_pids: tuple[int, ...]
    radserve_headers: dict[str, str]
    orthanc: PacsClient
    orthanc_url: str
    results_store: InstanceStore
    predictor: Predictor
    radiomics: RadiomicsRunner
    reference: ReferencePipeline
    gate: ConformanceGate


# --- servers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _radiomics_pool(workers: int) -> Iterator[RadiomicsPool]:
    pool = RadiomicsPool(workers)
    try:
        yield pool
    finally:
        pool.shutdown()


@contextlib.contextmanager
def radserve_server(
    root: Path, package: ModelPackage, *, threads: int, destination: str
) -> Iterator[tuple[str, str, int]]:
    """``radserve serve`` in a child process (routing off); URL, dev token and pid."""
    models = root / "models" / MODEL_NAME
    models.mkdir(parents=True)
    (models / package.manifest.version).symlink_to(package.directory.resolve())
    token = secrets.token_urlsafe(32)
    port = free_port()
    env = {
        **os.environ,
        "RADSERVE_DEV_TOKEN": token,
        "RADSERVE_ROUTING_ENABLED": "false",
        "RADSERVE_RADIOMICS": "false",  # timed on its own (radiomics_once)
        "RADSERVE_WORKERS": "1",
        "RADSERVE_INFERENCE_THREADS": str(threads),
        "RADSERVE_EXECUTION_PROVIDERS": json.dumps([CPU]),
        "RADSERVE_DESTINATIONS": json.dumps([{"name": "orthanc", "url": destination}]),
    }
    command = [sys.executable, "-m", "radserve", "serve", "--port", str(port)]
    command += ["--data-dir", str(root / "data"), "--models-dir", str(root / "models")]
    url = f"http://127.0.0.1:{port}"
    log = root / "radserve.log"
    with child_process(command, env, log) as proc:
        wait_http(f"{url}/readyz", proc, log, 120)
        yield url, token, proc.pid


_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def settle(servers: Servers, *, quiet_s: float = 0.15, timeout_s: float = 15.0) -> float:
    """Wait until the servers have used no CPU for ``quiet_s``; the seconds waited.

    A server may go on working after it answered (Orthanc's DICOMweb plugin, for one), and
    that work would otherwise fall on whatever stage runs next.
    """
    started = time.perf_counter()
    last, quiet_since = _cpu_ticks(servers.server_pids), started
    while time.perf_counter() - started < timeout_s:
        time.sleep(0.05)
        now = _cpu_ticks(servers.server_pids)
        if now != last:
            last, quiet_since = now, time.perf_counter()
        elif time.perf_counter() - quiet_since >= quiet_s:
            break
    return max(0.0, quiet_since - started)


# --- studies ------------------------------------------------------------------------------


def fresh_copy(source: Path, out: Path) -> Path:
    """Copy the series in ``source`` to ``out`` with new Study/Series/FoR/SOP Instance UIDs."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out.mkdir(parents=True)
    for k, path in enumerate(sorted(source.iterdir())):
        ds = pydicom.dcmread(path)
        _set_uids(ds, study, series, frame)
        ds.save_as(out / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    return out


def _set_uids(ds: Dataset, study: str, series: str, frame: str) -> None:
    sop = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop


def read_datasets(folder: Path) -> list[Dataset]:
    """The instances in ``folder`` as a STOW-RS client sends them (not timed)."""
    return [pydicom.dcmread(path) for path in sorted(folder.iterdir())]


# --- radserve -----------------------------------------------------------------------------


@contextlib.contextmanager
def forward_timer() -> Iterator[list[float]]:
    """Time every ONNX Runtime run (the network's forward passes) while active."""
    original = OnnxSession.run
    calls: list[float] = []

    def timed(self: OnnxSession, batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            return original(self, batch)
        finally:
            calls.append(time.perf_counter() - started)

    OnnxSession.run = timed  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        OnnxSession.run = original  # type: ignore[method-assign]


def run_radserve(folder: Path, servers: Servers, *, seg_only: bool = False) -> Run:
    """The worker's path for one study, STOW-RS to export (see the module docstring).

    ``seg_only``: write, store and export the SEG alone (the reference's outputs), no
    measurements, SR or overlay.
    """
    datasets = read_datasets(folder)
    study, series_uid = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    stages: dict[str, float] = {}

    started = time.perf_counter()
    servers.radserve.store(datasets)
    stages["STOW"] = _lap(started)
    del datasets
    busy_after_stow_s = settle(servers)

    started = time.perf_counter()
    stored = sorted((servers.radserve_data / "instances" / study / series_uid).glob("*.dcm"))
    series = image_series_from_instances([read_instance(path) for path in stored])
    package = servers.predictor.package
    check_selection(series, package)
    stages["load"] = _lap(started)

    with forward_timer() as forward:
        prediction = servers.predictor.predict(series.volume)
    stages["preprocess"] = prediction.timings.preprocess_s
    stages["inference"] = prediction.timings.inference_s
    stages["postprocess"] = prediction.timings.postprocess_s
    labelmap, algorithm = prediction.label_map, algorithm_identity(package)

    results: list[Dataset]
    if seg_only:
        started = time.perf_counter()
        results = [write_seg(series, labelmap, algorithm=algorithm)]
        stages["SEG"] = _lap(started)
    else:
        started = time.perf_counter()
        measurements = measure_segments(series.volume, labelmap)
        stages["measurements"] = _lap(started)
        started = time.perf_counter()
        seg = write_seg(series, labelmap, algorithm=algorithm)
        stages["SEG"] = _lap(started)
        started = time.perf_counter()
        sr = write_sr(series, seg, labelmap, measurements, algorithm=algorithm)
        stages["SR"] = _lap(started)
        started = time.perf_counter()
        overlay = write_overlay_sc(
            series, labelmap, algorithm=algorithm, only_segmented_slices=True
        )
        stages["SC"] = _lap(started)
        results = [seg, sr, *overlay]
    started = time.perf_counter()
    gate_s = store_results(servers, results, series, stored[0])
    stages["conformance"] = gate_s
    stages["store results"] = _lap(started) - gate_s

    started = time.perf_counter()
    exported = read_back(servers.results_store, study, results)
    servers.orthanc.store_files(exported)
    stages["export"] = _lap(started)
    result_bytes = sum(
        instance.size_bytes
        for uid in dict.fromkeys(str(ds.SeriesInstanceUID) for ds in results)
        for instance in servers.results_store.get_instances(study, uid)
    )
    return Run(
        stages_s=stages,
        forward_s=sum(forward),
        windows=prediction.windows,
        labels_by_instance_number=_labels_by_instance_number(series, labelmap),
        results=len(results),
        result_bytes=result_bytes,
        busy_after_stow_s=busy_after_stow_s,
    )


def radiomics_once(source: Path, servers: Servers) -> dict[str, float]:
    """The radiomics a job adds, timed once on the case's prediction: the features of each
    segment (on the server's default pool, warmed up), and the SR written with them against
    the SR without them."""
    series = read_image_series(source)
    labelmap = servers.predictor.predict(series.volume).label_map
    algorithm = algorithm_identity(servers.predictor.package)
    measurements = measure_segments(series.volume, labelmap)
    seg = write_seg(series, labelmap, algorithm=algorithm)
    started = time.perf_counter()
    features = servers.radiomics.run(series.volume, labelmap)
    radiomics_s = _lap(started)
    started = time.perf_counter()
    plain = write_sr(series, seg, labelmap, measurements, algorithm=algorithm)
    plain_s = _lap(started)
    started = time.perf_counter()
    rich = write_sr(
        series,
        seg,
        labelmap,
        measurements,
        algorithm=algorithm,
        options=SrOptions(
            extra_measurements=extra_measurements(features), coding_schemes=CODING_SCHEMES
        ),
    )
    rich_s = _lap(started)

    def size(ds: Dataset) -> int:
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        return len(buffer.getvalue())

    return {
        "voxels": float(sum(m.voxel_count for m in measurements)),
        "features": float(sum(len(s.features) for s in features)),
        "radiomics_s": radiomics_s,
        "sr_s": plain_s,
        "sr_with_features_s": rich_s,
        "sr_kb": size(plain) / 1e3,
        "sr_with_features_kb": size(rich) / 1e3,
    }


def store_results(
    servers: Servers, datasets: Sequence[Dataset], series: ImageSeries, source_file: Path
) -> float:
    """What the worker's storing stage does: every result encoded and staged in one batch,
    the conformance gate on the staged files, then one commit. The gate's seconds."""
    seconds: list[float] = []

    def gate(staged: Sequence[tuple[Dataset, Path]]) -> None:
        seconds.append(servers.gate.check(series, staged, source_file=source_file).seconds)

    outcome = servers.results_store.store_results(datasets, before_commit=gate)
    if outcome.failed:
        raise RuntimeError(f"{len(outcome.failed)} results were not stored")
    return seconds[0]


def read_back(store: InstanceStore, study: str, results: Sequence[Dataset]) -> list[bytes]:
    """What the exporter sends: the stored files of the result instances, as they are."""
    wanted = {str(ds.SOPInstanceUID) for ds in results}
    series = dict.fromkeys(str(ds.SeriesInstanceUID) for ds in results)
    return [
        instance.path.read_bytes()
        for uid in series
        for instance in store.get_instances(study, uid)
        if instance.sop_instance_uid in wanted
    ]


def _labels_by_instance_number(series: ImageSeries, labelmap: LabelMap) -> dict[int, np.ndarray]:
    array = labelmap.volume.array
    return {int(header.InstanceNumber): array[k] for k, header in enumerate(series.headers)}


def _lap(started: float) -> float:
    return time.perf_counter() - started


# --- reference ----------------------------------------------------------------------------


def run_reference(folder: Path, servers: Servers, out_dir: Path) -> Run:
    """Orthanc STOW-RS (the gateway's ingest), then the MONAI Deploy style app."""
    datasets = read_datasets(folder)
    started = time.perf_counter()
    servers.orthanc.store(datasets)
    stow_s = _lap(started)
    del datasets
    busy_after_stow_s = settle(servers)
    out_dir.mkdir(parents=True, exist_ok=True)
    run: ReferenceRun = servers.reference.run(folder, out_dir, servers.orthanc)
    return Run(
        stages_s={"STOW": stow_s, **run.stages_s},
        forward_s=run.forward_s,
        windows=run.windows,
        labels_by_instance_number=run.labels_by_instance_number,
        result_bytes=run.seg_bytes,
        busy_after_stow_s=busy_after_stow_s,
    )


# --- the benchmark ------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    """Everything measured on one case."""

    name: str
    instances: int
    runs: dict[str, list[Run]]
    stow_s: dict[str, list[float]]
    stow_after_s: dict[str, list[float]]
    stow_cpu_s: dict[str, list[float]]
    dice: float
    server_jobs: list[dict[str, Any]]
    read_image_series_s: float
    radiomics: dict[str, float]


def run_case(
    name: str, source: Path, servers: Servers, work: Path, args: argparse.Namespace
) -> CaseResult:
    """Warm-up, ``args.runs`` alternating runs, STOW ingest, server jobs."""
    instances = len(list(source.iterdir()))
    runs: dict[str, list[Run]] = {side: [] for side in SIDES}
    counter = 0

    def one(side: str) -> Run:
        nonlocal counter
        counter += 1
        folder = fresh_copy(source, work / f"run-{counter}")
        settle(servers)  # the previous run's export may still be processed
        try:
            if side == REFERENCE:
                return run_reference(folder, servers, work / f"run-{counter}-out")
            return run_radserve(folder, servers, seg_only=side == SEG_ONLY)
        finally:
            shutil.rmtree(folder)

    last = {side: one(side) for side in SIDES}  # warm-up
    for round_ in range(args.runs):
        for side in SIDES[round_ % len(SIDES) :] + SIDES[: round_ % len(SIDES)]:
            last[side] = one(side)
            runs[side].append(last[side])
            print(f"  {name}: {side}, run {round_ + 1}: {last[side].total_s:.2f} s", flush=True)
    dice = _dice(
        last[RADSERVE].labels_by_instance_number, last[REFERENCE].labels_by_instance_number
    )

    stow, stow_after, stow_cpu = stow_ingest(source, servers, args.stow_repeats)
    jobs = [server_job(source, servers, work / f"job-{n}") for n in range(args.server_jobs + 1)]
    jobs = jobs[1:]  # the first job warms up the server's worker
    started = time.perf_counter()
    read_image_series(source)
    read_s = _lap(started)
    radiomics_once(source, servers)  # warm-up: starts the pool's processes
    radiomics = radiomics_once(source, servers)
    return CaseResult(
        name=name,
        instances=instances,
        runs=runs,
        stow_s=stow,
        stow_after_s=stow_after,
        stow_cpu_s=stow_cpu,
        dice=dice,
        server_jobs=jobs,
        read_image_series_s=read_s,
        radiomics=radiomics,
    )


def stow_ingest(
    source: Path, servers: Servers, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """STOW-RS of the same study to radserve and to Orthanc, alternately, fresh UIDs each time.

    Returns, per server, the seconds until the answer, the seconds it kept working after
    answering, and the CPU seconds it used (answer and after-work).
    """
    datasets = read_datasets(source)
    clients = {"radserve": servers.radserve, "Orthanc": servers.orthanc}
    pids = dict(zip(clients, servers.server_pids, strict=True))
    times: dict[str, list[float]] = {name: [] for name in clients}
    after: dict[str, list[float]] = {name: [] for name in clients}
    cpu: dict[str, list[float]] = {name: [] for name in clients}
    for repeat in range(repeats + 1):  # the first repeat warms up
        names = list(clients) if repeat % 2 == 0 else list(reversed(clients))
        for name in names:
            study, series, frame = generate_uid(), generate_uid(), generate_uid()
            for ds in datasets:
                _set_uids(ds, study, series, frame)
            settle(servers)
            ticks = _cpu_ticks([pids[name]])
            started = time.perf_counter()
            clients[name].store(datasets)
            elapsed = _lap(started)
            busy = settle(servers)
            if repeat:
                times[name].append(elapsed)
                after[name].append(busy)
                cpu[name].append((_cpu_ticks([pids[name]]) - ticks) / _TICKS_PER_S)
    return times, after, cpu


def server_job(source: Path, servers: Servers, work: Path) -> dict[str, Any]:
    """One job inside the radserve server: STOW-RS, POST /jobs, wait until exported."""
    folder = fresh_copy(source, work)
    datasets = read_datasets(folder)
    shutil.rmtree(folder)
    servers.radserve.store(datasets)
    package = servers.predictor.package.manifest
    body = {
        "study_instance_uid": str(datasets[0].StudyInstanceUID),
        "series_instance_uid": str(datasets[0].SeriesInstanceUID),
        "model": f"{package.name}/{package.version}",
    }
    with httpx.Client(
        base_url=servers.radserve_url, headers=servers.radserve_headers, timeout=30
    ) as client:
        started = time.perf_counter()
        response = client.post("/jobs", json=body)
        response.raise_for_status()
        job_id = response.json()["id"]
        while True:
            job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
            if job["state"] in ("done", "failed"):
                break
            if time.perf_counter() - started > 300:
                raise SystemExit("the server job did not finish within 300 s")
            time.sleep(0.02)
    if job["state"] != "done":
        raise SystemExit(f"the server job failed: {job['error']}")
    return {"wall_s": _lap(started), "timings_s": job["timings_s"], "results": len(job["results"])}


def _dice(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> float:
    if set(a) != set(b):
        raise RuntimeError("the two label maps do not cover the same slices")
    x = np.stack([a[number] > 0 for number in sorted(a)])
    y = np.stack([b[number] > 0 for number in sorted(a)])
    total = int(x.sum()) + int(y.sum())
    return 1.0 if total == 0 else 2.0 * int((x & y).sum()) / total


# --- model --------------------------------------------------------------------------------


def newest_packages() -> list[Path]:
    """Package folders of the model, newest version first."""
    folders = [p for p in (REPO_ROOT / "models" / MODEL_NAME).iterdir() if p.is_dir()]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) if part.isdigit() else -1 for part in path.name.split("."))

    return sorted(folders, key=version, reverse=True)


def weights_difference(network: torch.nn.Module, package: ModelPackage) -> float:
    """Max |logit difference| between the network and the package's ONNX on one patch."""
    patch = package.manifest.inference.patch_size
    x = np.random.default_rng(0).random((1, 1, *patch), dtype=np.float32)
    session = ort.InferenceSession(str(package.model_path), providers=[CPU])
    with torch.inference_mode():
        expected = network(torch.from_numpy(x)).numpy()
    actual = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(actual - expected).max())


def choose_package(
    network: torch.nn.Module, requested: Path | None
) -> tuple[ModelPackage, float, bool]:
    """The requested package, else the newest one whose weights match the checkpoint's,
    else the newest; with the weights difference and whether it matches."""
    candidates = [requested] if requested is not None else newest_packages()
    loaded = [(load_model_package(p), p) for p in candidates]
    for package, _ in loaded:
        difference = weights_difference(network, package)
        if difference <= WEIGHTS_ATOL:
            return package, difference, True
    package = loaded[0][0]
    return package, weights_difference(network, package), False


# --- report -------------------------------------------------------------------------------


def machine() -> str:
    """The CPU, usable cores and library versions."""
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} usable CPUs, Python "
        f"{platform.python_version()}, ONNX Runtime {ort.__version__}, torch {torch.__version__}"
        f", MONAI {monai.__version__}, highdicom {hd.__version__}, pydicom {pydicom.__version__}"
    )


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _stage(runs: Sequence[Run], stage: str) -> float | None:
    values = [r.stages_s[stage] for r in runs if stage in r.stages_s]
    return statistics.median(values) if values else None


def side_numbers(runs: Sequence[Run]) -> dict[str, Any]:
    """Medians over the runs of one side."""
    totals = [r.total_s for r in runs]
    no_io = [r.total_s - r.stages_s["STOW"] - r.stages_s["export"] for r in runs]
    return {
        "total_s": _median(totals),
        "forward_s": _median([r.forward_s for r in runs]),
        "overhead_fraction": _median([(r.total_s - r.forward_s) / r.total_s for r in runs]),
        "without_stow_export_s": _median(no_io),
        "overhead_fraction_without_stow_export": _median(
            [(t - r.forward_s) / t for t, r in zip(no_io, runs, strict=True)]
        ),
        "sliding_window_overhead_s": _median([r.stages_s["inference"] - r.forward_s for r in runs]),
        "results": runs[0].results,
        "result_mb": runs[0].result_bytes / 1e6,
        "windows": runs[0].windows,
        "stages_s": {s: _stage(runs, s) for s in STAGES},
        "totals_s": totals,
    }


def _row(label: str, values: Sequence[float | None], fmt: str = "{:.3f}") -> str:
    cells = [fmt.format(v) if v is not None else "-" for v in values]
    a, b, ref = values
    ratios = [f"{ref / v:.2f}" if v and ref else "-" for v in (a, b)]
    return f"| {label} | {' | '.join(cells)} | {' | '.join(ratios)} |"


def print_case(case: CaseResult, orthanc_version: str) -> dict[str, Any]:
    """Print the tables of one case; return its numbers."""
    numbers: dict[str, Any] = {"instances": case.instances, "dice": case.dice}
    for side in SIDES:
        numbers[side] = side_numbers(case.runs[side])
    sides = [numbers[side] for side in SIDES]
    print(f"\n### {case.name} ({case.instances} instances)\n")
    print(
        "| stage (median, s) | radserve | radserve, SEG only | reference | "
        "reference / radserve | reference / SEG only |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for stage in STAGES:
        label = "STOW-RS ingest (radserve / Orthanc)" if stage == "STOW" else stage
        print(_row(label, [n["stages_s"][stage] for n in sides]))
    print(_row("**end to end**", [n["total_s"] for n in sides]))
    print(_row("without STOW and export", [n["without_stow_export_s"] for n in sides]))
    print(_row(f"forward passes ({sides[0]['windows']} windows)", [n["forward_s"] for n in sides]))
    print(
        _row(
            "sliding window outside the forward passes",
            [n["sliding_window_overhead_s"] for n in sides],
        )
    )
    overhead = " | ".join(f"{n['overhead_fraction']:.0%}" for n in sides)
    print(f"| overhead: (total - forward) / total | {overhead} | | |")
    overhead = " | ".join(f"{n['overhead_fraction_without_stow_export']:.0%}" for n in sides)
    print(f"| overhead without STOW and export | {overhead} | | |")
    outputs = " | ".join(f"{n['results']} ({n['result_mb']:.1f} MB)" for n in sides)
    print(f"| results written and exported | {outputs} | | |")
    stow = {k: _median(v) for k, v in case.stow_s.items()}
    rate = {k: case.instances / v for k, v in stow.items()}
    after = {k: _median(v) for k, v in case.stow_after_s.items()}
    cpu = {k: _median(v) for k, v in case.stow_cpu_s.items()}
    paired = _median(
        [o / r for r, o in zip(case.stow_s["radserve"], case.stow_s["Orthanc"], strict=True)]
    )
    numbers["stow"] = {
        "median_s": stow,
        "paired_ratio": paired,
        "instances_per_s": rate,
        "runs_s": case.stow_s,
        "busy_after_answer_s": after,
        "server_cpu_s": cpu,
    }
    print(
        f"\nSTOW-RS ingest alone ({len(case.stow_s['radserve'])} repeats, alternating): radserve "
        f"{stow['radserve']:.3f} s = {rate['radserve']:.0f} instances/s, Orthanc "
        f"{orthanc_version} {stow['Orthanc']:.3f} s = {rate['Orthanc']:.0f} instances/s; "
        f"radserve / Orthanc = {rate['radserve'] / rate['Orthanc']:.2f} (median of the ratios "
        f"within a repeat: {paired:.2f}). Still busy after the "
        f"answer: radserve {after['radserve']:.2f} s, Orthanc {after['Orthanc']:.2f} s; server "
        f"CPU per STOW (answer and after): radserve {cpu['radserve']:.2f} s, Orthanc "
        f"{cpu['Orthanc']:.2f} s"
    )
    busy = {side: _median([r.busy_after_stow_s for r in runs]) for side, runs in case.runs.items()}
    print(
        f"In the pipeline runs, servers still busy after the STOW-RS answer (waited out, not "
        f"counted): radserve {busy[RADSERVE]:.2f} s, Orthanc {busy[REFERENCE]:.2f} s"
    )
    totals = "; ".join(
        f"{side} {', '.join(f'{t:.2f}' for t in numbers[side]['totals_s'])}" for side in SIDES
    )
    print(
        f"Totals per run: {totals}. Label agreement radserve / reference (Dice, last run): "
        f"{case.dice:.4f}. read_image_series on the same files: {case.read_image_series_s:.3f} s."
    )
    for job in case.server_jobs:
        timings = ", ".join(f"{k} {v:.3f}" for k, v in job["timings_s"].items())
        print(
            f"Server job (POST /jobs to exported, {job['results']} results): "
            f"{job['wall_s']:.2f} s; recorded: {timings}"
        )
    r = case.radiomics
    print(
        f"Radiomics, once per case, not in the runs above (parameter set of the manifest, "
        f"{RADIOMICS_WORKERS} worker processes, warmed up): {r['features']:.0f} features of "
        f"{r['voxels']:.0f} segmented voxels in {r['radiomics_s']:.2f} s; the SR with them "
        f"{r['sr_with_features_s']:.2f} s and {r['sr_with_features_kb']:.0f} KB (without: "
        f"{r['sr_s']:.3f} s, {r['sr_kb']:.0f} KB)"
    )
    numbers["server_jobs"] = case.server_jobs
    numbers["read_image_series_s"] = case.read_image_series_s
    numbers["radiomics"] = case.radiomics
    return numbers


def main() -> None:
    """Run the benchmark and print the tables."""
    logging.basicConfig(level=logging.ERROR)
    # highdicom and pydicom warn about the source headers (e.g. an over-long Study ID)
    warnings.filterwarnings("ignore")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=120, help="slices of the full-size CT")
    parser.add_argument("--stow-repeats", type=int, default=7)
    parser.add_argument(
        "--server-jobs", type=int, default=1, help="jobs per case in the server, after a warm-up"
    )
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a training checkpoint for the reference (default: the package's own network, "
        "rebuilt from its training config and ONNX weights)",
    )
    parser.add_argument("--package", type=Path, default=None, help="default: the newest")
    parser.add_argument("--cases", default="demo,ct", help="comma-separated: demo, ct")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.checkpoint is not None:
        with tempfile.TemporaryDirectory() as tmp:
            snapshot = Path(tmp) / "checkpoint.pt"  # a training run may overwrite best.pt
            shutil.copyfile(args.checkpoint, snapshot)
            _, _, network = restore(snapshot)
        package, difference, matches = choose_package(network, args.package)
        reference_source = f"checkpoint {args.checkpoint}"
    else:
        package = load_model_package(args.package or newest_packages()[0])
        network = network_from_package(package.directory)
        difference = weights_difference(network, package)
        matches = difference <= WEIGHTS_ATOL
        reference_source = "the package's network rebuilt from its ONNX weights"
    print(f"Machine: {machine()}; {args.threads} threads for ONNX Runtime and torch")
    print(
        f"radserve: package {package.manifest.name} {package.manifest.version} "
        f"(sha256 {package.model_sha256[:12]}); reference: {reference_source}; "
        f"max |logit difference| on one patch {difference:.2e}: "
        + ("same weights" if matches else "DIFFERENT weights (same architecture)")
    )
    predictor = Predictor(
        package, runtime=RuntimeSettings(providers=(CPU,), intra_op_threads=args.threads)
    )
    reference = ReferencePipeline(network, package.manifest, threads=args.threads)
    started = time.perf_counter()
    numbers: dict[str, Any] = {
        "machine": machine(),
        "threads": args.threads,
        "package": f"{package.manifest.name} {package.manifest.version}",
        "same_weights": matches,
        "max_logit_difference": difference,
        "cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="radserve-pipeline-") as tmp:
        work = Path(tmp)
        (work / "orthanc").mkdir()
        with contextlib.ExitStack() as stack:
            orthanc_url, orthanc_pid = stack.enter_context(orthanc_server(work / "orthanc"))
            radserve_url, token, radserve_pid = stack.enter_context(
                radserve_server(
                    work / "radserve",
                    package,
                    threads=args.threads,
                    destination=f"{orthanc_url}/dicom-web",
                )
            )
            orthanc_version = httpx.get(f"{orthanc_url}/system").json()["Version"]
            headers = {"Authorization": f"Bearer {token}"}
            results_store = stack.enter_context(InstanceStore(work / "results-store"))
            servers = Servers(
                radserve=PacsClient(f"{radserve_url}/dicomweb", headers=headers),
                radserve_url=radserve_url,
                radserve_data=work / "radserve" / "data",
                server_pids=(radserve_pid, orthanc_pid),
                radserve_headers=headers,
                orthanc=PacsClient(f"{orthanc_url}/dicom-web"),
                orthanc_url=orthanc_url,
                results_store=results_store,
                predictor=predictor,
                radiomics=RadiomicsRunner(
                    resolve_parameter_set(
                        package.directory, package.manifest.radiomics_parameter_set or "default"
                    ),
                    pool=stack.enter_context(_radiomics_pool(RADIOMICS_WORKERS)),
                ),
                reference=reference,
                gate=ConformanceGate(GateMode.BLOCK),
            )
            cases: dict[str, Callable[[], Path]] = {
                "demo": lambda: DEMO_STUDY,
                "ct": lambda: build_uncompressed_ct(
                    TOTALSEG_DICOM, work / "ct-source", n_slices=args.slices
                ),
            }
            titles = {
                "demo": "a) bundled study, 143x161",
                "ct": f"b) full-size CT, 512x512 x {args.slices}",
            }
            results = []
            for key in args.cases.split(","):
                print(f"{titles[key]} ...", flush=True)
                source = cases[key]()
                results.append(run_case(titles[key], source, servers, work / key, args))
        print(f"\nMeasured in {time.perf_counter() - started:.0f} s.")
        for case in results:
            numbers["cases"][case.name] = print_case(case, orthanc_version)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(numbers, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
