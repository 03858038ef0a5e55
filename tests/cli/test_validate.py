"""``radserve validate`` on a SEG it wrote, the bundled CT images and broken files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner

from radserve.cli import app
from tests.cli.test_seg_labels import write_demo_labels


def _validate(*paths: Path | str) -> Any:
    return CliRunner().invoke(app, ["validate", *(str(p) for p in paths)])


def _line(output: str, path: Path) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith(f"{path}: ")]
    return line


@pytest.fixture
def good_seg(tmp_path: Path, demo_study: Path) -> Path:
    """A SEG written by ``radserve seg-from-labels`` on the bundled study."""
    labels = tmp_path / "labels.nii.gz"
    write_demo_labels(demo_study, labels)
    seg = tmp_path / "seg.dcm"
    result = CliRunner().invoke(
        app, ["seg-from-labels", str(demo_study / "image"), str(labels), str(seg)]
    )
    assert result.exit_code == 0, result.output
    return seg


def test_passes_a_good_seg(good_seg: Path) -> None:
    result = _validate(good_seg)
    assert result.exit_code == 0, result.output
    assert _line(result.output, good_seg) == f"{good_seg}: OK [SEG]"


def test_passes_the_demo_images(demo_study: Path) -> None:
    images = sorted((demo_study / "image").glob("*.dcm"))
    result = _validate(*images)
    assert result.exit_code == 0, result.output
    for image in images:
        assert _line(result.output, image).startswith(f"{image}: OK [CT]")


def test_strict_fails_source_images_on_dciodvfy_errors(
    demo_study: Path, dciodvfy: Callable[[Path], Any]
) -> None:
    image = demo_study / "image" / "000000.dcm"
    assert dciodvfy(image).errors  # the study's Study ID is longer than SH allows
    default = _validate(image)
    assert default.exit_code == 0, default.output
    assert "warning: dciodvfy:" in _line(default.output, image)
    strict = CliRunner().invoke(app, ["validate", "--strict", str(image)])
    assert strict.exit_code == 1, strict.output
    line = _line(strict.output, image)
    assert line.startswith(f"{image}: FAILED [CT]; dciodvfy:")
    assert "StudyID" in line


def test_fails_a_truncated_file(tmp_path: Path, good_seg: Path) -> None:
    truncated = tmp_path / "truncated.dcm"
    data = good_seg.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    result = _validate(good_seg, truncated)
    assert result.exit_code == 1, result.output
    assert _line(result.output, good_seg).startswith(f"{good_seg}: OK")
    line = _line(result.output, truncated)
    assert line.startswith(f"{truncated}: FAILED")
    assert "truncated" in line
    assert "1 of 2 file(s) failed" in result.output


def test_fails_a_non_dicom_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a DICOM file\n" * 20)
    result = _validate(text)
    assert result.exit_code == 1, result.output
    assert _line(result.output, text) == (
        f"{text}: FAILED [?]; notes.txt: not a DICOM instance (no SOP Instance UID)"
    )


def test_fails_a_seg_without_segment_sequence(tmp_path: Path, good_seg: Path) -> None:
    ds = pydicom.dcmread(good_seg)
    del ds.SegmentSequence
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    result = _validate(broken)
    assert result.exit_code == 1, result.output
    line = _line(result.output, broken)
    assert line.startswith(f"{broken}: FAILED [SEG]; SEG:")
    assert "SegmentSequence" in line or "Segment Sequence" in line


def test_fails_an_sr_that_is_not_a_measurement_report(tmp_path: Path, demo_study: Path) -> None:
    ds = pydicom.dcmread(demo_study / "image" / "000000.dcm")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    del ds.PixelData
    sr = tmp_path / "sr.dcm"
    ds.save_as(sr)
    result = _validate(sr)
    assert result.exit_code == 1, result.output
    assert _line(result.output, sr).startswith(f"{sr}: FAILED [SR]; SR:")


def test_help_explains() -> None:
    result = CliRunner().invoke(app, ["validate", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "Prints one line per file (OK or FAILED" in text
    assert "dciodvfy" in text
    assert "--strict" in text
    assert "Exit code 1 if any file fails." in text
