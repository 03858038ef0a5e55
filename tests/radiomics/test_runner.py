"""Radiomics in the pipeline: the real demo model on the bundled study, the features in the
TID 1500 SR (read back by highdicom and dcmqi, checked by dciodvfy) and in the feature table.

The parameter set is a small one (original image; shape and first order, 32 features) so
that the module stays quick; ``tests/radiomics/test_sr_features.py`` writes every feature
of ``default.yaml`` into an SR.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pytest

from radserve.dicom_io import (
    ImageSeries,
    LabelMap,
    SegmentInfo,
    build_results,
    read_image_series,
    read_sr_measurements,
)
from radserve.inference import CPU, Predictor, RuntimeSettings, load_model_package
from radserve.radiomics import (
    CODING_SCHEMES,
    PRIVATE_SCHEME,
    PRIVATE_SCHEME_NAME,
    PRIVATE_SCHEME_ORGANIZATION,
    PRIVATE_SCHEME_VERSION,
    ExtractionOptions,
    ParameterSet,
    ParameterSetError,
    RadiomicsPool,
    RadiomicsRunner,
    RadiomicsStepError,
    RadiomicsTimeoutError,
    extra_measurements,
    extract_features,
    feature_table,
    load_parameter_set,
    parse_description,
    resolve_parameter_set,
    without_features,
)
from radserve.server import PipelineResult, algorithm_identity, run_pipeline
from tests.conftest import REPO_ROOT
from tests.dicom_io.sr.test_sr import _tid1500reader
from tests.onnx_models import SMALL_SET_FILE, write_small_set
from tests.processes import process_alive
from tests.radiomics_sets import bone_package

REAL_PACKAGE = REPO_ROOT / "models" / "sts-ct-gtv" / "1.1.0"
CPU_ONLY = RuntimeSettings(providers=(CPU,))


@dataclass(frozen=True)
class Run:
    series: ImageSeries
    parameter_set: ParameterSet
    result: PipelineResult
    sr_path: Path


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> ParameterSet:
    return load_parameter_set(write_small_set(tmp_path_factory.mktemp("sets")))


@pytest.fixture(scope="module")
def run(demo_study: Path, small_set: ParameterSet, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The real sts-ct-gtv model on the demo CT, with radiomics."""
    series = read_image_series(demo_study / "image")
    predictor = Predictor(load_model_package(REAL_PACKAGE), runtime=CPU_ONLY)
    result = run_pipeline(series, predictor, radiomics=RadiomicsRunner(small_set))
    path = tmp_path_factory.mktemp("radiomics_pipeline") / "sr.dcm"
    result.results.sr.save_as(path, enforce_file_format=True)
    return Run(series, small_set, result, path)


def _algorithm_parameters(measurement: hd.sr.Measurement) -> list[str]:
    return [
        str(item.TextValue)
        for item in measurement[0].get("ContentSequence", [])
        if item.ConceptNameCodeSequence[0].CodeValue == "111002"
    ]


def test_the_sr_carries_every_feature_as_extract_features_computes_it(run: Run) -> None:
    label_map = run.result.prediction.label_map
    expected = extract_features(run.series.volume, label_map, parameter_set=run.parameter_set)
    assert list(run.result.features) == expected
    (segment,) = expected
    assert segment.segment_name == "GTV" and len(segment.features) == 32
    assert run.result.parameter_set == run.parameter_set.identifier

    (group,) = hd.sr.srread(run.sr_path).content.get_volumetric_roi_measurement_groups()
    assert group.tracking_identifier == "GTV"
    read: dict[tuple[str, str], Any] = {}
    for item in group.get_measurements():
        (description,) = _algorithm_parameters(item) or ("",)
        if description:
            numeric_value = float(item[0].MeasuredValueSequence[0].NumericValue)
            key = (str(item.name.scheme_designator), str(item.name.value))
            read[key] = (item.value, numeric_value, item.unit.value, description)
    assert len(read) == len(segment.features)
    for feature in segment.features:
        value, numeric_value, unit, description = read[(feature.code.scheme, feature.code.value)]
        assert value == feature.value  # the Floating Point Value (FD): exact
        assert numeric_value == pytest.approx(feature.value, rel=1e-9)  # the 16-character DS
        assert unit == feature.unit.value
        assert parse_description(description) == (feature.name, run.parameter_set.identifier)
    schemes = {f.code.scheme for f in segment.features}
    assert schemes == {"IBSI", PRIVATE_SCHEME}

    by_meaning = read_sr_measurements(run.sr_path)["GTV"]
    (measured,) = run.result.results.measurements
    assert by_meaning["Volume"] == measured.volume_mm3
    assert len(by_meaning) == 5 + len(segment.features)  # volume, 4 HU statistics, features
    assert by_meaning["Sphericity"] == segment.values()["original_shape_Sphericity"]


def test_the_private_scheme_is_identified_in_the_sr(run: Run) -> None:
    (item,) = run.result.results.sr.CodingSchemeIdentificationSequence
    assert item.CodingSchemeDesignator == PRIVATE_SCHEME
    assert item.CodingSchemeName == PRIVATE_SCHEME_NAME
    assert item.CodingSchemeVersion == PRIVATE_SCHEME_VERSION
    assert item.CodingSchemeResponsibleOrganization == PRIVATE_SCHEME_ORGANIZATION
    assert [s.designator for s in CODING_SCHEMES] == [PRIVATE_SCHEME]


def test_the_sr_stays_valid(run: Run, demo_study: Path, dciodvfy: Callable[[Path], Any]) -> None:
    report = dciodvfy(run.sr_path)
    assert "Comprehensive3DSR" in report.output
    source_errors = set(dciodvfy(sorted((demo_study / "image").iterdir())[0]).errors)
    assert [e for e in report.errors if e not in source_errors] == []


def test_dcmqi_reads_the_features(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "sr.json"
    proc = subprocess.run(
        [str(_tid1500reader()), "--inputDICOM", str(run.sr_path), "--outputMetadata", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The volumetric group (the SEG segment, every feature), then the key-slice planar group.
    volumetric, planar = json.loads(out.read_text())["Measurements"]
    assert (volumetric["TrackingIdentifier"], planar["TrackingIdentifier"]) == ("GTV", "GTV")
    assert "ReferencedSegment" in volumetric and "ReferencedSegment" not in planar
    group = volumetric
    read = {
        (item["quantity"]["CodingSchemeDesignator"], item["quantity"]["CodeValue"]): item
        for item in group["measurementItems"]
    }
    (segment,) = run.result.features
    for feature in segment.features:
        item = read[(feature.code.scheme, feature.code.value)]
        assert float(item["value"]) == pytest.approx(feature.value, rel=1e-9, abs=1e-12)
        assert item["units"]["CodeValue"] == feature.unit.value


def test_the_feature_table_is_the_radiomics_table(run: Run) -> None:
    table = run.result.feature_table()
    assert table == feature_table(run.result.features)
    assert json.loads(json.dumps(table, allow_nan=False)) == table
    (record,) = table
    assert (record["label"], record["segment"]) == (1, "GTV")
    assert record["parameter_set"] == run.parameter_set.identifier


def test_a_too_small_segment_is_skipped_not_failed(run: Run) -> None:
    predicted = run.result.prediction.label_map
    labels = np.asarray(predicted.volume.array).copy()
    labels[0, 0, 0] = 2  # one voxel, far from the tumour
    labelmap = LabelMap(
        predicted.volume.with_array(labels), (*predicted.segments, SegmentInfo(2, "Speck"))
    )
    features = RadiomicsRunner(run.parameter_set).run(run.series.volume, labelmap)
    assert [(f.label, len(f.features) > 0) for f in features] == [(1, True), (2, False)]
    (skipped,) = features[1].skipped
    assert skipped.name == "*" and skipped.reason
    assert without_features(features) == {"rejected": 1}

    results = build_results(
        run.series,
        labelmap,
        algorithm=algorithm_identity(load_model_package(REAL_PACKAGE)),
        extra_measurements=extra_measurements(features),
        coding_schemes=CODING_SCHEMES,
    )
    read = read_sr_measurements(results.sr)
    assert len(read["GTV"]) == 5 + len(features[0].features)
    assert set(read["Speck"]) == {
        "Volume",
        *(f"Attenuation Coefficient ({d})" for d in ("Mean", "Minimum", "Maximum")),
        "Attenuation Coefficient (Standard Deviation)",
    }


def test_no_findings_means_no_radiomics(
    tmp_path: Path, demo_study: Path, small_set: ParameterSet
) -> None:
    series = read_image_series(demo_study / "image")
    directory = bone_package(tmp_path, spacing_mm=series.volume.spacing_mm, threshold_hu=3000.0)
    predictor = Predictor(load_model_package(directory), runtime=CPU_ONLY)
    result = run_pipeline(series, predictor, radiomics=RadiomicsRunner(small_set))
    assert result.results.no_findings
    assert result.features == () and result.feature_table() == []
    assert result.parameter_set == small_set.identifier
    assert read_sr_measurements(result.results.sr) == {"Bone": {}}
    assert "CodingSchemeIdentificationSequence" not in result.results.sr


def test_parameter_sets_resolve_in_the_package_then_in_configs(tmp_path: Path) -> None:
    package = tmp_path / "package"
    write_small_set(package)
    assert resolve_parameter_set(package, "default") == load_parameter_set("default")
    write_small_set(package, "default.yaml")  # the package's own "default" wins
    shipped = resolve_parameter_set(package, "default")
    assert shipped.name == "default"
    assert shipped.sha256 == resolve_parameter_set(package, SMALL_SET_FILE).sha256
    assert shipped.sha256 != load_parameter_set("default").sha256
    write_small_set(package / "sets", "ct.yml")
    assert resolve_parameter_set(package, "sets/ct.yml").name == "ct"
    with pytest.raises(ParameterSetError, match=r"unknown parameter set 'nope'; known: \["):
        resolve_parameter_set(package, "nope")
    with pytest.raises(ParameterSetError, match="parameter file not found"):
        resolve_parameter_set(package, "missing.yaml")


def _cpu_ticks(pid: int) -> int:
    """User and system CPU time of ``pid`` so far, in clock ticks (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[-1].split()
    return int(fields[11]) + int(fields[12])


def test_a_pool_whose_worker_died_is_replaced(run: Run) -> None:
    pool = RadiomicsPool(1)
    runner = RadiomicsRunner(run.parameter_set, pool=pool)
    label_map = run.result.prediction.label_map
    try:
        broken = pool.executor()
        # A first job: the worker has imported everything and now waits, idle.
        assert runner.run(run.series.volume, label_map) == list(run.result.features)
        worker = broken.submit(os.getpid).result(timeout=120)
        # A long job (every filter of the default set); its worker process dies while it runs.
        slow = RadiomicsRunner(load_parameter_set("default"), pool=pool)
        with ThreadPoolExecutor(max_workers=1) as thread:
            job = thread.submit(slow.run, run.series.volume, label_map)
            idle = _cpu_ticks(worker)
            started = time.monotonic()
            while _cpu_ticks(worker) < idle + 20 and time.monotonic() < started + 120:
                time.sleep(0.01)
            assert not job.done(), "the job ended before its worker was killed"
            os.kill(worker, signal.SIGKILL)
            with pytest.raises(RadiomicsStepError, match="worker process stopped"):
                job.result(timeout=120)
        assert pool.executor() is not broken
        assert runner.run(run.series.volume, label_map) == list(run.result.features)
    finally:
        pool.shutdown()
    with pytest.raises(RadiomicsStepError, match="shut down"):
        pool.executor()


def _with_speck(label_map: LabelMap) -> LabelMap:
    """``label_map`` and a second segment: a 3x3x3 cube away from the tumour."""
    labels = np.asarray(label_map.volume.array).copy()
    labels[:3, :3, :3] = 2
    return LabelMap(
        label_map.volume.with_array(labels), (*label_map.segments, SegmentInfo(2, "Speck"))
    )


def test_extraction_stops_at_its_deadline_and_keeps_what_finished(run: Run) -> None:
    label_map = _with_speck(run.result.prediction.label_map)
    deadline = time.monotonic() + 0.05

    def past_the_deadline(_: object) -> None:  # the first segment's result arrives late
        time.sleep(max(0.0, deadline - time.monotonic()) + 0.01)

    with pytest.raises(RadiomicsTimeoutError, match="1 of 2 segment") as info:
        extract_features(
            run.series.volume,
            label_map,
            parameter_set=run.parameter_set,
            options=ExtractionOptions(deadline=deadline, progress=past_the_deadline),
        )
    assert info.value.completed == list(run.result.features)
    assert info.value.unfinished == [2]


def test_a_job_past_the_radiomics_time_limit_goes_on_without_features(run: Run) -> None:
    pool = RadiomicsPool(1)
    label_map = _with_speck(run.result.prediction.label_map)
    try:
        executor = pool.executor()
        workers = [executor.submit(os.getpid).result(timeout=120)]
        # Far too short for the first segment: the running task is terminated.
        hurried = RadiomicsRunner(run.parameter_set, pool=pool, timeout_s=0.01)
        features = hurried.run(run.series.volume, label_map)
        assert [(f.label, f.segment_name, f.features) for f in features] == [
            (1, "GTV", ()),
            (2, "Speck", ()),
        ]
        for segment in features:
            (skipped,) = segment.skipped
            assert skipped.name == "*"
            assert skipped.reason == (
                "radiomics stopped: not finished within the time limit (0.01 s)"
            )
        assert without_features(features) == {"time_limit": 2}
        deadline = time.monotonic() + 60
        while any(process_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(process_alive(pid) for pid in workers), "the stopped task still runs"

        # The next job gets a new pool and its features.
        assert pool.executor() is not executor
        patient = RadiomicsRunner(run.parameter_set, pool=pool, timeout_s=600)
        assert patient.run(run.series.volume, run.result.prediction.label_map) == list(
            run.result.features
        )
    finally:
        pool.shutdown()
