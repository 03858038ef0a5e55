"""Extraction errors and skips, several segments, and parallel workers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from radserve.dicom_io import LabelMap, SegmentInfo, Volume
from radserve.radiomics import (
    EmptyMaskError,
    ExtractionOptions,
    MaskGeometryError,
    ParameterSet,
    SegmentTooSmallError,
    UnknownLabelError,
    extract_features,
    load_parameter_set,
)
from tests.radiomics.conftest import mismatches, stock_features

LIGHT = ParameterSet.from_dict(
    "light",
    {
        "imageType": {"Original": {}},
        "featureClass": {"shape": None, "firstorder": None, "glcm": None},
        "setting": {"binWidth": 25, "label": 1},
    },
)


def _synthetic(shape: tuple[int, int, int] = (20, 30, 30)) -> Volume:
    values = np.random.default_rng(7).integers(-100, 100, shape).astype(np.int16)
    return Volume(values, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3), modality="CT")


def _labelmap(volume: Volume, voxels: list[tuple[int, int, int]], label: int = 1) -> LabelMap:
    labels = np.zeros(volume.shape, dtype=np.uint8)
    for voxel in voxels:
        labels[voxel] = label
    return LabelMap(volume.with_array(labels), (SegmentInfo(label, "lesion"),))


def test_inputs_are_checked_before_extraction() -> None:
    volume = _synthetic()
    cube = [(k, j, i) for k in range(5, 8) for j in range(5, 8) for i in range(5, 8)]
    labelmap = _labelmap(volume, cube)
    with pytest.raises(UnknownLabelError, match=r"labels \[4\] are not segments.*\[1\]"):
        extract_features(volume, labelmap, parameter_set=LIGHT, labels=[4])
    empty = _labelmap(volume, [])
    with pytest.raises(EmptyMaskError, match="no segmented voxel"):
        extract_features(volume, empty, parameter_set=LIGHT)
    with pytest.raises(EmptyMaskError, match=r"segments \[1\] have no voxel"):
        extract_features(volume, empty, parameter_set=LIGHT, labels=[1])
    shifted = dataclasses.replace(labelmap.volume, origin_mm=(0.5, 0.0, 0.0))
    with pytest.raises(MaskGeometryError, match=r"another grid.*origin"):
        extract_features(volume, LabelMap(shifted, labelmap.segments), parameter_set=LIGHT)
    away = dataclasses.replace(labelmap.volume, origin_mm=(500.0, 0.0, 0.0))
    with pytest.raises(MaskGeometryError, match="outside the image"):
        extract_features(volume, LabelMap(away, labelmap.segments), parameter_set=LIGHT)
    coarse = _labelmap(_synthetic((10, 30, 30)), cube)
    with pytest.raises(MaskGeometryError, match=r"shape \(10, 30, 30\) vs \(20, 30, 30\)"):
        extract_features(volume, coarse, parameter_set=LIGHT)


def test_segments_too_small_are_refused_or_skipped_with_the_reason() -> None:
    volume = _synthetic()
    single = _labelmap(volume, [(10, 10, 10)])
    with pytest.raises(SegmentTooSmallError, match="single voxel"):
        extract_features(volume, single, parameter_set=LIGHT)
    line = _labelmap(volume, [(10, 10, 10), (10, 10, 11)])
    with pytest.raises(SegmentTooSmallError, match="too few dimensions"):
        extract_features(volume, line, parameter_set=LIGHT)
    (skipped,) = extract_features(
        volume, line, parameter_set=LIGHT, options=ExtractionOptions(on_error="skip")
    )
    assert skipped.features == ()
    assert [s.name for s in skipped.skipped] == ["*"]
    assert "too few dimensions" in skipped.skipped[0].reason


def test_features_a_segment_is_too_small_for_are_listed_the_others_come_out() -> None:
    volume = _synthetic()
    parameters = LIGHT.parameters()
    parameters["setting"]["minimumROIDimensions"] = 1
    line = _labelmap(volume, [(10, 10, 10), (10, 10, 11)])
    (result,) = extract_features(
        volume, line, parameter_set=ParameterSet.from_dict("lines", parameters)
    )
    # Two voxels have no robust mean absolute deviation (10th-90th percentile is empty).
    assert [s.name for s in result.skipped] == ["original_firstorder_RobustMeanAbsoluteDeviation"]
    values = result.values()
    assert values["original_firstorder_Mean"] == pytest.approx(
        float(volume.array[10, 10, 10:12].astype(float).mean())
    )
    assert values["original_shape_VoxelVolume"] == 4.0
    assert len(values) == 14 + 18 + 24 - 1


def test_filters_too_large_for_the_image_are_listed() -> None:
    volume = _synthetic((3, 3, 3))
    labelmap = _labelmap(volume, [(1, 1, 1), (1, 1, 2), (1, 2, 1)])
    (result,) = extract_features(volume, labelmap, parameter_set="default")
    skipped = {s.name: s.reason for s in result.skipped}
    assert set(skipped) == {f"log-sigma-{s}-0-mm-3D_*" for s in (1, 3, 5)}
    assert all("too small to apply LoG" in reason for reason in skipped.values())
    assert len(result.features) == 14 + 9 * 93  # shape, then original and 8 wavelet images


def test_several_segments_in_parallel_equal_serial_and_stock(
    sts_019: tuple[Volume, LabelMap],
) -> None:
    volume, labelmap = sts_019
    labels = np.asarray(labelmap.volume.array).copy()
    labels[(volume.array > 250) & (labels == 0)] = 2  # bone beside the tumour
    labels[labels.shape[0] // 2, 5:9, 5:9] = 3
    segments = (SegmentInfo(1, "GTV"), SegmentInfo(2, "Bone"), SegmentInfo(3, "Patch"))
    many = LabelMap(labelmap.volume.with_array(labels), segments)
    serial = extract_features(volume, many, parameter_set=LIGHT)
    parallel = extract_features(
        volume, many, parameter_set=LIGHT, options=ExtractionOptions(workers=2)
    )
    assert [r.label for r in parallel] == [1, 2, 3]
    assert [r.segment_name for r in parallel] == ["GTV", "Bone", "Patch"]
    assert [r.values() for r in parallel] == [r.values() for r in serial]
    for result in serial:
        stock = stock_features(LIGHT, volume.to_sitk(), many.volume.to_sitk(), result.label)
        assert mismatches(result.values(), stock) == []
    assert serial[2].values()["original_shape_VoxelVolume"] == pytest.approx(
        16 * float(np.prod(volume.spacing_mm))
    )


def test_one_segment_split_over_workers_equals_serial(
    sts_019: tuple[Volume, LabelMap],
) -> None:
    volume, labelmap = sts_019
    (serial,) = extract_features(volume, labelmap, parameter_set="default")
    (split,) = extract_features(
        volume, labelmap, parameter_set="default", options=ExtractionOptions(workers=2)
    )
    assert list(split.values().items()) == list(serial.values().items())  # values and order
    assert split.skipped == serial.skipped == ()


def test_diagnostics_only_when_asked(sts_019: tuple[Volume, LabelMap], shared_data: Path) -> None:
    volume, labelmap = sts_019
    (plain,) = extract_features(volume, labelmap, parameter_set=LIGHT)
    (full,) = extract_features(
        volume, labelmap, parameter_set=LIGHT, options=ExtractionOptions(diagnostics=True)
    )
    assert plain.diagnostics == ()
    diagnostics = full.diagnostics_dict()
    assert diagnostics["diagnostics_Mask-original_VoxelNum"] == "5564"
    assert diagnostics["diagnostics_Versions_PyRadiomics"] == "v3.0.1"
    assert full.values() == plain.values()
    assert load_parameter_set("default").settings()["additionalInfo"] is True
