"""Per-segment measurements of a label map on its source image: volume and intensity statistics.

These are the measurements every result reports (the DICOM SR TID 1500 writer puts them in one
measurement group per segment); radiomic features come from :mod:`radserve.radiomics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from radserve.dicom_io.errors import MeasurementError
from radserve.dicom_io.masks.labelmap import LabelMap
from radserve.dicom_io.volume import Volume


@dataclass(frozen=True)
class SegmentMeasurements:
    """Volume and intensity statistics of one segment.

    Attributes:
        label: The segment's value in the label map.
        voxel_count: Number of voxels in the segment.
        volume_mm3: ``voxel_count`` times the voxel volume.
        mean: Mean image value in the segment, in modality units (HU for CT).
        minimum: Smallest image value in the segment.
        maximum: Largest image value in the segment.
        std: Population standard deviation (``ddof=0``, as NumPy, PyRadiomics and IBSI) of the
            image values in the segment.
    """

    label: int
    voxel_count: int
    volume_mm3: float
    mean: float
    minimum: float
    maximum: float
    std: float

    def __post_init__(self) -> None:
        if self.voxel_count < 1:
            raise ValueError(f"segment {self.label}: a measured segment has at least one voxel")
        values = (self.volume_mm3, self.mean, self.minimum, self.maximum, self.std)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"segment {self.label}: measurements must be finite numbers")


def check_same_grid(image: Volume, labelmap: LabelMap) -> None:
    """Raise :class:`MeasurementError` unless the label map lies on the image's voxel grid."""
    grid = labelmap.volume
    if image.shape != grid.shape:
        raise MeasurementError(
            f"label map shape {grid.shape} does not match image shape {image.shape}"
        )
    if not image.same_grid(grid):
        raise MeasurementError(
            "label map geometry (spacing, origin or direction) does not match the image; "
            "resample it onto the image grid first"
        )


def measure_segments(image: Volume, labelmap: LabelMap) -> list[SegmentMeasurements]:
    """Measure every segment of ``labelmap`` that has at least one voxel.

    All segments are measured together over the foreground voxels (``np.bincount`` for counts
    and moments, unbuffered ``np.minimum.at`` / ``np.maximum.at`` for extremes), so the cost is
    one scan of the volume plus work proportional to the number of foreground voxels.

    Args:
        image: The source image, in modality units (HU for CT).
        labelmap: A label map on the same grid as ``image``.

    Returns:
        One :class:`SegmentMeasurements` per present segment, in ``labelmap.segments`` order.
        Label values without a :class:`~radserve.dicom_io.masks.labelmap.SegmentInfo` are ignored.

    Raises:
        MeasurementError: The label map is not on the image grid or has negative labels, or
            the image has non-finite values inside a segment.
    """
    check_same_grid(image, labelmap)
    labels_all = np.asarray(labelmap.volume.array).ravel()
    foreground = labels_all != 0
    labels = labels_all[foreground]
    if labels.size and int(labels.min()) < 0:
        raise MeasurementError("label map holds negative labels")
    labels = labels.astype(np.intp, copy=False)
    values: npt.NDArray[np.float64] = np.asarray(image.array).ravel()[foreground].astype(np.float64)
    if not np.isfinite(values).all():
        raise MeasurementError("the image has NaN or infinite values inside the segments")
    wanted = [s.label for s in labelmap.segments]
    size = max([0, *wanted, int(labels.max()) if labels.size else 0]) + 1

    counts = np.bincount(labels, minlength=size)
    sums = np.bincount(labels, weights=values, minlength=size)
    present = [label for label in wanted if counts[label] > 0]
    if not present:
        return []
    means = np.divide(sums, counts, out=np.zeros(size), where=counts > 0)
    # Two-pass variance: stable for CT values around -1000 with thousands of voxels.
    squared = means[labels]
    np.subtract(values, squared, out=squared)
    np.square(squared, out=squared)
    variances = np.bincount(labels, weights=squared, minlength=size)
    del squared
    variances = np.divide(variances, counts, out=np.zeros(size), where=counts > 0)
    minima = np.full(size, np.inf)
    maxima = np.full(size, -np.inf)
    np.minimum.at(minima, labels, values)
    np.maximum.at(maxima, labels, values)

    voxel_volume_mm3 = float(np.prod(np.asarray(image.spacing_mm, dtype=np.float64)))
    return [
        SegmentMeasurements(
            label=label,
            voxel_count=int(counts[label]),
            volume_mm3=float(counts[label]) * voxel_volume_mm3,
            mean=float(means[label]),
            minimum=float(minima[label]),
            maximum=float(maxima[label]),
            std=math.sqrt(float(variances[label])),
        )
        for label in present
    ]
