"""The TID 1500 measurement report: round trips through highdicom and dcmqi, validation, UIDs."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from skimage.draw import polygon

from radserve.dicom_io import (
    ANATOMICAL_STRUCTURE,
    AlgorithmIdentity,
    Code,
    CodingSchemeIdentification,
    ImageSeries,
    LabelMap,
    MeasurementError,
    NumericMeasurement,
    SegmentInfo,
    SegmentMeasurements,
    SrOptions,
    maximum_3d_diameter_mm,
    measure_segments,
    read_image_series,
    read_sr_measurements,
    sr_uids,
    write_seg,
    write_sr,
)
from tests.conftest import require

ALGORITHM = AlgorithmIdentity(name="sts-ct-gtv", version="1.0.0", model_sha256="ab" * 32)
BONE = Code("272673000", "SCT", "Bone")
SPHERICITY = NumericMeasurement(
    Code("QCFX", "IBSI", "Sphericity"),
    0.6180339887498949,
    Code("1", "UCUM", "no units"),
    description="original_shape_Sphericity",
)
HU_MEAN = "Attenuation Coefficient (Mean)"
PRIVATE = NumericMeasurement(
    Code("R0123456789AB", "99TEST", "test feature"),
    2.5,
    Code("mm", "UCUM", "millimeter"),
    description="test_feature",
)
TEST_SCHEME = CodingSchemeIdentification(
    "99TEST", "radserve test scheme", version="2", responsible_organization="radserve tests"
)


@dataclass(frozen=True)
class Case:
    """Everything one SR is written from, and the SR written to disk."""

    series: ImageSeries
    labelmap: LabelMap
    measurements: list[SegmentMeasurements]
    seg: Dataset
    sr: Dataset
    sr_path: Path


@pytest.fixture(scope="module")
def case(demo_study: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Case:
    """STS_002: GTV (label 1), dense bone outside it (label 3), an absent segment (label 2)."""
    series = read_image_series(demo_study / "image")
    volume = series.volume
    mask = sitk.ReadImage(str(shared_data / "sts_ct/nifti/STS_002/mask.nii.gz"))
    mask = sitk.Resample(
        mask, volume.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )
    labels = sitk.GetArrayFromImage(mask)
    labels[(volume.array > 300) & (labels == 0)] = 3
    segments = (
        SegmentInfo(1, "GTV"),
        SegmentInfo(2, "Absent"),
        SegmentInfo(3, "Bone", ANATOMICAL_STRUCTURE, BONE),
    )
    labelmap = LabelMap(volume.with_array(labels), segments)
    measurements = measure_segments(volume, labelmap)
    seg = write_seg(series, labelmap, algorithm=ALGORITHM)
    sr = write_sr(
        series,
        seg,
        labelmap,
        measurements,
        algorithm=ALGORITHM,
        options=SrOptions(extra_measurements={1: [SPHERICITY]}),
    )
    sr_path = tmp_path_factory.mktemp("sr") / "sr.dcm"
    sr.save_as(sr_path, enforce_file_format=True)
    return Case(series, labelmap, measurements, seg, sr, sr_path)


def _expected(case: Case) -> dict[str, dict[str, float]]:
    names = {s.label: s.name for s in case.labelmap.segments}
    expected = {
        names[m.label]: {
            "Volume": m.volume_mm3,
            HU_MEAN: m.mean,
            "Attenuation Coefficient (Minimum)": m.minimum,
            "Attenuation Coefficient (Maximum)": m.maximum,
            "Attenuation Coefficient (Standard Deviation)": m.std,
        }
        for m in case.measurements
    }
    expected["GTV"]["Sphericity"] = SPHERICITY.value
    return expected


def test_highdicom_reads_back_the_same_values(case: Case) -> None:
    assert [m.label for m in case.measurements] == [1, 3]
    read = read_sr_measurements(case.sr_path)
    assert read == _expected(case)  # exact: the Floating Point Value is stored too
    assert read["GTV"]["Volume"] == pytest.approx(17090 * 0.976562**2 * 3.27, rel=1e-6)


def test_groups_reference_seg_segments_and_codes(case: Case) -> None:
    sr = hd.sr.srread(case.sr_path)
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["GTV", "Bone"]
    references = [g.referenced_segment for g in groups]
    assert [r.referenced_segment_numbers for r in references] == [[1], [2]]
    assert {r.referenced_sop_instance_uid for r in references} == {case.seg.SOPInstanceUID}
    seg_labels = {s.SegmentNumber: s.SegmentLabel for s in case.seg.SegmentSequence}
    assert [seg_labels[2]] == ["Bone"]
    assert [g.finding_type.value for g in groups] == ["108369006", BONE.value]
    assert [g.finding_category.value for g in groups] == ["49755003", "123037004"]
    volume_item = groups[0].get_measurements(name=hd.sr.CodedConcept("118565006", "SCT", "Volume"))
    assert volume_item[0].unit.value == "mm3"
    hu = [m for m in groups[0].get_measurements() if m.derivation is not None]
    assert {m.unit.value for m in hu} == {"[hnsf'U]"}
    observer = sr.content.get_observer_contexts()[0]
    attributes = observer.observer_identifying_attributes
    assert observer.observer_type.meaning == "Device"
    assert attributes.model_name == "sts-ct-gtv 1.0.0"
    assert attributes.manufacturer_name == "radserve"


def test_header_identifies_model_and_study(case: Case) -> None:
    sr, source = case.sr, case.series.headers[0]
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert sr.Modality == "SR"
    assert sr.Manufacturer == "radserve"
    assert sr.SeriesDescription == "AI measurements (sts-ct-gtv 1.0.0) - requires review"
    assert sr.VerificationFlag == "UNVERIFIED"
    assert (sr.StudyInstanceUID, sr.PatientID) == (source.StudyInstanceUID, source.PatientID)
    equipment = [
        item for item in sr.ContributingEquipmentSequence if item.Manufacturer == "radserve"
    ]
    assert [item.ManufacturerModelName for item in equipment] == ["sts-ct-gtv 1.0.0"]
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence == {*case.series.volume.sop_instance_uids, case.seg.SOPInstanceUID}


def _tid1500reader() -> Path:
    exe = Path(sys.executable).parent / "tid1500reader"
    found = str(exe) if exe.exists() else shutil.which("tid1500reader")
    require(found is not None, "dcmqi tid1500reader not installed (pip install dcmqi)")
    return Path(str(found))


def test_dcmqi_reads_the_same_values_and_references(case: Case, tmp_path: Path) -> None:
    out = tmp_path / "sr.json"
    proc = subprocess.run(
        [str(_tid1500reader()), "--inputDICOM", str(case.sr_path), "--outputMetadata", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    meta: dict[str, Any] = json.loads(out.read_text())
    series_uid = case.series.volume.series_instance_uid
    expected = _expected(case)
    # The volumetric groups, then the key-slice planar groups of the same segments.
    assert [m["TrackingIdentifier"] for m in meta["Measurements"]] == ["GTV", "Bone"] * 2
    for group, number in zip(meta["Measurements"][:2], [1, 2], strict=True):
        assert group["ReferencedSegment"] == number
        assert group["SourceSeriesForImageSegmentation"] == series_uid
        assert group["segmentationSOPInstanceUID"] == case.seg.SOPInstanceUID
        assert group["measurementAlgorithmIdentification"]["AlgorithmName"] == "sts-ct-gtv"
        values = {}
        for item in group["measurementItems"]:
            key = item["quantity"]["CodeMeaning"]
            if "derivationModifier" in item:
                key += f" ({item['derivationModifier']['CodeMeaning']})"
            values[key] = float(item["value"])  # the 16-character Numeric Value
        want = expected[group["TrackingIdentifier"]]
        assert values.keys() == want.keys()
        for key, value in want.items():
            assert values[key] == pytest.approx(value, rel=1e-12, abs=1e-12)
    assert meta["Measurements"][1]["Finding"]["CodeValue"] == BONE.value
    assert meta["procedureReported"]["CodeValue"] == "25045-6"
    assert meta["observerContext"]["DeviceObserverManufacturer"] == "radserve"


def test_dciodvfy_reports_no_new_errors(
    case: Case, demo_study: Path, dciodvfy: Callable[[Path], Any]
) -> None:
    report = dciodvfy(case.sr_path)
    assert "Comprehensive3DSR" in report.output
    # The source study's own defects (a 17-character Study ID) are copied, not introduced.
    source_errors = set(dciodvfy(sorted((demo_study / "image").iterdir())[0]).errors)
    assert [e for e in report.errors if e not in source_errors] == []


def test_uids_are_deterministic(case: Case) -> None:
    again = write_sr(
        case.series,
        case.seg,
        case.labelmap,
        case.measurements,
        algorithm=ALGORITHM,
        options=SrOptions(extra_measurements={1: [SPHERICITY]}),
    )
    series_uid = case.series.volume.series_instance_uid
    assert series_uid is not None
    assert (again.SeriesInstanceUID, again.SOPInstanceUID) == sr_uids(series_uid, ALGORITHM)
    assert (again.SeriesInstanceUID, again.SOPInstanceUID) == (
        case.sr.SeriesInstanceUID,
        case.sr.SOPInstanceUID,
    )
    assert again.SeriesInstanceUID != again.SOPInstanceUID

    def tracking_uids(ds: Dataset) -> list[str]:
        groups = hd.sr.Comprehensive3DSR.from_dataset(ds).content
        return [str(g.tracking_uid) for g in groups.get_volumetric_roi_measurement_groups()]

    assert tracking_uids(again) == tracking_uids(case.sr)
    assert len(set(tracking_uids(again))) == 2
    newer = write_sr(
        case.series,
        case.seg,
        case.labelmap,
        case.measurements,
        algorithm=replace(ALGORITHM, version="1.0.1"),
    )
    assert newer.SOPInstanceUID != case.sr.SOPInstanceUID
    assert set(tracking_uids(newer)).isdisjoint(tracking_uids(case.sr))


def test_bad_input_is_refused_clearly(case: Case) -> None:
    def write(measurements: list[SegmentMeasurements], **kwargs: Any) -> Dataset:
        return write_sr(
            case.series, case.seg, case.labelmap, measurements, algorithm=ALGORITHM, **kwargs
        )

    stranger = replace(case.measurements[0], label=7)
    with pytest.raises(MeasurementError, match=r"labels not in the label map: \[7\]"):
        write([*case.measurements, stranger])
    with pytest.raises(MeasurementError, match="no measurements"):
        write([])
    with pytest.raises(MeasurementError, match=r"without measurements: \[3\]"):
        write(case.measurements[:1], options=SrOptions(extra_measurements={3: [SPHERICITY]}))
    absent = replace(case.measurements[0], label=2)  # in the label map, but not in the SEG
    with pytest.raises(MeasurementError, match="no segment labelled 'Absent'"):
        write([absent])
    other_series = copy.deepcopy(case.seg)
    other_series.FrameOfReferenceUID = "1.2.3.4"
    with pytest.raises(MeasurementError, match="Frame of Reference"):
        write_sr(case.series, other_series, case.labelmap, case.measurements, algorithm=ALGORITHM)
    with pytest.raises(MeasurementError, match="not a DICOM SEG"):
        write_sr(case.series, case.sr, case.labelmap, case.measurements, algorithm=ALGORITHM)
    with pytest.raises(ValueError, match="UCUM"):
        NumericMeasurement(Code("QCFX", "IBSI", "Sphericity"), 0.5, Code("1", "DCM", "none"))
    with pytest.raises(ValueError, match="finite"):
        NumericMeasurement(Code("QCFX", "IBSI", "Sphericity"), float("nan"), SPHERICITY.unit)


def test_other_modalities_report_volume_only(case: Case) -> None:
    volume = replace(case.series.volume, modality="US")
    series = ImageSeries(volume=volume, headers=case.series.headers)
    sr = write_sr(series, case.seg, case.labelmap, case.measurements, algorithm=ALGORITHM)
    read = read_sr_measurements(sr)
    assert read == {
        "GTV": {"Volume": case.measurements[0].volume_mm3},
        "Bone": {"Volume": case.measurements[1].volume_mm3},
    }


def test_reads_dcmqi_reference_report(shared_data: Path) -> None:
    read = read_sr_measurements(shared_data / "seg_sr/dcmqi/sr-example/sr.dcm")
    assert list(read) == ["primary tumor"]
    tumour = read["primary tumor"]
    assert tumour["SUVbw (Mean)"] == pytest.approx(6.01529)
    assert tumour["SUVbw (Minimum)"] == pytest.approx(2.91136)
    assert tumour["SUVbw (Maximum)"] == pytest.approx(10.3814)
    assert tumour["Volume"] == pytest.approx(33.5824)
    assert tumour["Total Lesion Glycolysis"] == pytest.approx(202.008)


def test_reading_a_non_sr_is_refused(demo_study: Path) -> None:
    with pytest.raises(MeasurementError, match="not an SR class"):
        read_sr_measurements(sorted((demo_study / "image").iterdir())[0])


def test_source_without_type2_attributes(case: Case, dciodvfy: Callable[[Path], Any]) -> None:
    first = copy.deepcopy(case.series.headers[0])  # as a de-identifier might leave it
    for keyword in ("PatientBirthDate", "PatientSex", "StudyID", "StudyDate", "AccessionNumber"):
        delattr(first, keyword)
    series = ImageSeries(case.series.volume, (first, *case.series.headers[1:]))
    sr = write_sr(series, case.seg, case.labelmap, case.measurements, algorithm=ALGORITHM)
    assert (sr.StudyDate, sr.StudyID, sr.PatientID) == ("", "", first.PatientID)
    assert "StudyDate" in case.series.headers[0]  # the source header is untouched
    path = Path(case.sr_path).with_name("stripped.dcm")
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy(path).errors == []
    assert read_sr_measurements(path) == read_sr_measurements(case.sr_path) | {
        "GTV": {k: v for k, v in _expected(case)["GTV"].items() if k != "Sphericity"}
    }


def test_labelmap_seg_segment_numbers_are_the_labels(case: Case) -> None:
    seg = write_seg(case.series, case.labelmap, algorithm=ALGORITHM, segmentation_type="LABELMAP")
    sr = write_sr(case.series, seg, case.labelmap, case.measurements, algorithm=ALGORITHM)
    groups = hd.sr.Comprehensive3DSR.from_dataset(sr).content
    references = {
        g.tracking_identifier: g.referenced_segment
        for g in groups.get_volumetric_roi_measurement_groups()
    }
    assert references["GTV"].referenced_segment_numbers == [1]
    assert references["Bone"].referenced_segment_numbers == [3]
    assert references["Bone"].referenced_sop_class_uid == seg.SOPClassUID


def test_private_coding_schemes_are_identified_only_when_used(
    case: Case, dciodvfy: Callable[[Path], Any], demo_study: Path
) -> None:
    def write(extras: dict[int, list[NumericMeasurement]]) -> Dataset:
        return write_sr(
            case.series,
            case.seg,
            case.labelmap,
            case.measurements,
            algorithm=ALGORITHM,
            options=SrOptions(extra_measurements=extras, coding_schemes=[TEST_SCHEME]),
        )

    assert "CodingSchemeIdentificationSequence" not in write({1: [SPHERICITY]})  # IBSI: PS3.16
    sr = write({1: [SPHERICITY], 3: [PRIVATE, PRIVATE]})
    (item,) = sr.CodingSchemeIdentificationSequence
    assert (
        item.CodingSchemeDesignator,
        item.CodingSchemeName,
        item.CodingSchemeVersion,
        item.CodingSchemeResponsibleOrganization,
    ) == ("99TEST", "radserve test scheme", "2", "radserve tests")
    assert "CodingSchemeRegistry" not in item
    read = read_sr_measurements(sr)
    assert read["GTV"]["Sphericity"] == SPHERICITY.value
    assert (read["Bone"]["test feature"], read["Bone"]["test feature #2"]) == (2.5, 2.5)
    # The extra items follow the group's own measurements, before the segment reference.
    groups = hd.sr.Comprehensive3DSR.from_dataset(sr).content
    bone = groups.get_volumetric_roi_measurement_groups()[1]
    kinds = [str(item.ValueType) for item in bone[0].ContentSequence]
    assert kinds[-9:] == ["NUM"] * 7 + ["IMAGE", "UIDREF"]
    assert bone.referenced_segment.referenced_segment_numbers == [2]
    path = case.sr_path.with_name("private.dcm")
    sr.save_as(path, enforce_file_format=True)
    source_errors = set(dciodvfy(sorted((demo_study / "image").iterdir())[0]).errors)
    assert [e for e in dciodvfy(path).errors if e not in source_errors] == []
    with pytest.raises(ValueError, match="registry and uid"):
        CodingSchemeIdentification("99X", "x", registry="HL7")


def test_the_sr_series_is_dated(case: Case) -> None:
    sr = pydicom.dcmread(case.sr_path, stop_before_pixels=True)
    assert (sr.SeriesDate, sr.SeriesTime) == (sr.ContentDate, sr.ContentTime)


def test_key_slice_planar_groups_for_viewers(case: Case) -> None:
    """Each segment also has a TID 1410 group on its key slice: what OHIF displays."""
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(case.sr_path))
    planar = sr.content.get_planar_roi_measurement_groups()
    assert [str(g.tracking_identifier) for g in planar] == ["GTV", "Bone"]
    library = [
        item
        for item in pydicom.dcmread(case.sr_path).ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == "111028"  # Image Library
    ]
    assert len(library) == 1
    names = {s.name: s.label for s in case.labelmap.segments}
    headers = case.series.headers
    for group in planar:
        mask = np.asarray(case.labelmap.volume.array) == names[str(group.tracking_identifier)]
        k = int(np.argmax(mask.sum(axis=(1, 2))))  # the slice of largest area, independently
        region = group.roi
        assert region is not None and region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        (reference,) = region.ContentSequence[0].ReferencedSOPSequence
        assert reference.ReferencedSOPInstanceUID == headers[k].SOPInstanceUID
        points = region.value
        assert np.array_equal(points[0], points[-1])  # closed
        rr, cc = polygon(points[:, 1] - 0.5, points[:, 0] - 0.5, shape=mask[k].shape)
        drawn = np.zeros_like(mask[k])
        drawn[rr, cc] = True
        if names[str(group.tracking_identifier)] == 1:  # the tumour: one compact region
            dice = 2 * (drawn & mask[k]).sum() / (drawn.sum() + mask[k].sum())
            assert dice > 0.9
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        assert values["Volume"] == pytest.approx(
            read_sr_measurements(case.sr_path)[str(group.tracking_identifier)]["Volume"]
        )
        assert values["Diameter"] > 0


def test_maximum_3d_diameter_of_a_box_and_a_line(case: Case) -> None:
    volume = case.series.volume
    mask = np.zeros(volume.shape, bool)
    mask[10:15, 20:40, 30:45] = True
    corners = volume.index_to_lps(np.array([[30, 20, 10], [44, 39, 14]]))
    expected = float(np.linalg.norm(corners[1] - corners[0]))
    assert maximum_3d_diameter_mm(mask, volume) == pytest.approx(expected, rel=1e-9)
    flat = np.zeros(volume.shape, bool)
    flat[12, 5:25, 7] = True  # a line: degenerate for a convex hull
    line = volume.index_to_lps(np.array([[7, 5, 12], [7, 24, 12]]))
    assert maximum_3d_diameter_mm(flat, volume) == pytest.approx(
        float(np.linalg.norm(line[1] - line[0]))
    )


def test_each_segment_is_one_drawable_measurement_for_ohif(case: Case) -> None:
    """OHIF 3.13 merges the groups of one Tracking UID into one measurement and fails on a
    merged measurement without an SCOORD: a segment's two groups share their tracking UID."""
    content = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(case.sr_path)).content
    volumetric = content.get_volumetric_roi_measurement_groups()
    planar = content.get_planar_roi_measurement_groups()
    by_name = {str(g.tracking_identifier): str(g.tracking_uid) for g in volumetric}
    assert by_name == {str(g.tracking_identifier): str(g.tracking_uid) for g in planar}
    assert len(set(by_name.values())) == 2
    # OHIF's own rule, on the stored document.
    (container,) = [
        item
        for item in pydicom.dcmread(case.sr_path).ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == "126010"  # Imaging Measurements
    ]
    merged: dict[str, list[Dataset]] = {}
    for group in container.ContentSequence:
        items = list(group.ContentSequence)
        (uid,) = [i.UID for i in items if i.ConceptNameCodeSequence[0].CodeValue == "112040"]
        merged.setdefault(str(uid), []).extend(items)
    assert merged.keys() == set(by_name.values())
    for items in merged.values():
        assert [i.GraphicType for i in items if i.ValueType == "SCOORD"] == ["POLYLINE"]


def test_maximum_3d_diameter_of_a_one_slice_segment_is_exact(case: Case) -> None:
    """A flat segment (one slice) has no 3D hull; its diameter is still the exact diagonal."""
    volume = case.series.volume
    flat = np.zeros(volume.shape, bool)
    flat[20, 10:130, 10:150] = True  # 16,800 voxels: far more than pairwise comparison allows
    corners = volume.index_to_lps(np.array([[10, 10, 20], [149, 129, 20]]))
    expected = float(np.linalg.norm(corners[1] - corners[0]))
    assert maximum_3d_diameter_mm(flat, volume) == pytest.approx(expected, rel=1e-12)
