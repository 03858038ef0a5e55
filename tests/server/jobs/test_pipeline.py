"""The pipeline and ``radserve infer`` on the real demo CT with a real (tiny) ONNX model."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from radserve.cli import app
from radserve.dicom_io import read_image_file, read_image_series, read_seg, read_sr_measurements
from radserve.inference import (
    CPU,
    InferenceTimeoutError,
    Predictor,
    RuntimeSettings,
    SeriesNotAcceptedError,
    load_model_package,
)
from radserve.server import run_pipeline
from tests.radiomics_sets import THRESHOLD_HU, bone_package


def _package_dir(root: Path, spacing_mm: tuple[float, float, float], **changes: Any) -> Path:
    return bone_package(root, name="test-model", spacing_mm=spacing_mm, **changes)


def test_pipeline_results_match_the_prediction(tmp_path: Path, demo_study: Path) -> None:
    series = read_image_series(demo_study / "image")
    package = load_model_package(_package_dir(tmp_path, series.volume.spacing_mm))
    predictor = Predictor(package, runtime=RuntimeSettings(providers=(CPU,)))
    result = run_pipeline(series, predictor)

    expected = series.volume.array > THRESHOLD_HU
    labels = result.prediction.label_map.volume.array
    np.testing.assert_array_equal(labels == 1, expected)
    (measurement,) = result.results.measurements
    assert measurement.voxel_count == int(expected.sum())
    seg_back = read_seg(result.results.seg, reference=series.volume)
    np.testing.assert_array_equal(seg_back.volume.array == 1, expected)
    assert result.results.seg.SeriesDescription.startswith("AI SEG")
    equipment = result.results.seg.ContributingEquipmentSequence[-1]
    assert list(equipment.SoftwareVersions)[-1] == package.model_sha256


def test_series_outside_the_selection_rules_is_refused(tmp_path: Path, demo_study: Path) -> None:
    series = read_image_series(demo_study / "image")
    directory = _package_dir(tmp_path, series.volume.spacing_mm, input={"modalities": ["MR"]})
    predictor = Predictor(load_model_package(directory), runtime=RuntimeSettings(providers=(CPU,)))
    with pytest.raises(SeriesNotAcceptedError, match="modality 'CT' is not one of"):
        run_pipeline(series, predictor)


def test_a_passed_deadline_stops_the_job_in_inference(tmp_path: Path, demo_study: Path) -> None:
    series = read_image_series(demo_study / "image")
    directory = _package_dir(tmp_path, series.volume.spacing_mm)
    predictor = Predictor(load_model_package(directory), runtime=RuntimeSettings(providers=(CPU,)))
    with pytest.raises(InferenceTimeoutError, match="the job timeout has passed"):
        run_pipeline(series, predictor, deadline=time.monotonic() - 1.0)


def test_infer_command_writes_labelmap_and_valid_dicom(
    tmp_path: Path, demo_study: Path, dciodvfy: Callable[[Path], Any]
) -> None:
    series = read_image_series(demo_study / "image")
    directory = _package_dir(tmp_path, series.volume.spacing_mm)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "infer",
            str(demo_study / "image"),
            "--model",
            str(directory),
            "--out",
            str(out),
            "--no-radiomics",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "CPUExecutionProvider" in result.output
    assert not (out / "features.json").exists() and not (out / "features.csv").exists()

    labelmap = read_image_file(out / "labelmap.nii.gz")
    np.testing.assert_array_equal(labelmap.array == 1, series.volume.array > THRESHOLD_HU)
    np.testing.assert_allclose(labelmap.affine_lps(), series.volume.affine_lps(), atol=1e-4)
    (seg_path,) = (out / "seg").glob("*.dcm")
    (sr_path,) = (out / "sr").glob("*.dcm")
    overlays = sorted((out / "overlay").glob("*.dcm"))
    assert overlays
    for path in (seg_path, sr_path, overlays[0]):
        assert dciodvfy(path).errors == []
    volume_mm3 = read_sr_measurements(sr_path)["Bone"]["Volume"]
    voxel_mm3 = float(np.prod(series.volume.spacing_mm))
    assert volume_mm3 == pytest.approx(int((labelmap.array == 1).sum()) * voxel_mm3)
    assert pydicom.dcmread(seg_path).SegmentSequence[0].SegmentLabel == "Bone"


def test_infer_command_refuses_a_bad_package(tmp_path: Path, demo_study: Path) -> None:
    series = read_image_series(demo_study / "image")
    directory = _package_dir(tmp_path, series.volume.spacing_mm)
    (directory / "model.onnx").write_bytes(b"not a model")
    result = CliRunner().invoke(
        app, ["infer", str(demo_study / "image"), "--model", str(directory), "--out", "x"]
    )
    assert result.exit_code == 2
    assert "sha256" in result.output.lower()


def test_infer_command_writes_the_feature_tables(tmp_path: Path, demo_study: Path) -> None:
    series = read_image_series(demo_study / "image")
    directory = bone_package(tmp_path, spacing_mm=series.volume.spacing_mm)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["infer", str(demo_study / "image"), "--model", str(directory), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "radiomics small sha256:" in result.output
    (case,) = json.loads((out / "features.json").read_text())["cases"]
    (segment,) = case["segments"]
    assert (segment["label"], segment["segment"], segment["skipped"]) == (1, "Bone", [])
    values = {f["name"]: f["value"] for f in segment["features"]}
    assert len(values) == 32
    with (out / "features.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["Case"], row["Label"], row["Segment"]) == (
        series.volume.series_instance_uid,
        "1",
        "Bone",
    )
    assert {name: float(row[name]) for name in values} == values
    (sr_path,) = (out / "sr").glob("*.dcm")
    read = read_sr_measurements(sr_path)["Bone"]
    assert read["Sphericity"] == values["original_shape_Sphericity"]
    assert read["Volume"] == pytest.approx(values["original_shape_VoxelVolume"])
