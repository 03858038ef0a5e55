"""Feature tables (CSV, JSON) and the extract commands, single case and batch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from radserve.cli.extract import extract_batch_command, extract_command, summary
from radserve.radiomics import INPUT_COLUMNS, InputError, MaskGeometryError, ParameterSet

LIGHT = {
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None},
    "setting": {"binWidth": 25, "label": 1},
}


@pytest.fixture()
def light_params(tmp_path: Path) -> Path:
    path = tmp_path / "light.yaml"
    path.write_text(json.dumps(LIGHT))  # JSON is YAML
    return path


def test_extract_command_writes_the_pyradiomics_batch_layout(
    shared_data: Path, light_params: Path, tmp_path: Path
) -> None:
    folder = shared_data / "sts_ct" / "nifti" / "STS_019"
    out = tmp_path / "features.csv"
    case = extract_command(
        folder / "image.nii.gz",
        folder / "mask.nii.gz",
        params=str(light_params),
        out=out,
        modality="CT",
    )
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    header = list(rows[0])
    assert header[: len(INPUT_COLUMNS)] == list(INPUT_COLUMNS)
    (segment,) = case.segments
    assert header[len(INPUT_COLUMNS) :] == [f.name for f in segment.features]
    assert rows[0]["Label"] == "1" and rows[0]["Case"] == "STS_019"
    assert {k: float(v) for k, v in rows[0].items() if k not in INPUT_COLUMNS} == segment.values()
    assert float(rows[0]["original_shape_VoxelVolume"]) == pytest.approx(
        5564 * 0.9765620231628418**2 * 3.2699999809265137, rel=1e-9
    )
    assert summary([case]) == [
        f"STS_019 label 1 (Segment 1): 32 features [{segment.parameter_set}]"
    ]

    as_json = tmp_path / "features.json"
    extract_command(
        folder / "image.nii.gz", folder / "mask.nii.gz", params=str(light_params), out=as_json
    )
    document = json.loads(as_json.read_text())
    (record,) = document["cases"][0]["segments"]
    mean = next(f for f in record["features"] if f["name"] == "original_firstorder_Mean")
    assert mean["ibsi_code"] == "Q4LE"
    assert mean["unit"] == "[arb'U]"  # no modality given for the NIfTI: not HU
    assert mean["value"] == segment.values()["original_firstorder_Mean"]
    assert record["parameter_set"] == ParameterSet.from_dict("light", LIGHT).identifier


def test_extract_command_refuses_bad_inputs(shared_data: Path, light_params: Path) -> None:
    folder = shared_data / "sts_ct" / "nifti"
    with pytest.raises(InputError, match="image not found"):
        extract_command(folder / "nope.nii.gz", folder / "STS_019/mask.nii.gz")
    with pytest.raises(MaskGeometryError, match="outside the image"):
        extract_command(
            folder / "STS_019/image.nii.gz",
            folder / "STS_008/mask.nii.gz",
            params=str(light_params),
        )


def test_batch_command_runs_cases_in_parallel_and_reports_failures(
    shared_data: Path, light_params: Path, tmp_path: Path
) -> None:
    root = shared_data / "sts_ct" / "nifti"
    cases = tmp_path / "cases.csv"
    cases.write_text(
        "Case,Image,Mask\n"
        f"a,{root}/STS_019/image.nii.gz,{root}/STS_019/mask.nii.gz\n"
        f"b,{root}/STS_008/image.nii.gz,{root}/STS_008/mask.nii.gz\n"
        f"broken,{root}/STS_008/image.nii.gz,{root}/STS_019/mask.nii.gz\n"
    )
    out = tmp_path / "batch.csv"
    progress: list[tuple[int, int]] = []
    results = extract_batch_command(
        cases,
        out=out,
        params=str(light_params),
        workers=2,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert [r.case for r in results] == ["a", "b", "broken"]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert results[2].error is not None and "outside the image" in results[2].error
    single = extract_command(
        root / "STS_008/image.nii.gz", root / "STS_008/mask.nii.gz", params=str(light_params)
    )
    assert results[1].segments[0].values() == single.segments[0].values()
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["Case"], r["Label"]) for r in rows] == [("a", "1"), ("b", "1"), ("broken", "")]
    assert rows[2]["original_firstorder_Mean"] == ""


def test_dicom_inputs_rtstruct_and_seg_give_the_same_features(
    demo_study: Path, light_params: Path, tmp_path: Path
) -> None:
    from radserve.dicom_io import AlgorithmIdentity, read_image_series, read_rtstruct, write_seg

    from_rtstruct = extract_command(
        demo_study / "image", demo_study / "mask" / "RS.dcm", params=str(light_params)
    )
    (segment,) = from_rtstruct.segments
    assert segment.segment_name == "GTV_Mass_CT"
    units = {f.name: f.unit.value for f in segment.features}
    assert units["original_firstorder_Mean"] == "[hnsf'U]"  # Modality CT from the series
    series = read_image_series(demo_study / "image")
    labelmap = read_rtstruct(demo_study / "mask" / "RS.dcm", series.volume)
    identity = AlgorithmIdentity(name="test", version="1.0.0", model_sha256="ef" * 32)
    seg_path = tmp_path / "seg.dcm"
    write_seg(series, labelmap, algorithm=identity).save_as(seg_path, enforce_file_format=True)
    from_seg = extract_command(demo_study / "image", seg_path, params=str(light_params))
    assert from_seg.segments[0].values() == segment.values()
