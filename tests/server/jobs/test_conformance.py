"""The conformance gate on real results of the bundled study (a threshold mask made into a
SEG, an SR and the overlay by the real writers), validated by the real ``dciodvfy``: sound
results pass though their source is not conformant (its errors are inherited), a broken SEG
or SR is blocked, and ``warn`` and ``off`` behave as documented."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from radserve.dicom_io import (
    AlgorithmIdentity,
    ImageSeries,
    LabelMap,
    ResultSet,
    SegmentInfo,
    ValidatorReport,
    build_results,
    read_image_series,
    redacted,
    structural_problems,
)
from radserve.server import ConformanceError, ConformanceGate, GateMode, encode_dataset

ALGORITHM = AlgorithmIdentity(name="gate-test", version="1.0.0", model_sha256="ab" * 32)
Stage = Callable[[ResultSet], list[tuple[Dataset, Path]]]


@pytest.fixture(scope="module")
def series(demo_study: Path) -> ImageSeries:
    return read_image_series(demo_study / "image")


@pytest.fixture(scope="module")
def results(series: ImageSeries) -> ResultSet:
    mask = (series.volume.array > 300).astype(np.uint8)  # bone
    label_map = LabelMap(series.volume.with_array(mask), (SegmentInfo(1, "Bone"),))
    return build_results(series, label_map, algorithm=ALGORITHM)


@pytest.fixture(scope="module")
def source_file(demo_study: Path) -> Path:
    return sorted((demo_study / "image").glob("*.dcm"))[0]


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    """Encode a result set into files, as the store stages them."""

    def write(results: ResultSet) -> list[tuple[Dataset, Path]]:
        staged = []
        for k, ds in enumerate(results.datasets()):
            path = tmp_path / f"{k}.dcm"
            path.write_bytes(encode_dataset(ds))
            staged.append((ds, path))
        return staged

    yield write


def _gate(mode: GateMode) -> ConformanceGate:
    gate = ConformanceGate(mode)
    assert gate.executable is not None
    return gate


def test_sound_results_pass(
    results: ResultSet, series: ImageSeries, source_file: Path, stage: Stage
) -> None:
    assert structural_problems(results.datasets(), series) == []
    findings = _gate(GateMode.BLOCK).check(series, stage(results), source_file=source_file)
    assert findings.passed and findings.validated
    assert {o.kind for o in findings.objects} == {"SEG", "SR", "SC"}
    assert len(findings.objects) == len(results.datasets())
    assert findings.errors_by_kind() == {}


def test_errors_inherited_from_the_source_do_not_block(
    tmp_path: Path,
    demo_study: Path,
    stage: Stage,
    dciodvfy: Callable[[Path], ValidatorReport],
) -> None:
    """A Referring Physician's Name longer than PN allows is copied verbatim into every
    result (radserve does not rewrite the patient's and study's identity)."""
    for path in sorted((demo_study / "image").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.ReferringPhysicianName = "X" * 70
        ds.save_as(tmp_path / path.name)
    source_file = sorted(tmp_path.glob("*.dcm"))[0]
    assert any("ReferringPhysicianName" in e for e in dciodvfy(source_file).errors)
    series = read_image_series(tmp_path)
    mask = (series.volume.array > 300).astype(np.uint8)
    label_map = LabelMap(series.volume.with_array(mask), (SegmentInfo(1, "Bone"),))
    results = build_results(series, label_map, algorithm=ALGORITHM)
    findings = _gate(GateMode.BLOCK).check(series, stage(results), source_file=source_file)
    assert findings.passed
    assert all(o.inherited >= 1 and o.introduced_count == 0 for o in findings.objects)
    record = findings.as_json()
    assert len(record["objects"]) == len(results.datasets())  # each shows what it inherits


def _with_wrong_referenced_series(results: ResultSet) -> ResultSet:
    assert results.seg is not None
    seg = copy.deepcopy(results.seg)
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = generate_uid()
    return ResultSet(results.measurements, seg, results.sr, results.overlay)


def _without_mandatory_sr_attribute(results: ResultSet) -> ResultSet:
    sr = copy.deepcopy(results.sr)
    del sr.CompletionFlag  # Type 1 in the SR Document General module
    return ResultSet(results.measurements, results.seg, sr, results.overlay)


@pytest.mark.parametrize(
    ("breaking", "kind"),
    [(_with_wrong_referenced_series, "structure"), (_without_mandatory_sr_attribute, "SR")],
)
def test_broken_results_are_blocked(
    results: ResultSet,
    series: ImageSeries,
    source_file: Path,
    stage: Stage,
    breaking: Callable[[ResultSet], ResultSet],
    kind: str,
) -> None:
    broken = breaking(results)
    with pytest.raises(ConformanceError, match="conformance gate") as caught:
        _gate(GateMode.BLOCK).check(series, stage(broken), source_file=source_file)
    assert kind in caught.value.findings.errors_by_kind()
    record = caught.value.findings.as_json()
    assert record["passed"] is False and record["mode"] == "block"


def test_warn_returns_the_findings_and_off_checks_nothing(
    results: ResultSet, series: ImageSeries, source_file: Path, stage: Stage
) -> None:
    broken = _without_mandatory_sr_attribute(results)
    warned = _gate(GateMode.WARN).check(series, stage(broken), source_file=source_file)
    assert not warned.passed
    [sr] = [o for o in warned.objects if o.kind == "SR"]
    assert sr.introduced_count >= 1
    assert any("CompletionFlag" in line for line in sr.introduced)
    off = _gate(GateMode.OFF).check(series, stage(broken), source_file=source_file)
    assert off.passed and not off.validated and off.objects == ()


def test_validator_lines_lose_the_values_they_quote() -> None:
    line = (
        "Error - </StudyID(0020,0010)[1]> - Value invalid for this VR [SH] = "
        "<IBSI_1_STS_002_CT> - Length invalid for this VR = <17> - expected <= 16"
    )
    shown = redacted(line)
    assert "IBSI_1_STS_002_CT" not in shown and "StudyID" in shown
    cut = "Error - </SegmentLabel(0062,0005)[1]> - Value invalid for this VR [LO] = <Bone"
    assert redacted(cut).endswith("[LO] = <...>")
    module = "Error - </Laterality(0020,0060)> - Missing attribute - Module=<GeneralSeries>"
    assert redacted(module) == module


def test_structural_problems_name_what_is_wrong(results: ResultSet, series: ImageSeries) -> None:
    assert results.seg is not None
    seg = copy.deepcopy(results.seg)
    seg.ContentDescription = "segmentation"
    seg.Rows = int(seg.Rows) + 1
    sc = copy.deepcopy(results.overlay[0])
    sc.SOPInstanceUID = results.sr.SOPInstanceUID
    sc.SeriesDescription = "overlay"
    problems = structural_problems([seg, results.sr, sc], series)
    assert "SEG: Content Description lacks the AI review label" in problems
    assert "SEG: Rows differs from the source's" in problems
    assert "two instances share a SOP Instance UID" in problems
    assert "SC: Series Description lacks the AI review label" in problems


def test_a_source_date_not_in_da_form_is_left_out_of_the_results(
    tmp_path: Path, demo_study: Path, stage: Stage
) -> None:
    """Before: a Patient's Birth Date of ``1970-01-01`` (not DA) made highdicom refuse to
    write the SR, so the job failed; a Study Time of ``10:30`` would have been copied into
    every result, an error each."""
    for path in sorted((demo_study / "image").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.PatientBirthDate, ds.StudyTime = "1970-01-01", "10:30"
        ds.save_as(tmp_path / path.name)
    series = read_image_series(tmp_path)
    mask = (series.volume.array > 300).astype(np.uint8)
    label_map = LabelMap(series.volume.with_array(mask), (SegmentInfo(1, "Bone"),))
    results = build_results(series, label_map, algorithm=ALGORITHM)
    for ds in results.datasets():
        assert ds.PatientBirthDate == "" and ds.StudyTime == ""
    source_file = sorted(tmp_path.glob("*.dcm"))[0]
    findings = _gate(GateMode.BLOCK).check(series, stage(results), source_file=source_file)
    assert findings.passed


def test_references_the_source_itself_holds_are_not_the_results_own(
    tmp_path: Path, demo_study: Path, stage: Stage
) -> None:
    """Found on a GE CT: its Referenced Study Sequence (and a scout in its Referenced Image
    Sequence) name instances outside the series; highdicom copies the study reference into
    the SEG and SR, and the gate took it for a reference of theirs."""
    elsewhere = generate_uid()
    for path in sorted((demo_study / "image").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
        item.ReferencedSOPInstanceUID = elsewhere
        ds.ReferencedStudySequence = [item]
        scout = Dataset()
        scout.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        scout.ReferencedSOPInstanceUID = generate_uid()
        ds.ReferencedImageSequence = [scout]
        ds.save_as(tmp_path / path.name)
    series = read_image_series(tmp_path)
    mask = (series.volume.array > 300).astype(np.uint8)
    label_map = LabelMap(series.volume.with_array(mask), (SegmentInfo(1, "Bone"),))
    results = build_results(series, label_map, algorithm=ALGORITHM)
    assert results.seg is not None and "ReferencedStudySequence" in results.seg
    assert structural_problems(results.datasets(), series) == []
    source_file = sorted(tmp_path.glob("*.dcm"))[0]
    assert _gate(GateMode.BLOCK).check(series, stage(results), source_file=source_file).passed
