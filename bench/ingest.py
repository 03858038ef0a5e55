"""Ingest benchmark: a DICOM series to a Volume, radserve against dcm2niix and SimpleITK.

Cases:

(a) an uncompressed CT of 300 slices of 512x512, built in a temporary folder from the 20 real
    JPEG 2000 slices of ``../shared/data/totalseg_ct`` (decompressed, repeated, shifted along
    the slice normal, with new SOP Instance UIDs and Instance Numbers: a valid series);
(b) the real 20-slice JPEG 2000 lossless CT in ``../shared/data/totalseg_ct``.

Methods: ``radserve.dicom_io.reading.series.read_series`` (headers first, uncompressed pixels read
from the files straight into the volume; compressed ones decoded in parallel), for (a) also
the whole-instance path (``iter_instances`` then ``volume_from_instances``: every Pixel Data
read into memory first), for (b) the same with a serial decode (``workers=1``),
``dcm2niix -z n`` run as a subprocess writing into a temporary folder, and SimpleITK's
``ImageSeriesReader``. For (b) the decode step alone is also timed, serial against parallel.
For (a) the peak of Python-traced memory (``tracemalloc``: NumPy arrays and pydicom's bytes)
of both radserve paths is measured once, outside the timed rounds. Each time is the median
of ``--repeats`` rounds after one untimed warm-up round (page cache, worker processes); every
round runs all methods of a case in a rotating order, so a changing background load falls
on all of them alike. This is a benchmark, not a test: it asserts nothing and prints a
Markdown table.

Run: ``.venv/bin/python bench/ingest.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import CTImageStorage, generate_uid

from radserve.dicom_io import (
    decode_pixel_arrays,
    iter_instances,
    read_series,
    volume_from_instances,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RADSERVE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
TOTALSEG_DICOM = SHARED_DATA / "totalseg_ct" / "dicom"


@dataclass(frozen=True)
class Timing:
    """The median and spread of repeated runs of one method on one case."""

    case: str
    method: str
    median_s: float
    min_s: float
    max_s: float


def build_uncompressed_ct(source: Path, out: Path, *, n_slices: int = 300) -> Path:
    """Write a valid ``n_slices`` uncompressed CT series built from the slices in ``source``."""
    slices = [pydicom.dcmread(path) for path in sorted(source.iterdir())]
    for ds in slices:
        ds.decompress()  # to Explicit VR Little Endian
    normal = np.cross(
        np.asarray(slices[0].ImageOrientationPatient[:3], dtype=float),
        np.asarray(slices[0].ImageOrientationPatient[3:], dtype=float),
    )
    slices.sort(key=lambda ds: float(np.dot(ds.ImagePositionPatient, normal)))
    first = np.asarray(slices[0].ImagePositionPatient, dtype=float)
    spacing_mm = float(
        np.dot(np.asarray(slices[1].ImagePositionPatient, dtype=float) - first, normal)
    )
    series_uid = generate_uid()
    study_uid = str(slices[0].get("StudyInstanceUID", "") or "") or generate_uid()
    out.mkdir(parents=True, exist_ok=True)
    for k in range(n_slices):
        ds = copy.deepcopy(slices[k % len(slices)])
        sop_uid = generate_uid()
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPClassUID = CTImageStorage  # the real slices have a blank one
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.StudyInstanceUID = study_uid  # blank in the real slices
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = k + 1
        position = first + k * spacing_mm * normal
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.SliceLocation = round(float(np.dot(position, normal)), 4)
        ds.save_as(out / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    return out


def time_interleaved(
    methods: dict[str, Callable[[], object]], repeats: int
) -> dict[str, list[float]]:
    """Run every method once per round, in a rotating order, after one warm-up round.

    Interleaving makes a changing background load (other processes on a shared machine)
    fall on all methods alike, so their ratios stay meaningful.
    """
    names = list(methods)
    for name in names:
        methods[name]()  # warm-up: page cache, worker processes
    runs: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            methods[name]()
            runs[name].append(time.perf_counter() - start)
    return runs


def _dcm2niix_exe() -> str:
    beside = Path(sys.executable).parent / "dcm2niix"
    exe = str(beside) if beside.exists() else shutil.which("dcm2niix")
    if exe is None:
        raise SystemExit("dcm2niix not found (pip install dcm2niix)")
    return exe


def run_dcm2niix(folder: Path) -> None:
    """Convert ``folder`` to an uncompressed NIfTI in a new temporary folder."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [_dcm2niix_exe(), "-z", "n", "-o", out, str(folder)],
            check=True,
            capture_output=True,
        )
        if not list(Path(out).glob("*.nii")):
            raise RuntimeError("dcm2niix wrote no NIfTI")


def run_simpleitk(folder: Path) -> None:
    """Read ``folder`` with SimpleITK's ImageSeriesReader (GDCM)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    sitk.GetArrayViewFromImage(reader.Execute())


def run_radserve_serial(folder: Path) -> None:
    """``read_series`` with the pixel decode forced to one process."""
    serial = functools.partial(decode_pixel_arrays, workers=1)
    with mock.patch("radserve.dicom_io.reading.pixel_stack.decode_pixel_arrays", serial):
        read_series(folder)


def run_radserve_whole(folder: Path) -> None:
    """The whole-instance path: every instance read with its Pixel Data, then stacked."""
    volume_from_instances(list(iter_instances([folder])))


def peak_traced_mb(method: Callable[[], object]) -> float:
    """The peak of memory traced by ``tracemalloc`` while ``method`` runs, in MB."""
    tracemalloc.start()
    try:
        method()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def machine() -> str:
    """One line describing this machine and the library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    dcm2niix_version = (
        subprocess.run([_dcm2niix_exe(), "-v"], capture_output=True, text=True, check=False)
        .stdout.strip()
        .splitlines()
    )
    return (
        f"{cpu}, {usable} usable CPUs, Python {platform.python_version()}, "
        f"pydicom {pydicom.__version__}, SimpleITK {sitk.Version.VersionString()}, "
        f"dcm2niix {dcm2niix_version[-1] if dcm2niix_version else '?'}, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )


def main() -> None:
    """Run the benchmark and print the results table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not TOTALSEG_DICOM.is_dir():
        raise SystemExit(f"shared data not found at {TOTALSEG_DICOM}")

    timings: list[Timing] = []
    all_runs: dict[tuple[str, str], list[float]] = {}

    def record(case: str, methods: dict[str, Callable[[], object]]) -> None:
        for method, runs in time_interleaved(methods, args.repeats).items():
            all_runs[(case, method)] = runs
            timings.append(Timing(case, method, statistics.median(runs), min(runs), max(runs)))
            print(f"  {case:<14} {method:<32} {statistics.median(runs):7.3f} s", file=sys.stderr)

    start = time.perf_counter()
    instances = list(iter_instances([TOTALSEG_DICOM]))
    decode_pixel_arrays(instances)
    pool_start_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        ct300 = build_uncompressed_ct(TOTALSEG_DICOM, Path(tmp) / "ct300")
        record(
            "a) CT300 raw",
            {
                "radserve read_series": lambda: read_series(ct300),
                "radserve whole instances": lambda: run_radserve_whole(ct300),
                "dcm2niix -z n": lambda: run_dcm2niix(ct300),
                "SimpleITK ImageSeriesReader": lambda: run_simpleitk(ct300),
            },
        )
        peaks_mb = {
            "read_series": peak_traced_mb(lambda: read_series(ct300)),
            "whole instances": peak_traced_mb(lambda: run_radserve_whole(ct300)),
        }
    record(
        "b) CT20 J2K",
        {
            "radserve read_series": lambda: read_series(TOTALSEG_DICOM),
            "radserve read_series, workers=1": lambda: run_radserve_serial(TOTALSEG_DICOM),
            "dcm2niix -z n": lambda: run_dcm2niix(TOTALSEG_DICOM),
            "SimpleITK ImageSeriesReader": lambda: run_simpleitk(TOTALSEG_DICOM),
            "decode only, workers=1": lambda: decode_pixel_arrays(instances, workers=1),
            "decode only, parallel": lambda: decode_pixel_arrays(instances),
        },
    )

    print(f"Machine: {machine()}\n")
    print(f"First parallel decode in this process (starts the worker pool): {pool_start_s:.2f} s")
    print(
        "Peak traced memory, (a): "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in peaks_mb.items())
        + " (the volume itself: 157 MB)\n"
    )
    print("| case | method | median (s) | min-max (s) | vs dcm2niix | vs SimpleITK | vs serial |")
    print("|---|---|---:|---:|---:|---:|---:|")
    by_key = {(t.case, t.method): t.median_s for t in timings}
    serial_of = {
        "radserve read_series": "radserve read_series, workers=1",
        "decode only, parallel": "decode only, workers=1",
    }
    for t in timings:
        if t.method.startswith("decode only"):
            vs_dcm2niix = vs_simpleitk = "-"
        else:
            vs_dcm2niix = f"{t.median_s / by_key[(t.case, 'dcm2niix -z n')]:.2f}"
            vs_simpleitk = f"{t.median_s / by_key[(t.case, 'SimpleITK ImageSeriesReader')]:.2f}"
        serial = by_key.get((t.case, serial_of.get(t.method, "")))
        vs_serial = f"{serial / t.median_s:.2f}x faster" if serial else "-"
        print(
            f"| {t.case} | {t.method} | {t.median_s:.3f} | {t.min_s:.3f}-{t.max_s:.3f} | "
            f"{vs_dcm2niix} | {vs_simpleitk} | {vs_serial} |"
        )
    print(
        "\nRatios vs dcm2niix / SimpleITK are time / baseline time (<= 1.0: radserve is as fast "
        "or faster); vs serial is serial time / parallel time."
    )
    print(
        "\nPaired ratios: time / baseline time within each round (the methods of a round run "
        "back to back, so a background load that changes between rounds cancels out):\n"
    )
    print("| case | method | baseline | median ratio | quartiles | min-max |")
    print("|---|---|---|---:|---:|---:|")
    for case, method in (
        ("a) CT300 raw", "radserve read_series"),
        ("a) CT300 raw", "radserve whole instances"),
        ("b) CT20 J2K", "radserve read_series"),
    ):
        for baseline in ("dcm2niix -z n", "SimpleITK ImageSeriesReader"):
            ratios = [
                a / b
                for a, b in zip(all_runs[(case, method)], all_runs[(case, baseline)], strict=True)
            ]
            q1, _, q3 = (
                statistics.quantiles(ratios, n=4, method="inclusive")
                if len(ratios) > 1
                else ratios * 3
            )
            print(
                f"| {case} | {method} | {baseline} | {statistics.median(ratios):.2f} | "
                f"{q1:.2f}-{q3:.2f} | {min(ratios):.2f}-{max(ratios):.2f} |"
            )


if __name__ == "__main__":
    main()
