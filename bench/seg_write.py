"""Benchmark: DICOM SEG writing, radserve's ``write_seg`` against highdicom's default path.

The source is realistic: the 20 real CT slices of ``totalseg_ct`` (512x512) repeated to 300
slices with consecutive positions and new UIDs. Five smooth blob segments span most of the
slices, as organ or muscle masks from a multi-organ model do. Both writers get the same label
map and segment descriptions; the run checks that both SEGs hold the same frames and pixel
data, then prints the median of several runs:

    .venv/bin/python bench/seg_write.py [--runs 5]
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from radserve.dicom_io import (
    AlgorithmIdentity,
    ImageSeries,
    LabelMap,
    SegmentInfo,
    Volume,
    derive_uid,
    read_image_series,
    write_seg,
)

SHARED_DATA = Path(
    os.environ.get("RADSERVE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
DATA = SHARED_DATA / "totalseg_ct" / "dicom"
SLICES = 300
ALGORITHM = AlgorithmIdentity(name="bench-organs", version="1.0.0", model_sha256="0" * 64)


def build_source(slices: int = SLICES) -> ImageSeries:
    """The real 20-slice CT repeated to ``slices`` slices with new positions and UIDs."""
    real = read_image_series(DATA)
    step = real.volume.spacing_mm[2]
    origin = np.asarray(real.volume.origin_mm)
    study, series = derive_uid("bench study"), derive_uid("bench series")
    headers = []
    for k in range(slices):
        header = copy.deepcopy(real.headers[k % len(real.headers)])
        position = origin + real.volume.direction[:, 2] * step * k
        header.ImagePositionPatient = [f"{v:.6f}" for v in position]
        header.SliceLocation = f"{position[2]:.6f}"
        header.InstanceNumber = k + 1
        header.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        header.SOPInstanceUID = derive_uid("bench instance", str(k))
        header.StudyInstanceUID, header.SeriesInstanceUID = study, series
        headers.append(header)
    array = np.tile(real.volume.array.astype(np.int16), (slices // real.volume.shape[0] + 1, 1, 1))
    volume = Volume(
        array=array[:slices],
        spacing_mm=real.volume.spacing_mm,
        origin_mm=real.volume.origin_mm,
        direction=real.volume.direction,
        frame_of_reference_uid=real.volume.frame_of_reference_uid,
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uids=tuple(str(h.SOPInstanceUID) for h in headers),
        modality="CT",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
    )
    return ImageSeries(volume=volume, headers=tuple(headers))


def build_labelmap(volume: Volume, segments: int = 5) -> LabelMap:
    """Five smooth, elongated blobs, each spanning most of the slices."""
    k, j, i = np.ogrid[: volume.shape[0], : volume.shape[1], : volume.shape[2]]
    array = np.zeros(volume.shape, dtype=np.uint8)
    for s in range(segments):
        z = (k - volume.shape[0] / 2) / (0.45 * volume.shape[0] - 5 * s)
        wobble = 1 + 0.15 * np.sin(k / 9.0 + s)  # radius varying along the body axis
        y = (j - (150 + 50 * s)) / (60 * wobble)
        x = (i - (130 + 60 * s)) / (40 * wobble)
        array[z**2 + y**2 + x**2 <= 1] = s + 1
    infos = tuple(SegmentInfo(label=s + 1, name=f"blob {s + 1}") for s in range(segments))
    return LabelMap(volume=volume.with_array(array), segments=infos)


def highdicom_default(source: ImageSeries, labelmap: LabelMap, reference: Dataset) -> Dataset:
    """highdicom's default constructor with the same metadata as ``reference``."""
    return hd.seg.Segmentation(
        source_images=list(source.headers),
        pixel_array=labelmap.volume.array,
        segmentation_type="BINARY",
        segment_descriptions=[
            hd.seg.SegmentDescription.from_dataset(item) for item in reference.SegmentSequence
        ],
        series_instance_uid=reference.SeriesInstanceUID,
        series_number=int(reference.SeriesNumber),
        sop_instance_uid=reference.SOPInstanceUID,
        instance_number=1,
        manufacturer=reference.Manufacturer,
        manufacturer_model_name=reference.ManufacturerModelName,
        software_versions=reference.SoftwareVersions,
        device_serial_number=reference.DeviceSerialNumber,
    )


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def timed(function: Callable[[], Dataset], runs: int) -> tuple[list[float], list[float]]:
    """Seconds to build, and to build and encode to bytes, over ``runs`` runs (after warm-up)."""
    encode(function())
    build, total = [], []
    for _ in range(runs):
        start = time.perf_counter()
        ds = function()
        built = time.perf_counter()
        encode(ds)
        build.append(built - start)
        total.append(time.perf_counter() - start)
    return build, total


def same_content(ours: Dataset, theirs: Dataset) -> bool:
    """Same frames (position, source, segment) and identical pixel data."""

    def frames(ds: Dataset) -> list[tuple[object, ...]]:
        return [
            (
                tuple(item.PlanePositionSequence[0].ImagePositionPatient),
                item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID,
                item.SegmentIdentificationSequence[0].ReferencedSegmentNumber,
                tuple(item.FrameContentSequence[0].DimensionIndexValues),
            )
            for item in ds.PerFrameFunctionalGroupsSequence
        ]

    return frames(ours) == frames(theirs) and ours.PixelData == theirs.PixelData


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    source = build_source()
    labelmap = build_labelmap(source.volume)
    ours = write_seg(source, labelmap, algorithm=ALGORITHM)
    theirs = highdicom_default(source, labelmap, ours)
    reread = pydicom.dcmread(io.BytesIO(encode(ours)))
    assert same_content(reread, theirs), "write_seg and highdicom disagree"
    print(f"{SLICES} slices x {len(labelmap.segments)} segments, {ours.NumberOfFrames} frames")
    fast = timed(lambda: write_seg(source, labelmap, algorithm=ALGORITHM), args.runs)
    slow = timed(lambda: highdicom_default(source, labelmap, ours), args.runs)
    for label, index in (("build", 0), ("build + encode", 1)):
        a, b = statistics.median(fast[index]), statistics.median(slow[index])
        print(f"{label:>15}: write_seg {a:.3f} s, highdicom default {b:.3f} s, {b / a:.1f}x")


if __name__ == "__main__":
    main()
