"""Per-segment measurements against an independent computation (SimpleITK label statistics)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radserve.dicom_io import (
    ANATOMICAL_STRUCTURE,
    Code,
    LabelMap,
    MeasurementError,
    SegmentInfo,
    Volume,
    measure_segments,
    read_image_series,
)


def _labels_on_grid(mask_path: Path, grid: Volume) -> np.ndarray:
    """A NIfTI label map placed on ``grid`` by world coordinates (nearest neighbour)."""
    mask = sitk.ReadImage(str(mask_path))
    on_grid = sitk.Resample(
        mask, grid.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16
    )
    return sitk.GetArrayFromImage(on_grid)


def _sitk_statistics(image: Volume, labels: np.ndarray) -> sitk.LabelStatisticsImageFilter:
    stats = sitk.LabelStatisticsImageFilter()
    label_image = sitk.GetImageFromArray(labels.astype(np.uint16))
    label_image.CopyInformation(image.to_sitk())
    stats.Execute(image.to_sitk(), label_image)
    return stats


def _assert_matches_sitk(image: Volume, labelmap: LabelMap) -> int:
    """Compare every measured segment with SimpleITK; return the number compared."""
    labels = np.asarray(labelmap.volume.array)
    stats = _sitk_statistics(image, labels)
    measured = measure_segments(image, labelmap)
    assert [m.label for m in measured] == labelmap.present_labels()
    voxel_mm3 = math.prod(image.spacing_mm)
    for m in measured:
        count = stats.GetCount(m.label)
        assert m.voxel_count == count
        assert m.volume_mm3 == pytest.approx(count * voxel_mm3, rel=1e-12)
        assert m.mean == pytest.approx(stats.GetMean(m.label), rel=1e-9, abs=1e-9)
        assert m.minimum == stats.GetMinimum(m.label)
        assert m.maximum == stats.GetMaximum(m.label)
        # ITK reports the sample standard deviation (n - 1); ours is the population one.
        sample_std = m.std * math.sqrt(count / (count - 1)) if count > 1 else 0.0
        assert sample_std == pytest.approx(stats.GetSigma(m.label), rel=1e-7, abs=1e-9)
    return len(measured)


@pytest.fixture(scope="module")
def sts002(demo_study: Path, shared_data: Path) -> tuple[Volume, LabelMap]:
    """The STS_002 CT with its GTV mask (label 1) and dense bone outside it (label 2)."""
    image = read_image_series(demo_study / "image").volume
    gtv = _labels_on_grid(shared_data / "sts_ct/nifti/STS_002/mask.nii.gz", image)
    labels = gtv.astype(np.uint8)
    labels[(image.array > 300) & (labels == 0)] = 2
    segments = (
        SegmentInfo(1, "GTV"),
        SegmentInfo(2, "Bone", ANATOMICAL_STRUCTURE, Code("272673000", "SCT", "Bone")),
        SegmentInfo(3, "Absent"),
    )
    return image, LabelMap(image.with_array(labels), segments)


def test_sts002_matches_simpleitk(sts002: tuple[Volume, LabelMap], shared_data: Path) -> None:
    image, labelmap = sts002
    assert _assert_matches_sitk(image, labelmap) == 2
    gtv = measure_segments(image, labelmap)[0]
    # The mask is on the same grid as the DICOM series: placing it by world coordinates
    # keeps every voxel.
    nifti = sitk.GetArrayFromImage(
        sitk.ReadImage(str(shared_data / "sts_ct/nifti/STS_002/mask.nii.gz"))
    )
    assert gtv.voxel_count == int(np.count_nonzero(nifti)) == 17090
    assert gtv.volume_mm3 == pytest.approx(17090 * 0.976562**2 * 3.27, rel=1e-6)
    # The HU range of a soft-tissue sarcoma.
    assert 0 < gtv.mean < 100
    assert gtv.minimum < gtv.mean < gtv.maximum


def test_absent_and_unknown_labels_are_skipped(sts002: tuple[Volume, LabelMap]) -> None:
    image, labelmap = sts002
    only_gtv = LabelMap(labelmap.volume, (SegmentInfo(1, "GTV"), SegmentInfo(9, "Nothing")))
    measured = measure_segments(image, only_gtv)
    assert [m.label for m in measured] == [1]
    empty = LabelMap(labelmap.volume, (SegmentInfo(9, "Nothing"),))
    assert measure_segments(image, empty) == []


def test_multi_organ_ct_with_flipped_nifti(shared_data: Path) -> None:
    folder = shared_data / "totalseg_ct"
    image = read_image_series(folder / "dicom").volume
    labels = _labels_on_grid(folder / "reference_seg.nii.gz", image)
    names = json.loads((folder / "labels.json").read_text())
    segments = tuple(SegmentInfo(int(k), v, ANATOMICAL_STRUCTURE) for k, v in names.items())
    labelmap = LabelMap(image.with_array(labels), segments)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "reference_seg.nii.gz")))
    present, counts = np.unique(reference[reference > 0], return_counts=True)
    # The y flip is undone by the resampling: the same voxels, label for label.
    assert labelmap.present_labels() == present.tolist()
    assert _assert_matches_sitk(image, labelmap) == len(present) > 20
    by_label = {m.label: m for m in measure_segments(image, labelmap)}
    assert [by_label[int(k)].voxel_count for k in present] == counts.tolist()
    liver = by_label[5]
    assert 30 < liver.mean < 90  # HU of liver parenchyma


def test_synthetic_values() -> None:
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    image = Volume(array, spacing_mm=(0.5, 0.5, 2.0), origin_mm=(0, 0, 0), direction=np.eye(3))
    labels = np.zeros(array.shape, np.uint8)
    labels[0, 0, :] = 1  # values 0, 1, 2, 3
    labels[1, 2, 3] = 2  # the single value 23
    segments = (SegmentInfo(2, "one voxel"), SegmentInfo(1, "row"))
    measured = measure_segments(image, LabelMap(image.with_array(labels), segments))
    assert [m.label for m in measured] == [2, 1]
    single, row = measured
    assert (single.voxel_count, single.volume_mm3, single.mean, single.std) == (1, 0.5, 23.0, 0.0)
    assert (row.voxel_count, row.volume_mm3) == (4, 2.0)
    assert (row.mean, row.minimum, row.maximum) == (1.5, 0.0, 3.0)
    assert row.std == pytest.approx(math.sqrt(1.25))


def test_grid_mismatch_is_refused(sts002: tuple[Volume, LabelMap]) -> None:
    image, labelmap = sts002
    shifted = replace(labelmap.volume, origin_mm=(0.0, 0.0, 0.0))
    with pytest.raises(MeasurementError, match="geometry"):
        measure_segments(image, LabelMap(shifted, labelmap.segments))
    cropped = Volume(
        np.asarray(labelmap.volume.array)[:-1],
        spacing_mm=image.spacing_mm,
        origin_mm=image.origin_mm,
        direction=image.direction,
    )
    with pytest.raises(MeasurementError, match="shape"):
        measure_segments(image, LabelMap(cropped, labelmap.segments))


def test_non_finite_image_values_are_refused() -> None:
    array = np.zeros((2, 2, 2), np.float32)
    array[1, 1, 1] = np.nan
    image = Volume(array, spacing_mm=(1.0, 1.0, 1.0), origin_mm=(0, 0, 0), direction=np.eye(3))
    labels = np.ones(array.shape, np.uint8)
    with pytest.raises(MeasurementError, match="NaN"):
        measure_segments(image, LabelMap(image.with_array(labels), (SegmentInfo(1, "all"),)))
    labels[1, 1, 1] = 0  # outside the segment, a NaN does not matter
    (measured,) = measure_segments(
        image, LabelMap(image.with_array(labels), (SegmentInfo(1, "all"),))
    )
    assert (measured.voxel_count, measured.mean, measured.std) == (7, 0.0, 0.0)
