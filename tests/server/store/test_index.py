"""Index rows read from raw elements equal those read through pydicom's value conversion."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from radserve.dicom_io import read_instance
from radserve.server import IndexRows, QueryLevel, index_columns, index_rows

FILE_VALUES = {
    "transfer_syntax_uid": "1.2.840.10008.1.2.1",
    "path": "instances/x.dcm",
    "size_bytes": 1,
    "sha256": "00",
    "stored_at": "2026-01-01T00:00:00+00:00",
}


def _rows_both_ways(ds_raw: Dataset, ds_converted: Dataset) -> tuple[IndexRows, IndexRows]:
    assert any(isinstance(ds_raw.get_item(tag), RawDataElement) for tag in list(ds_raw.keys()))
    for tag in list(ds_converted.keys()):
        ds_converted[tag]  # convert every top-level element, as attribute access does
    return (
        index_rows(ds_raw, file_values=FILE_VALUES),
        index_rows(ds_converted, file_values=FILE_VALUES),
    )


def _instances(shared_data: Path, demo_study: Path) -> list[Path]:
    paths = [demo_study / "image" / "000000.dcm", demo_study / "mask" / "RS.dcm"]
    paths += sorted((shared_data / "totalseg_ct" / "dicom").iterdir())[:1]
    for folder in ("dicom2nifti", "seg_sr"):
        paths += sorted((shared_data / folder).rglob("*.dcm"))[::7]
    paths += [Path(p) for p in get_charset_files("*.dcm")]
    return paths


@pytest.mark.shared_data
def test_rows_of_real_instances_match_pydicom_conversion(
    shared_data: Path, demo_study: Path
) -> None:
    paths = _instances(shared_data, demo_study)
    assert len(paths) > 40
    for path in paths:
        fast, converted = _rows_both_ways(
            read_instance(path, stop_before_pixels=True),
            read_instance(path, stop_before_pixels=True),
        )
        assert fast == converted, path.name


def test_rows_of_non_ascii_names_and_character_sets() -> None:
    (path,) = get_charset_files("chrH31.dcm")  # Japanese, ISO 2022 escape sequences
    fast, converted = _rows_both_ways(read_instance(path), read_instance(path))
    assert fast == converted
    name = json.loads(fast.study.attributes)["00100010"]["Value"][0]
    assert name["Alphabetic"] == "Yamada^Tarou"
    assert name["Ideographic"] == "山田^太郎"


def _written(ds: Dataset, syntax: str) -> Dataset:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_rows_of_unusual_values_match_pydicom_conversion(syntax: str) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.PatientName = "Müller^Jürgen"
    ds.PatientID = "ID 7 "
    ds.PatientSex = ""
    ds.StudyDescription = "CT thorax\\abdomen"  # two values in an LO
    ds.StudyDate = "20260101"
    ds.StudyTime = "101010.5 "
    ds.SeriesNumber = " 7"
    ds.InstanceNumber = "+12"
    ds.Modality = "CT"
    ds.Rows = 512
    ds.Columns = 256
    ds["NumberOfFrames"] = pydicom.DataElement(0x00280008, "IS", b"")
    ds.BodyPartExamined = "CHEST\\ABDOMEN"
    ds.Manufacturer = "Ärzte AG"
    fast, converted = _rows_both_ways(_written(ds, syntax), _written(ds, syntax))
    assert fast == converted
    assert fast.study.level is QueryLevel.STUDY
    values = dict(zip(index_columns(QueryLevel.IMAGE), fast.instance.values, strict=False))
    assert (values["instance_number"], values["rows"], values["columns"]) == (12, 512, 256)
    assert values["number_of_frames"] is None
    study = json.loads(fast.study.attributes)
    assert study["00081030"]["Value"] == ["CT thorax", "abdomen"]
    assert study["00100010"]["Value"] == [{"Alphabetic": "Müller^Jürgen"}]
    assert "00100040" not in study  # empty: left out
    series = json.loads(fast.series.attributes)
    assert series["00200011"] == {"vr": "IS", "Value": [7]}
    assert series["00080070"]["Value"] == ["Ärzte AG"]
