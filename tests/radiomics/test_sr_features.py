"""Radiomic features in the TID 1500 SR: round trips through highdicom and dcmqi, dciodvfy.

The demo study (STS_002 CT + RTSTRUCT) is extracted with ``default.yaml`` (1130 features,
original, LoG and wavelet images) and every feature is written into the GTV's measurement
group, then read back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import pytest
from pydicom.dataset import Dataset

import radserve
from radserve.dicom_io import (
    MANUFACTURER,
    AlgorithmIdentity,
    SrOptions,
    measure_segments,
    read_image_series,
    read_rtstruct,
    write_seg,
    write_sr,
)
from radserve.radiomics import (
    CODING_SCHEMES,
    PRIVATE_SCHEME,
    PRIVATE_SCHEME_NAME,
    SegmentFeatures,
    extra_measurements,
    extract_features,
    load_parameter_set,
    parse_description,
)
from tests.conftest import require

ALGORITHM = AlgorithmIdentity(name="sts-ct-gtv", version="1.0.0", model_sha256="cd" * 32)


@dataclass(frozen=True)
class Written:
    features: SegmentFeatures
    sr_path: Path
    sr: Dataset


@pytest.fixture(scope="module")
def written(demo_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Written:
    series = read_image_series(demo_study / "image")
    labelmap = read_rtstruct(demo_study / "mask" / "RS.dcm", series.volume)
    (features,) = extract_features(series.volume, labelmap, parameter_set="default")
    seg = write_seg(series, labelmap, algorithm=ALGORITHM)
    sr = write_sr(
        series,
        seg,
        labelmap,
        measure_segments(series.volume, labelmap),
        algorithm=ALGORITHM,
        options=SrOptions(
            extra_measurements=extra_measurements([features]), coding_schemes=CODING_SCHEMES
        ),
    )
    path = tmp_path_factory.mktemp("radiomics_sr") / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return Written(features, path, sr)


def _key(code: Any) -> tuple[str, str]:
    return (str(code.scheme_designator), str(code.value))


def _algorithm_parameters(measurement: hd.sr.Measurement) -> list[str]:
    """The TEXT items "Algorithm Parameters" (DCM 111002) under a NUM item."""
    return [
        str(item.TextValue)
        for item in measurement[0].get("ContentSequence", [])
        if item.ConceptNameCodeSequence[0].CodeValue == "111002"
    ]


def test_highdicom_reads_back_every_feature_exactly(written: Written) -> None:
    features = written.features
    assert features.segment_name == "GTV_Mass_CT"
    assert len(features.features) == 1130 and features.skipped == ()
    (group,) = hd.sr.srread(written.sr_path).content.get_volumetric_roi_measurement_groups()
    read = {}
    for item in group.get_measurements():
        parameters = _algorithm_parameters(item)
        if not parameters:  # volume and HU statistics
            continue
        (description,) = parameters
        read[_key(item.name)] = (item.value, item.unit.value, parse_description(description))
    identifier = load_parameter_set("default").identifier
    assert len(read) == len(features.features)
    for feature in features.features:
        value, unit, (name, parameter_set) = read[(feature.code.scheme, feature.code.value)]
        assert value == feature.value  # the Floating Point Value: exact
        assert unit == feature.unit.value
        assert (name, parameter_set) == (feature.name, identifier)
    ibsi = [f for f in features.features if f.code.scheme == "IBSI"]
    assert len(ibsi) == 98  # the IBSI-coded features PyRadiomics does not deprecate
    assert read[("IBSI", "QCFX")][2][0] == "original_shape_Sphericity"
    assert read[("IBSI", "Q4LE")][1] == "[hnsf'U]"


def test_dcmqi_tid1500reader_reads_the_features(written: Written, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "tid1500reader"
    found = str(exe) if exe.exists() else shutil.which("tid1500reader")
    require(found is not None, "dcmqi tid1500reader not installed (pip install dcmqi)")
    out = tmp_path / "sr.json"
    proc = subprocess.run(
        [str(found), "--inputDICOM", str(written.sr_path), "--outputMetadata", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The volumetric group carries the features; the key-slice planar group follows it.
    group, planar = json.loads(out.read_text())["Measurements"]
    assert planar["TrackingIdentifier"] == group["TrackingIdentifier"]
    read = {
        (item["quantity"]["CodingSchemeDesignator"], item["quantity"]["CodeValue"]): item
        for item in group["measurementItems"]
    }
    for feature in written.features.features:
        item = read[(feature.code.scheme, feature.code.value)]
        # dcmqi reads the 16-character Numeric Value (DS).
        assert float(item["value"]) == pytest.approx(feature.value, rel=1e-9, abs=1e-12)
        assert item["units"]["CodeValue"] == feature.unit.value
        assert item["quantity"]["CodeMeaning"] == feature.code.meaning


def test_dciodvfy_reports_no_new_errors(
    written: Written, demo_study: Path, dciodvfy: Callable[[Path], Any]
) -> None:
    report = dciodvfy(written.sr_path)
    assert "Comprehensive3DSR" in report.output
    source_errors = set(dciodvfy(sorted((demo_study / "image").iterdir())[0]).errors)
    assert [e for e in report.errors if e not in source_errors] == []


def test_the_private_scheme_is_identified_once(written: Written) -> None:
    sr = hd.sr.srread(written.sr_path)
    (item,) = sr.CodingSchemeIdentificationSequence
    assert (item.CodingSchemeDesignator, item.CodingSchemeName) == (
        PRIVATE_SCHEME,
        PRIVATE_SCHEME_NAME,
    )
    private = [f for f in written.features.features if f.code.scheme == PRIVATE_SCHEME]
    assert len(private) == len(written.features.features) - 98


def _feature_items(item: Dataset) -> list[Dataset]:
    """The NUM items with algorithm parameters anywhere under ``item``, in document order."""
    found = []
    for child in item.get("ContentSequence", []):
        if child.ValueType == "NUM" and _algorithm_parameters([child]):
            found.append(child)
        found.extend(_feature_items(child))
    return found


def test_the_feature_items_are_those_highdicom_builds(written: Written) -> None:
    """The NUM items are built directly (for speed); element for element they are what
    ``hd.sr.Measurement`` with an ``AlgorithmIdentification`` makes."""
    (extras,) = extra_measurements([written.features]).values()
    built = _feature_items(written.sr)
    assert len(built) == len(extras) == 1130
    for item, extra in zip(built, extras, strict=True):
        (expected,) = hd.sr.Measurement(
            name=hd.sr.CodedConcept(extra.name.value, extra.name.scheme, extra.name.meaning),
            value=extra.value,
            unit=hd.sr.CodedConcept(extra.unit.value, extra.unit.scheme, extra.unit.meaning),
            algorithm_id=hd.sr.AlgorithmIdentification(
                name=MANUFACTURER, version=radserve.__version__, parameters=[extra.description]
            ),
        )
        assert Dataset(item) == Dataset(expected), extra.description
