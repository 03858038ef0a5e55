"""A series where the model finds nothing still gets a result: SR "absent" + one key image."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pytest

from radserve.dicom_io import (
    AlgorithmIdentity,
    ImageSeries,
    LabelMap,
    MeasurementError,
    ResultSet,
    SegmentInfo,
    SegmentMeasurements,
    build_results,
    read_image_series,
    read_sr_measurements,
    sr_uids,
    write_sr,
)
from tests.dicom_io.sr.test_sr import _tid1500reader

ALGORITHM = AlgorithmIdentity(name="sts-ct-gtv", version="1.0.0", model_sha256="cd" * 32)
SEGMENTS = (SegmentInfo(1, "GTV"), SegmentInfo(2, "Node"))


@pytest.fixture(scope="module")
def series(demo_study: Path) -> ImageSeries:
    return read_image_series(demo_study / "image")


@pytest.fixture(scope="module")
def empty(series: ImageSeries) -> LabelMap:
    return LabelMap(series.volume.with_array(np.zeros(series.volume.shape, np.uint8)), SEGMENTS)


@pytest.fixture(scope="module")
def results(series: ImageSeries, empty: LabelMap) -> ResultSet:
    return build_results(series, empty, algorithm=ALGORITHM)


def test_no_seg_an_sr_and_one_key_image(results: ResultSet, series: ImageSeries) -> None:
    assert results.no_findings
    assert results.seg is None
    assert results.measurements == []
    assert [str(ds.Modality) for ds in results.datasets()] == ["SR", "OT"]
    (key_image,) = results.overlay
    middle = series.volume.shape[0] // 2
    assert key_image.InstanceNumber == middle + 1
    assert (
        key_image.SourceImageSequence[0].ReferencedSOPInstanceUID
        == series.headers[middle].SOPInstanceUID
    )
    series_uid = series.volume.series_instance_uid
    assert series_uid is not None
    assert results.sr.SOPInstanceUID == sr_uids(series_uid, ALGORITHM)[1]


def test_sr_says_each_segment_is_absent(results: ResultSet) -> None:
    report = hd.sr.Comprehensive3DSR.from_dataset(results.sr).content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = report.get_image_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["GTV", "Node"]
    for group in groups:
        absent = hd.sr.CodedConcept("272519000", "SCT", "Absent")
        (evaluation,) = [e for e in group.get_qualitative_evaluations() if e.value == absent]
        assert evaluation.name.value == SEGMENTS[0].type.value
        assert group.get_measurements() == []
    evidence = {
        str(item.ReferencedSOPInstanceUID)
        for study in results.sr.CurrentRequestedProcedureEvidenceSequence
        for se in study.ReferencedSeriesSequence
        for item in se.ReferencedSOPSequence
    }
    assert len(evidence) == 48  # the source slices only: there is no SEG to reference
    assert read_sr_measurements(results.sr) == {"GTV": {}, "Node": {}}


def test_written_objects_are_valid_and_readable(
    results: ResultSet, tmp_path: Path, dciodvfy: Callable[[Path], Any], demo_study: Path
) -> None:
    written = results.save(tmp_path)
    assert written["SEG"] == []
    assert not (tmp_path / "seg").exists()
    source_errors = set(dciodvfy(sorted((demo_study / "image").iterdir())[0]).errors)
    for path in [*written["SR"], *written["SC"]]:
        report = dciodvfy(path)
        assert [e for e in report.errors if e not in source_errors] == [], path
    out = tmp_path / "sr.json"
    proc = subprocess.run(
        [
            str(_tid1500reader()),
            *("--inputDICOM", str(written["SR"][0]), "--outputMetadata", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(out.read_text())
    assert meta["observerContext"]["DeviceObserverManufacturer"] == "radserve"


def test_measurements_without_a_seg_are_refused(series: ImageSeries, empty: LabelMap) -> None:
    invented = SegmentMeasurements(
        label=1, voxel_count=1, volume_mm3=1.0, mean=0.0, minimum=0.0, maximum=0.0, std=0.0
    )
    with pytest.raises(MeasurementError, match="need the SEG"):
        write_sr(series, None, empty, [invented], algorithm=ALGORITHM)
