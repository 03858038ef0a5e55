"""Benchmark: radserve's radiomics extraction against the stock PyRadiomics call.

The STS CT cases (``../shared/data/sts_ct/nifti``, NIfTI image + GTV mask) are extracted
with a parameter set (``default``: original, LoG 1/3/5 mm, wavelet; 1130 features) by

* stock: ``RadiomicsFeatureExtractor(params).execute(image, mask)``, one case after the
  other, as a PyRadiomics user runs it (diagnostics on, PyRadiomics' default), and again
  with ``additionalInfo: false``;
* radserve, serial: ``extract_features`` in this process, one case after the other;
* radserve, parallel: ``extract_cases`` over a process pool of ``--workers`` processes
  (each worker reads its case: file reading is included on this side only).

Images are read once before timing (except in the parallel run). Every feature of every
case is compared with the stock values (relative tolerance 1e-6) before any time is
reported. A cProfile of the serial run on ``--profile-cases`` cases shows where the
remaining time goes.

A second part (``--full-field N``, 0 to skip) measures where cropping matters most: the
real full-field CT of ``../shared/data/totalseg_ct`` (20 slices of 512x512) with N of the
organs of its reference label map as ROIs (spread over the sizes present), stock call per
organ against radserve per organ, and radserve extracting all N organs of the one label map
in one call on the worker pool (what the server does with a multi-organ model).

    .venv/bin/python bench/radiomics_speed.py [--cases 43] [--workers 2] [--params default]
        [--full-field 8]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import logging
import math
import pstats
import statistics
import time
from pathlib import Path

import numpy as np

from radserve.dicom_io import LabelMap, SegmentInfo, Volume, read_image_series, read_labelmap_file
from radserve.radiomics import (
    BatchOptions,
    CaseSpec,
    ExtractionOptions,
    ParameterSet,
    default_workers,
    extract_cases,
    extract_features,
    load_parameter_set,
    process_pool,
    read_case,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "sts_ct" / "nifti"
FULL_FIELD = ROOT.parent / "shared" / "data" / "totalseg_ct"
RTOL = 1e-6
# Where the serial radserve run spends its time, by the function that does the work.
_CATEGORIES = {
    "LaplacianRecursiveGaussianImageFilter": "LoG filter (SimpleITK)",
    "swtn": "wavelet transform (PyWavelets)",
    "calculate_glcm": "texture matrices (C)",
    "calculate_glrlm": "texture matrices (C)",
    "calculate_glszm": "texture matrices (C)",
    "calculate_gldm": "texture matrices (C)",
    "calculate_ngtdm": "texture matrices (C)",
}
# Functions counted with everything they call.
_CUMULATIVE = {
    "mesh_coefficients": "shape: mesh surface and volume, maximum diameters (O(n log n))",
}


def _cases(count: int) -> list[str]:
    return sorted(p.name for p in DATA.iterdir() if (p / "mask.nii.gz").exists())[:count]


def _load(case: str) -> tuple[Volume, LabelMap]:
    volume, labelmap = read_case(DATA / case / "image.nii.gz", DATA / case / "mask.nii.gz")
    volume = dataclasses.replace(volume, modality="CT")
    return volume, LabelMap(volume.with_array(labelmap.volume.array), labelmap.segments)


def _stock(
    parameter_set: ParameterSet, volume: Volume, labelmap: LabelMap, *, info: bool
) -> tuple[float, dict[str, float]]:
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    parameters = parameter_set.parameters()
    parameters.setdefault("setting", {})["additionalInfo"] = info
    extractor = RadiomicsFeatureExtractor(parameters)
    image, mask = volume.to_sitk(), labelmap.volume.to_sitk()
    start = time.perf_counter()
    result = extractor.execute(image, mask, label=1)
    elapsed = time.perf_counter() - start
    return elapsed, {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


def _compare(ours: dict[str, float], stock: dict[str, float]) -> float:
    """The largest relative difference; raises if a feature is missing or differs."""
    if set(ours) != set(stock):
        raise SystemExit(f"feature sets differ: {sorted(set(ours) ^ set(stock))[:5]}")
    worst = 0.0
    for name, value in stock.items():
        if not math.isclose(ours[name], value, rel_tol=RTOL, abs_tol=1e-12):
            raise SystemExit(f"{name}: radserve {ours[name]!r} != stock {value!r}")
        if value != ours[name]:
            worst = max(worst, abs(ours[name] - value) / abs(value))
    return worst


def _profile_breakdown(profile: cProfile.Profile, total: float) -> list[tuple[str, float]]:
    stats = pstats.Stats(profile)
    spent: dict[str, float] = {}
    for (_, _, function), (_, _, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        for marker, category in _CATEGORIES.items():
            if marker in function:
                spent[category] = spent.get(category, 0.0) + own
        for marker, category in _CUMULATIVE.items():
            if marker == function:
                spent[category] = spent.get(category, 0.0) + cumulative
    spent["everything else (PyRadiomics' Python, binning, cropping, I/O)"] = total - sum(
        spent.values()
    )
    return sorted(spent.items(), key=lambda item: -item[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=43)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--params", default="default")
    parser.add_argument("--profile-cases", type=int, default=5)
    parser.add_argument("--full-field", type=int, default=8, help="organs of the full-field CT")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    parameter_set = load_parameter_set(args.params)
    if args.full_field:
        full_field(parameter_set, rois=args.full_field, workers=args.workers)
    if args.cases == 0:
        return
    names = _cases(args.cases)
    print(f"{len(names)} STS cases, parameter set {parameter_set.identifier}")

    stock_info, stock_plain, serial, worst, voxels = [], [], [], 0.0, []
    features = 0
    serial_values: dict[str, dict[str, float]] = {}
    for name in names:
        volume, labelmap = _load(name)
        voxels.append(int((labelmap.volume.array == 1).sum()))
        start = time.perf_counter()
        (ours,) = extract_features(volume, labelmap, parameter_set=parameter_set)
        serial.append(time.perf_counter() - start)
        serial_values[name] = ours.values()
        elapsed, stock = _stock(parameter_set, volume, labelmap, info=True)
        stock_info.append(elapsed)
        elapsed, stock_no_info = _stock(parameter_set, volume, labelmap, info=False)
        stock_plain.append(elapsed)
        worst = max(worst, _compare(ours.values(), stock), _compare(ours.values(), stock_no_info))
        features += len(stock)
        print(
            f"  {name}: {voxels[-1]:7d} voxels  stock {stock_info[-1]:6.2f} s "
            f"(no diagnostics {stock_plain[-1]:6.2f} s)  radserve {serial[-1]:6.2f} s"
        )

    specs = [CaseSpec(n, DATA / n / "image.nii.gz", DATA / n / "mask.nii.gz") for n in names]
    start = time.perf_counter()
    with process_pool(args.workers) as pool:
        options = BatchOptions(workers=args.workers, pool=pool, modality="CT")
        results = extract_cases(specs, parameter_set=parameter_set, options=options)
    parallel_wall = time.perf_counter() - start
    for name, result in zip(names, results, strict=True):
        if result.error is not None:
            raise SystemExit(f"{name}: {result.error}")
        if result.segments[0].values() != serial_values[name]:
            raise SystemExit(f"{name}: parallel and serial values differ")

    n = len(names)
    per_roi = {
        "stock execute (diagnostics on, PyRadiomics' default)": sum(stock_info) / n,
        "stock execute, additionalInfo: false": sum(stock_plain) / n,
        "radserve, serial (1 process)": sum(serial) / n,
        f"radserve, {args.workers} worker processes (wall / ROI)": parallel_wall / n,
    }
    reference = per_roi["stock execute (diagnostics on, PyRadiomics' default)"]
    print(
        f"\nvalues: {features} features compared, all within rtol {RTOL} "
        f"(largest relative difference {worst:.2e})"
    )
    print("\n| run | mean per ROI | median per ROI | speedup vs stock |")
    print("|---|---|---|---|")
    medians = {
        "stock execute (diagnostics on, PyRadiomics' default)": statistics.median(stock_info),
        "stock execute, additionalInfo: false": statistics.median(stock_plain),
        "radserve, serial (1 process)": statistics.median(serial),
    }
    for label, mean in per_roi.items():
        median = medians.get(label)
        shown = f"{median:.2f} s" if median is not None else "-"
        print(f"| {label} | {mean:.2f} s | {shown} | {reference / mean:.1f}x |")

    profile_names = names[: args.profile_cases]
    profile = cProfile.Profile()
    total = 0.0
    for name in profile_names:
        volume, labelmap = _load(name)
        start = time.perf_counter()
        profile.enable()
        extract_features(volume, labelmap, parameter_set=parameter_set)
        profile.disable()
        total += time.perf_counter() - start
    print(f"\nradserve serial time by activity ({len(profile_names)} cases, {total:.1f} s):")
    print("| activity | share |")
    print("|---|---|")
    for category, seconds in _profile_breakdown(profile, total):
        print(f"| {category} | {100 * seconds / total:.0f} % |")


def full_field(parameter_set: ParameterSet, *, rois: int, workers: int) -> None:
    """Per-organ timings on the real full-field CT (see the module docstring)."""
    volume = read_image_series(FULL_FIELD / "dicom").volume
    names = {int(k): v for k, v in json.loads((FULL_FIELD / "labels.json").read_text()).items()}
    organs = read_labelmap_file(
        FULL_FIELD / "reference_seg.nii.gz", reference=volume, segment_names=names
    )
    labels = np.asarray(organs.volume.array)
    counts = np.bincount(labels.ravel().astype(np.int64))
    present = sorted((int(counts[k]), k) for k in np.flatnonzero(counts) if k > 0)
    present = [(n, k) for n, k in present if n >= 500]  # a few hundred voxels at least
    picks = sorted({present[round(i * (len(present) - 1) / max(1, rois - 1))] for i in range(rois)})
    print(
        f"\nfull-field CT {volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]} "
        f"({volume.spacing_mm[0]:.2f} x {volume.spacing_mm[1]:.2f} x {volume.spacing_mm[2]:.2f} mm)"
        f", {len(picks)} organs of the reference label map"
    )
    print("| organ | voxels | stock | radserve | speedup |")
    print("|---|---:|---:|---:|---:|")
    stock_total = serial_total = 0.0
    serial_values: dict[int, dict[str, float]] = {}
    for voxels, label in picks:
        single = LabelMap(
            organs.volume.with_array((labels == label).astype(np.uint8)),
            (SegmentInfo(1, names[label]),),
        )
        start = time.perf_counter()
        (ours,) = extract_features(volume, single, parameter_set=parameter_set)
        serial = time.perf_counter() - start
        stock_s, stock = _stock(parameter_set, volume, single, info=True)
        _compare(ours.values(), stock)
        serial_values[label] = ours.values()
        stock_total += stock_s
        serial_total += serial
        print(
            f"| {names[label]} | {voxels} | {stock_s:.2f} s | {serial:.2f} s | "
            f"{stock_s / serial:.1f}x |"
        )
    wanted = [k for _, k in picks]
    together = LabelMap(
        organs.volume.with_array(np.where(np.isin(labels, wanted), labels, 0)),
        tuple(s for s in organs.segments if s.label in wanted),
    )
    start = time.perf_counter()
    with process_pool(workers) as pool:
        results = extract_features(
            volume,
            together,
            parameter_set=parameter_set,
            options=ExtractionOptions(workers=workers, pool=pool),
        )
    parallel = time.perf_counter() - start
    for segment in results:
        if segment.values() != serial_values[segment.label]:
            raise SystemExit(f"{names[segment.label]}: one-call and per-organ values differ")
    n = len(picks)
    print(
        f"\nper ROI: stock {stock_total / n:.2f} s, radserve serial {serial_total / n:.2f} s "
        f"({stock_total / serial_total:.1f}x), radserve all organs in one call on {workers} "
        f"workers {parallel / n:.2f} s wall ({stock_total / parallel:.1f}x); every value equal "
        f"to the stock call within rtol {RTOL}"
    )


if __name__ == "__main__":
    main()
