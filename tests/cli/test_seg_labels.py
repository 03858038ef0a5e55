"""``radserve seg-from-labels`` and ``seg-to-labels`` on the bundled study, checked by
highdicom, dcmqi and dciodvfy."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from radserve.cli import app
from radserve.dicom_io import (
    LabelMap,
    SegmentInfo,
    Volume,
    read_instance,
    read_labelmap_file,
    read_rtstruct,
    read_series,
    write_labelmap_file,
)
from tests.conftest import REPO_ROOT, require
from tests.grids import onto_grid

DCMQI = REPO_ROOT / ".venv" / "bin" / "segimage2itkimage"
NAMES = {
    "1": "GTV",
    "2": {
        "name": "Box",
        "description": "a block of voxels",
        "type": {"value": "113343008", "scheme": "SCT", "meaning": "Organ"},
    },
}


def write_demo_labels(study: Path, path: Path) -> npt.NDArray[Any]:
    """A label map on the study's CT grid: 1 the RTSTRUCT tumour, 2 a box; returns its array."""
    volume = read_series(study / "image")
    contour = read_rtstruct(read_instance(study / "mask" / "RS.dcm"), volume)
    array = (contour.volume.array > 0).astype(np.uint8)
    array[5:10, 10:30, 10:40] = 2
    labelmap = LabelMap(
        volume=volume.with_array(array), segments=(SegmentInfo(1, "a"), SegmentInfo(2, "b"))
    )
    write_labelmap_file(labelmap, path)
    return array


@pytest.fixture
def labels(tmp_path: Path, demo_study: Path) -> tuple[Path, Path, npt.NDArray[Any]]:
    """The label map file, its labels JSON and its array."""
    path = tmp_path / "labels.nii.gz"
    array = write_demo_labels(demo_study, path)
    names = tmp_path / "labels.json"
    names.write_text(json.dumps(NAMES))
    return path, names, array


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _seg_from_labels(study: Path, labels: Path, names: Path, out: Path) -> None:
    result = _invoke(
        "seg-from-labels", str(study / "image"), str(labels), str(out), "--names", str(names)
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (BINARY SEG, 2 segment(s))" in result.output


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_round_trip_gives_identical_voxels(
    tmp_path: Path, demo_study: Path, labels: tuple[Path, Path, npt.NDArray[Any]], suffix: str
) -> None:
    path, names, array = labels
    seg = tmp_path / "seg.dcm"
    _seg_from_labels(demo_study, path, names, seg)
    back = tmp_path / f"back{suffix}"
    result = _invoke("seg-to-labels", str(seg), str(demo_study / "image"), str(back))
    assert result.exit_code == 0, result.output
    assert "1: GTV" in result.output and "2: Box" in result.output
    volume = read_series(demo_study / "image")
    read_back = read_labelmap_file(back, reference=volume)
    np.testing.assert_array_equal(read_back.volume.array, array)
    assert int(np.count_nonzero(array == 1)) == 17090  # the tumour contour is in it


def test_seg_read_by_highdicom_and_dcmqi(
    tmp_path: Path, demo_study: Path, labels: tuple[Path, Path, npt.NDArray[Any]]
) -> None:
    path, names, array = labels
    seg_path = tmp_path / "seg.dcm"
    _seg_from_labels(demo_study, path, names, seg_path)
    grid = read_series(demo_study / "image")

    seg = hd.seg.segread(str(seg_path))
    assert seg.SegmentationType == "BINARY"
    segments = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    assert {n: str(s.SegmentLabel) for n, s in segments.items()} == {1: "GTV", 2: "Box"}
    assert segments[2].SegmentDescription == "a block of voxels"
    assert segments[2].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Organ"
    assert segments[1].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"
    volume = seg.get_volume(combine_segments=True, allow_missing_positions=True)
    np.testing.assert_array_equal(
        onto_grid(np.asarray(volume.array), np.asarray(volume.affine), grid), array
    )

    require(DCMQI.exists(), "dcmqi (segimage2itkimage) not installed")
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run(
        [str(DCMQI), "--inputDICOM", str(seg_path), "--outputDirectory", str(out), "-t", "nrrd"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    combined = np.zeros(grid.shape, dtype=np.int64)
    nrrds = sorted(out.glob("*.nrrd"))
    assert len(nrrds) == 2
    for nrrd in nrrds:
        image = Volume.from_sitk(sitk.ReadImage(str(nrrd)))
        on_grid = onto_grid(image.array, image.affine_lps()[:, [2, 1, 0, 3]], grid)
        assert not np.any((combined != 0) & (on_grid != 0)), "segments overlap"
        combined += on_grid
    np.testing.assert_array_equal(combined, array)


def test_seg_passes_dciodvfy(
    tmp_path: Path,
    demo_study: Path,
    labels: tuple[Path, Path, npt.NDArray[Any]],
    dciodvfy: Callable[[Path], Any],
) -> None:
    path, names, _ = labels
    seg = tmp_path / "seg.dcm"
    _seg_from_labels(demo_study, path, names, seg)
    report = dciodvfy(seg)
    assert report.errors == [], report.output


def test_labelmap_segmentation_keeps_label_values(
    tmp_path: Path, demo_study: Path, labels: tuple[Path, Path, npt.NDArray[Any]]
) -> None:
    _, _, array = labels
    gapped = np.where(array == 2, 7, array).astype(np.uint8)
    volume = read_series(demo_study / "image")
    source = tmp_path / "gapped.nrrd"
    segments = (SegmentInfo(1, "a"), SegmentInfo(7, "b"))
    write_labelmap_file(LabelMap(volume=volume.with_array(gapped), segments=segments), source)
    seg, back = tmp_path / "seg.dcm", tmp_path / "back.nii.gz"

    binary = _invoke("seg-from-labels", str(demo_study / "image"), str(source), str(seg))
    assert binary.exit_code == 0, binary.output
    assert "segment 2 (label 7): Segment 7" in binary.output  # BINARY renumbers 1..N

    result = _invoke(
        "seg-from-labels",
        str(demo_study / "image"),
        str(source),
        str(seg),
        "--segmentation-type",
        "LABELMAP",
    )
    assert result.exit_code == 0, result.output
    assert _invoke("seg-to-labels", str(seg), str(demo_study / "image"), str(back)).exit_code == 0
    np.testing.assert_array_equal(read_labelmap_file(back, reference=volume).volume.array, gapped)


def _assert_refused(result: Any, out: Path, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert "error: " in result.output
    assert message in result.output
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no partial file either


def test_refuses_label_map_on_another_grid(tmp_path: Path, demo_study: Path) -> None:
    array = write_demo_labels(demo_study, tmp_path / "labels.nii.gz")
    volume = read_series(demo_study / "image")
    shifted = dataclasses.replace(
        volume.with_array(array), origin_mm=(volume.origin_mm[0] + 5.0, *volume.origin_mm[1:])
    )
    path = tmp_path / "shifted.nii.gz"
    write_labelmap_file(LabelMap(volume=shifted, segments=(SegmentInfo(1, "a"),)), path)
    out = tmp_path / "seg.dcm"
    result = _invoke("seg-from-labels", str(demo_study / "image"), str(path), str(out))
    _assert_refused(result, out, "not on the reference grid")
    assert "origin" in result.output


def test_refuses_missing_label_map(tmp_path: Path, demo_study: Path) -> None:
    out = tmp_path / "seg.dcm"
    missing = tmp_path / "missing.nii.gz"
    result = _invoke("seg-from-labels", str(demo_study / "image"), str(missing), str(out))
    _assert_refused(result, out, "missing.nii.gz: label map file not found")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON file"),
        ('["GTV"]', "expected an object mapping label numbers to names"),
        ('{"one": "GTV"}', "key 'one' is not a label number"),
        ('{"1": ""}', "label 1: a segment needs a non-empty name"),
        ('{"1": {"name": "GTV", "colour": "red"}}', "label 1: unknown field(s) colour"),
        ('{"1": {"name": "GTV", "type": {"value": "1"}}}', "label 1: type: expected"),
    ],
)
def test_refuses_malformed_labels_json(
    tmp_path: Path,
    demo_study: Path,
    labels: tuple[Path, Path, npt.NDArray[Any]],
    content: str,
    message: str,
) -> None:
    path, names, _ = labels
    names.write_text(content)
    out = tmp_path / "seg.dcm"
    result = _invoke(
        "seg-from-labels", str(demo_study / "image"), str(path), str(out), "--names", str(names)
    )
    _assert_refused(result, out, message)


def test_refuses_missing_labels_json(
    tmp_path: Path, demo_study: Path, labels: tuple[Path, Path, npt.NDArray[Any]]
) -> None:
    path, _, _ = labels
    out = tmp_path / "seg.dcm"
    result = _invoke(
        "seg-from-labels",
        str(demo_study / "image"),
        str(path),
        str(out),
        "--names",
        str(tmp_path / "nope.json"),
    )
    _assert_refused(result, out, "nope.json: labels file not found")


def test_seg_to_labels_refuses_a_non_seg(tmp_path: Path, demo_study: Path) -> None:
    out = tmp_path / "back.nii.gz"
    ct = demo_study / "image" / "000000.dcm"
    result = _invoke("seg-to-labels", str(ct), str(demo_study / "image"), str(out))
    _assert_refused(result, out, "not a DICOM SEG")
