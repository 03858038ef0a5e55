"""The end-to-end demo on the bundled study: DICOM in, SEG + SR + overlay SC out, checked.

Until a model package is available, the segmentation comes from the study's own RTSTRUCT
(the radiologist's tumour contour), so the demo exercises every DICOM step of the pipeline
on real data: series reconstruction, mask rasterisation, measurements, the three writers, a
read-back of the SEG in patient space, and the DICOM validator when it is installed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from radserve.dicom_io import (
    AlgorithmIdentity,
    DicomIOError,
    ImageSeries,
    LabelMap,
    SegmentMeasurements,
    build_results,
    iter_instances,
    key_slice,
    read_image_series,
    read_rtstruct,
    read_seg,
    render_slice,
    write_png,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced and checked."""

    labelmap: LabelMap
    measurements: list[SegmentMeasurements]
    written: dict[str, list[Path]]
    seg_round_trip_equal: bool
    validator_errors: dict[str, int] | None
    png: Path


def _find_rtstruct(study_dir: Path) -> Dataset:
    for ds in iter_instances([study_dir], stop_before_pixels=True):
        if str(ds.get("Modality", "")) == "RTSTRUCT":
            return ds
    raise DicomIOError(f"no RTSTRUCT found under {study_dir}")


def _identity_from(rtstruct: Dataset) -> AlgorithmIdentity:
    digest = hashlib.sha256(str(rtstruct.SOPInstanceUID).encode()).hexdigest()
    return AlgorithmIdentity(name="reference-contour", version="1", model_sha256=digest)


def _validate(paths: list[Path]) -> int | None:
    exe = shutil.which("dciodvfy")
    if exe is None:
        return None
    errors = 0
    for path in paths:
        proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, check=False)
        errors += sum(line.startswith("Error") for line in proc.stderr.splitlines())
    return errors


def run_demo(study_dir: Path, out_dir: Path) -> DemoResult:
    """Run the DICOM pipeline on a study folder holding a CT series and an RTSTRUCT."""
    series: ImageSeries = read_image_series(study_dir / "image")
    volume = series.volume
    logger.info(
        "read series: %d slices of %dx%d, spacing %s mm",
        volume.shape[0],
        volume.shape[1],
        volume.shape[2],
        tuple(round(s, 3) for s in volume.spacing_mm),
    )
    rtstruct = _find_rtstruct(study_dir)
    labelmap = read_rtstruct(rtstruct, volume)
    algorithm = _identity_from(rtstruct)
    results = build_results(series, labelmap, algorithm=algorithm)
    written = results.save(out_dir)
    labelmap.volume.write_nifti(out_dir / "labelmap.nii.gz")

    back = read_seg(written["SEG"][0], reference=volume)
    round_trip_equal = bool(np.array_equal(back.volume.array > 0, labelmap.volume.array > 0))

    errors = {kind: _validate(paths) for kind, paths in written.items()}
    validator = None if any(v is None for v in errors.values()) else errors

    k = key_slice(labelmap)
    png = out_dir / "key_slice.png"
    write_png(render_slice(volume, labelmap, k, caption=f"slice {k + 1}"), png)
    return DemoResult(
        labelmap=labelmap,
        measurements=results.measurements,
        written=written,
        seg_round_trip_equal=round_trip_equal,
        validator_errors={k: v for k, v in validator.items() if v is not None}
        if validator
        else None,
        png=png,
    )
