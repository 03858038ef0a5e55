"""Datalists: JSON and CSV, bad cases reported by name, DICOM + RTSTRUCT, the split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radserve.training import (
    CaseRef,
    DatalistError,
    SplitConfig,
    read_case,
    read_cases,
    read_datalist,
    split_names,
)
from tests.training.conftest import TINY_CASES


def test_json_datalist_resolves_relative_paths(tiny_datalist: Path) -> None:
    refs = read_datalist(tiny_datalist)
    assert [r.name for r in refs] == list(TINY_CASES)
    assert refs[0].image == tiny_datalist.parent / "cases" / "STS_002" / "image.nii.gz"
    assert all(r.image.is_file() and r.label.is_file() for r in refs)


def test_csv_datalist_without_names(tiny_datalist: Path) -> None:
    path = tiny_datalist.parent / "datalist.csv"
    lines = ["image,label"] + [f"cases/{n}/image.nii.gz,cases/{n}/mask.nii.gz" for n in TINY_CASES]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    refs = read_datalist(path)
    assert [r.name for r in refs] == [f"cases/{n}/image" for n in TINY_CASES]
    assert refs[1].label == tiny_datalist.parent / "cases" / "STS_019" / "mask.nii.gz"


def test_csv_without_label_column_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("image,mask\na.nii.gz,b.nii.gz\n", encoding="utf-8")
    with pytest.raises(DatalistError, match="'image' and 'label' columns"):
        read_datalist(path)


def _bad_datalist(tiny_datalist: Path) -> Path:
    """The tiny cases plus one missing file, one off-grid label and one empty label."""
    root = tiny_datalist.parent
    bad = root / "bad_cases"
    for name in ("offgrid", "empty"):
        shutil.copytree(root / "cases" / "STS_019", bad / name, dirs_exist_ok=True)
    mask = sitk.ReadImage(str(bad / "offgrid" / "mask.nii.gz"))
    sitk.WriteImage(
        sitk.RegionOfInterest(mask, [60, 72, 16], [0, 0, 0]), str(bad / "offgrid" / "mask.nii.gz")
    )
    empty = sitk.ReadImage(str(bad / "empty" / "mask.nii.gz")) * 0
    sitk.WriteImage(empty, str(bad / "empty" / "mask.nii.gz"))
    entries = json.loads(tiny_datalist.read_text(encoding="utf-8"))["training"]
    entries += [
        {"name": "missing", "image": "bad_cases/nope/image.nii.gz", "label": "x.nii.gz"},
        {
            "name": "offgrid",
            "image": "bad_cases/offgrid/image.nii.gz",
            "label": "bad_cases/offgrid/mask.nii.gz",
        },
        {
            "name": "empty",
            "image": "bad_cases/empty/image.nii.gz",
            "label": "bad_cases/empty/mask.nii.gz",
        },
    ]
    path = root / "with_bad.json"
    path.write_text(json.dumps({"training": entries}), encoding="utf-8")
    return path


def test_bad_cases_are_all_listed_by_name(tiny_datalist: Path) -> None:
    refs = read_datalist(_bad_datalist(tiny_datalist))
    with pytest.raises(DatalistError) as excinfo:
        read_cases(refs, skip_bad_cases=False, max_label=1)
    message = str(excinfo.value)
    assert message.startswith("3 bad case(s)")
    assert "missing: image file missing" in message
    assert "offgrid: " in message and "empty: label map is empty" in message


def test_skip_bad_cases_keeps_the_good_ones(tiny_datalist: Path) -> None:
    refs = read_datalist(_bad_datalist(tiny_datalist))
    good, bad = read_cases(refs, skip_bad_cases=True, max_label=1)
    assert [c.name for c in good] == list(TINY_CASES)
    assert [b.name for b in bad] == ["missing", "offgrid", "empty"]


def test_label_beyond_the_model_labels_is_bad(tiny_datalist: Path) -> None:
    refs = read_datalist(tiny_datalist)[:1]
    _, bad = read_cases(refs, skip_bad_cases=True, max_label=0)
    assert bad[0].reason == "label value 1 > 0"


def test_dicom_series_with_rtstruct(demo_study: Path, shared_data: Path) -> None:
    case = read_case(
        CaseRef("demo", demo_study / "image", demo_study / "mask" / "RS.dcm"),
        roi_names=["GTV_Mass_CT"],
    )
    assert case.image.modality == "CT"
    assert case.label.shape == case.image.shape == (48, 143, 161)
    # The rasterised RTSTRUCT agrees with the curated NIfTI mask of the same patient.
    nifti = sitk.GetArrayFromImage(
        sitk.ReadImage(str(shared_data / "sts_ct" / "nifti" / "STS_002" / "mask.nii.gz"))
    )
    overlap = (
        2
        * np.logical_and(case.label > 0, nifti > 0).sum()
        / ((case.label > 0).sum() + (nifti > 0).sum())
    )
    assert overlap > 0.9


def test_split_forces_validation_and_is_reproducible() -> None:
    names = [f"STS_{i:03d}" for i in range(1, 44)]
    split = SplitConfig(validation_fraction=0.2, seed=0, force_validation=("STS_002",))
    training, validation = split_names(names, split)
    assert len(validation) == 9 and "STS_002" in validation
    assert set(training) | set(validation) == set(names) and not set(training) & set(validation)
    assert split_names(names, split) == (training, validation)
    assert split_names(names, SplitConfig(seed=1))[1] != validation


def test_explicit_validation_and_k_fold() -> None:
    names = [f"c{i}" for i in range(10)]
    _, validation = split_names(names, SplitConfig(validation=("c3", "c7")))
    assert validation == ["c3", "c7"]
    folds = [split_names(names, SplitConfig(folds=3, fold=f))[1] for f in range(3)]
    assert sorted(n for fold in folds for n in fold) == sorted(names)
    assert [len(f) for f in folds] == [4, 3, 3]
    with pytest.raises(DatalistError, match="not in the datalist"):
        split_names(names, SplitConfig(force_validation=("zz",)))
