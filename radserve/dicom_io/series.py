"""Grouping instances into series and building a :class:`Volume` from one series."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from radserve.dicom_io.errors import (
    DuplicatePositionError,
    MissingSlicesError,
    MixedOrientationError,
    NotAVolumeError,
)
from radserve.dicom_io.reading import decode_pixel_arrays, iter_instances
from radserve.dicom_io.volume import Volume


def group_series(instances: Iterable[Dataset]) -> dict[str, list[Dataset]]:
    """Group instances by Series Instance UID."""
    groups: dict[str, list[Dataset]] = defaultdict(list)
    for ds in instances:
        groups[str(ds.get("SeriesInstanceUID", ""))].append(ds)
    return dict(groups)


def volume_from_instances(instances: Sequence[Dataset]) -> Volume:
    """Build a volume from the single-frame instances of one series."""
    slices = [ds for ds in instances if "ImagePositionPatient" in ds and "PixelData" in ds]
    if len(slices) < 2:
        raise NotAVolumeError("a volume needs at least two slices with geometry")
    iop = np.asarray(slices[0].ImageOrientationPatient, dtype=float)
    for ds in slices:
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, dtype=float), iop, atol=1e-4):
            raise MixedOrientationError("slices have different Image Orientation (Patient)")
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.asarray([ds.ImagePositionPatient for ds in slices], dtype=float)
    order = np.argsort(positions @ normal)
    slices = [slices[i] for i in order]
    positions = positions[order]
    gaps = np.diff(positions @ normal)
    if np.any(gaps < 1e-3):
        raise DuplicatePositionError("two or more slices share the same position")
    if not np.allclose(gaps, gaps.mean(), rtol=0.01, atol=0.01):
        raise MissingSlicesError("slice spacing is not uniform: slices are missing")
    ps = [float(v) for v in slices[0].PixelSpacing]
    arrays = []
    for ds, stored in zip(slices, decode_pixel_arrays(slices), strict=True):
        pixels = stored.astype(np.float32)
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        arrays.append(pixels * slope + intercept)
    array = np.stack(arrays)
    direction = np.column_stack([row_dir, col_dir, normal])
    return Volume(
        array=array,
        spacing_mm=(ps[1], ps[0], float(gaps.mean())),
        origin_mm=(float(positions[0][0]), float(positions[0][1]), float(positions[0][2])),
        direction=direction,
        frame_of_reference_uid=str(slices[0].get("FrameOfReferenceUID", "")) or None,
        study_instance_uid=str(slices[0].get("StudyInstanceUID", "")) or None,
        series_instance_uid=str(slices[0].get("SeriesInstanceUID", "")) or None,
        sop_instance_uids=tuple(str(ds.SOPInstanceUID) for ds in slices),
        modality=str(slices[0].get("Modality", "")) or None,
        sop_class_uid=str(slices[0].get("SOPClassUID", "")) or None,
    )


@dataclass(frozen=True)
class ImageSeries:
    """A volume and the DICOM headers of its source instances.

    Attributes:
        volume: The reconstructed volume.
        headers: The source instances in slice order (``volume.array[k]`` comes from
            ``headers[k]``), without pixel data; for an enhanced multi-frame source, the one
            instance.
    """

    volume: Volume
    headers: tuple[Dataset, ...]


def _strip_pixels(ds: Dataset) -> Dataset:
    header = Dataset(ds)  # shallow copy of the elements
    if hasattr(ds, "file_meta"):
        header.file_meta = ds.file_meta
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in header:
            del header[keyword]
    return header


def read_image_series(path: str | Path) -> ImageSeries:
    """Read the one image series under ``path`` (folder, file, or zip) with its headers."""
    groups = group_series(ds for ds in iter_instances([path]) if "PixelData" in ds)
    if len(groups) != 1:
        raise NotAVolumeError(f"expected one image series, found {len(groups)}")
    (instances,) = groups.values()
    volume = volume_from_instances(instances)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in instances}
    headers = tuple(_strip_pixels(by_uid[uid]) for uid in volume.sop_instance_uids)
    return ImageSeries(volume=volume, headers=headers)


def read_series(path: str | Path) -> Volume:
    """Read the one image series under ``path`` (folder, file, or zip) as a volume."""
    return read_image_series(path).volume
