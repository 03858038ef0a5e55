"""De-identification: PS3.15 Table E.1-1 row by row on real data, consistency, hostile input."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr._concepts_dict import concepts

from radserve.dicom_io import (
    PATTERN_ROWS,
    PRIVATE_ROW,
    PROFILE_ROWS,
    ROWS_BY_TAG,
    DeidentificationError,
    DeidOptions,
    ProfileOption,
    ProfileRow,
    ValidatorReport,
    deidentify,
    deidentify_files,
    derive_uid,
    read_instance,
    resolve_salt,
)
from tests.conftest import DEMO_STUDY, SHARED_DATA

SALT = "test-salt-not-a-secret-0123456789"
OTHER_SALT = "another-test-salt-9876543210"

# One instance of each real data set: CT + RTSTRUCT (demo), a JPEG 2000 CT with a blank
# SOP Instance UID and vendor private groups, GE MR with private tags, Philips enhanced MR
# with private tags nested in the functional groups.
SAMPLES: dict[str, Path] = {
    "demo_ct": DEMO_STUDY / "image" / "000000.dcm",
    "demo_rtstruct": DEMO_STUDY / "mask" / "RS.dcm",
    "totalseg_ct": SHARED_DATA / "totalseg_ct" / "dicom",
    "ge_mr": SHARED_DATA / "dicom2nifti" / "ge" / "anatomical" / "001",
    "philips_enhanced_mr": SHARED_DATA / "dicom2nifti" / "philips_enhanced" / "anatomical" / "001",
}

VARIANTS: dict[str, dict[str, bool]] = {
    "basic": {},
    "retain_uids": {"retain_uids": True},
    "full_dates": {"retain_longitudinal_full_dates": True},
    "modified_dates": {"retain_longitudinal_modified_dates": True},
    "patient_characteristics": {"retain_patient_characteristics": True},
    "device_identity": {"retain_device_identity": True},
    "institution_identity": {"retain_institution_identity": True},
    "clean_descriptors": {"clean_descriptors": True},
}


def _sample_file(path: Path) -> Path | None:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return files[0] if files else None
    return path if path.is_file() else None


def _walk(ds: Dataset, parents: tuple[tuple[int, int], ...] = ()) -> Iterator[Any]:
    """(parents, element) for every element, depth first; parents = ((sequence tag, item), ...)."""
    for elem in ds:
        yield parents, elem
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value):
                yield from _walk(item, (*parents, (int(elem.tag), index)))


def _row_of(tag: int) -> ProfileRow | None:
    if (tag >> 16) & 1:
        return PRIVATE_ROW
    return ROWS_BY_TAG.get(tag) or next((r for r in PATTERN_ROWS if r.matches(tag)), None)


def _rows_present() -> list[ProfileRow]:
    """The table rows naming an attribute present (at any depth) in the sample files."""
    found: dict[str, ProfileRow] = {}
    for path in SAMPLES.values():
        sample = _sample_file(path)
        if sample is None:
            continue
        for _, elem in _walk(pydicom.dcmread(sample, force=True)):
            row = _row_of(int(elem.tag))
            if row is not None:
                found[row.tag] = row
    return sorted(found.values(), key=lambda r: r.tag)


def _expected(row: ProfileRow, options: DeidOptions) -> str:
    codes = {code for option, code in row.options.items() if option in options.profile_options}
    return "K" if "K" in codes else "C" if "C" in codes else row.basic


def _options(variant: str, salt: str = SALT) -> DeidOptions:
    return DeidOptions(salt=salt, **VARIANTS[variant])


@pytest.fixture(scope="module")
def deidentified() -> Callable[[str, str], tuple[Dataset, Dataset]]:
    """(original, de-identified) for a sample and a variant, computed once."""
    cache: dict[tuple[str, str], tuple[Dataset, Dataset]] = {}

    def get(sample: str, variant: str) -> tuple[Dataset, Dataset]:
        if (sample, variant) not in cache:
            path = _sample_file(SAMPLES[sample])
            assert path is not None
            original = read_instance(path)
            cache[sample, variant] = (original, deidentify(original, options=_options(variant)))
        return cache[sample, variant]

    return get


def _available_samples() -> list[str]:
    return [name for name, path in SAMPLES.items() if _sample_file(path) is not None]


def _find(ds: Dataset, parents: tuple[tuple[int, int], ...], tag: int) -> DataElement | None:
    for seq_tag, index in parents:
        if seq_tag not in ds or len(ds[seq_tag].value) <= index:
            return None
        ds = ds[seq_tag].value[index]
    return ds.get(tag)


def _lost_ancestor(ds: Dataset, parents: tuple[tuple[int, int], ...]) -> int | None:
    """The tag of the first enclosing sequence (or item) missing from ``ds``, if any."""
    for seq_tag, index in parents:
        if seq_tag not in ds or len(ds[seq_tag].value) <= index:
            return seq_tag
        ds = ds[seq_tag].value[index]
    return None


def _values(elem: DataElement) -> list[str]:
    if elem.VR == "SQ":
        return [str(len(elem.value))]
    value = elem.value
    items = list(value) if isinstance(value, list | pydicom.multival.MultiValue) else [value]
    return [str(v) if not isinstance(v, bytes) else v.hex() for v in items]


def _empty(elem: DataElement | None) -> bool:
    return elem is not None and (elem.is_empty or (elem.VR == "SQ" and len(elem.value) == 0))


def _dummy(new: DataElement | None, old: DataElement) -> bool:
    """Present with a value that is not the original (or a dummy sequence)."""
    if new is None:
        return False
    if new.VR == "SQ":
        return True
    return not new.is_empty and (old.is_empty or _values(new) != _values(old))


UID_PATTERN = re.compile(r"2\.25\.\d{1,39}")


def _check(
    code: str, old: DataElement, new: DataElement | None, uid_map: dict[str, str]
) -> str | None:
    """None when ``new`` is what action ``code`` allows for ``old``, else what is wrong."""
    ok: bool
    if code == "X":
        ok = new is None
    elif code == "Z":
        ok = _empty(new) or _dummy(new, old)
    elif code == "D":
        ok = _dummy(new, old) or (old.VR == "UI" and old.is_empty)
    elif code in ("X/Z", "X/Z/U*"):
        # A sequence may keep its items (dummy content, UIDs replaced; see the module).
        ok = new is None or _empty(new) or new.VR == "SQ"
    elif code == "X/D":
        ok = new is None or _dummy(new, old)
    elif code in ("X/Z/D", "Z/D"):
        ok = (code == "X/Z/D" and new is None) or _empty(new) or _dummy(new, old)
    elif code == "K":
        ok = new is not None and _values(new) == _values(old)
    elif code == "C":
        ok = new is not None
    elif code == "U":
        ok = new is not None and _check_uids(old, new, uid_map)
    else:
        return f"unknown action {code}"
    return None if ok else f"{code}: {_values(old)[:3]} -> {_values(new)[:3] if new else None}"


def _check_uids(old: DataElement, new: DataElement, uid_map: dict[str, str]) -> bool:
    if old.is_empty:
        return new.is_empty or old.tag == 0x00080018  # an empty SOP UID gets a derived one
    for before, after in zip(_values(old), _values(new), strict=True):
        if not UID_PATTERN.fullmatch(after) or after == before:
            return False
        if uid_map.setdefault(before, after) != after:
            return False
    return True


# --- the table -------------------------------------------------------------------------------


def test_profile_table_is_complete_and_well_formed() -> None:
    assert len(PROFILE_ROWS) >= 650
    assert ROWS_BY_TAG[0x00100010].basic == "Z"  # Patient's Name
    assert ROWS_BY_TAG[0x0020000D].basic == "U"  # Study Instance UID
    assert ROWS_BY_TAG[0x0020000D].options == {ProfileOption.RETAIN_UIDS: "K"}
    study_date = ROWS_BY_TAG[0x00080020].options
    assert study_date[ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES] == "C"
    assert ROWS_BY_TAG[0x00081140].basic == "X/Z/U*"  # Referenced Image Sequence
    assert {row.tag for row in PATTERN_ROWS} == {"50XXXXXX", "60XX3000", "60XX4000"}
    keywords = [row.keyword for row in PROFILE_ROWS]
    assert len(keywords) == len(set(keywords))
    # Every keyword pydicom knows matches the tag it is listed under.
    for tag, row in ROWS_BY_TAG.items():
        known = pydicom.datadict.keyword_for_tag(tag)
        assert known in ("", row.keyword), row


def test_option_codes_match_cid_7050() -> None:
    cid_7050 = {
        code: meaning
        for entries in concepts["DCM"].values()
        for code, (meaning, cids) in entries.items()
        if 7050 in cids
    }
    for option in ProfileOption:
        assert cid_7050[option.value] == option.code_meaning
    assert cid_7050["113100"] == "Basic Application Confidentiality Profile"


# --- every row of the table present in the real data, for the profile and each option --------


@pytest.mark.parametrize("row", _rows_present(), ids=lambda row: row.keyword)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_profile_row_is_applied(
    row: ProfileRow, variant: str, deidentified: Callable[[str, str], tuple[Dataset, Dataset]]
) -> None:
    options = _options(variant)
    code = _expected(row, options)
    uid_map: dict[str, str] = {}
    checked = inside_removed = 0
    for sample in _available_samples():
        original, out = deidentified(sample, variant)
        for parents, old in _walk(original):
            if _row_of(int(old.tag)) is not row:
                continue
            new = _find(out, parents, int(old.tag))
            lost = _lost_ancestor(out, parents)
            if lost is not None:
                # Inside a sequence that its own row removed or emptied.
                parent_row = _row_of(lost)
                assert parent_row is not None, f"{sample}: unlisted sequence lost"
                assert _expected(parent_row, options)[0] in "XZ", parent_row
                inside_removed += 1
                continue
            if old.tag in (0x00100010, 0x00100020) and not old.is_empty:
                assert new is not None and str(new.value).startswith("ANON"), sample
            problem = _check(code, old, new, uid_map)
            assert problem is None, f"{sample} {row.keyword} at {parents}: {problem}"
            patient_id = str(original.get("PatientID", ""))
            if code == "C" and new is not None and new.VR in ("LO", "SH", "ST", "LT", "UT"):
                assert not patient_id or patient_id not in str(new.value), sample
            checked += 1
    assert checked + inside_removed > 0  # the row is present in the samples


# --- specific behaviour ----------------------------------------------------------------------


def test_original_dataset_is_left_unchanged() -> None:
    original = read_instance(SAMPLES["demo_rtstruct"])
    before = original.to_json_dict()
    deidentify(original, options=_options("basic"))
    assert original.to_json_dict() == before


def test_private_tags_removed_at_every_depth(shared_data: Path) -> None:
    for sample in ("totalseg_ct", "ge_mr", "philips_enhanced_mr"):
        path = _sample_file(SAMPLES[sample])
        assert path is not None
        original = read_instance(path)
        out = deidentify(original, options=_options("basic"))
        private_before = [e.tag for _, e in _walk(original) if e.tag.is_private]
        nested_before = [p for p, e in _walk(original) if e.tag.is_private and p]
        assert private_before, sample
        assert [e.tag for _, e in _walk(out) if e.tag.is_private] == []
        if sample == "philips_enhanced_mr":
            assert nested_before  # private groups inside the functional group sequences
            frames = out.PerFrameFunctionalGroupsSequence
            assert len(frames) == len(original.PerFrameFunctionalGroupsSequence)


def test_deid_attributes_record_the_options() -> None:
    original = read_instance(SAMPLES["demo_ct"])
    basic = deidentify(original, options=_options("basic"))
    assert basic.PatientIdentityRemoved == "YES"
    assert basic.LongitudinalTemporalInformationModified == "REMOVED"
    assert [i.CodeValue for i in basic.DeidentificationMethodCodeSequence] == ["113100"]
    options = DeidOptions(
        salt=SALT,
        retain_uids=True,
        retain_longitudinal_modified_dates=True,
        retain_patient_characteristics=True,
        retain_device_identity=True,
        retain_institution_identity=True,
        clean_descriptors=True,
    )
    out = deidentify(original, options=options)
    codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113110", "113107", "113108", "113109", "113112", "113105"}
    assert {item.CodingSchemeDesignator for item in out.DeidentificationMethodCodeSequence} == {
        "DCM"
    }
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    full = deidentify(original, options=_options("full_dates"))
    assert full.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert full.StudyDate == original.StudyDate


def test_pseudonym_is_consistent_and_keyed_by_salt() -> None:
    image = read_instance(SAMPLES["demo_ct"])
    rtstruct = read_instance(SAMPLES["demo_rtstruct"])
    a = deidentify(image, options=_options("basic"))
    b = deidentify(rtstruct, options=_options("basic"))
    c = deidentify(image, options=_options("basic", OTHER_SALT))
    assert a.PatientID == b.PatientID != c.PatientID
    assert a.PatientName == b.PatientName
    assert image.PatientID not in str(a.PatientID) + str(a.PatientName)
    assert re.fullmatch(r"ANON[0-9A-F]{12}", a.PatientID)
    assert str(a.PatientName) == f"ANON^{a.PatientID[4:]}"


def test_clean_descriptors_keeps_text_without_identifiers() -> None:
    rtstruct = read_instance(SAMPLES["demo_rtstruct"])
    out = deidentify(rtstruct, options=_options("clean_descriptors"))
    # ROI Name is Z in the Basic Profile, cleaned (kept) with Clean Descriptors.
    assert out.StructureSetROISequence[0].ROIName == "GTV_Mass_CT"
    assert deidentify(rtstruct, options=_options("basic")).StructureSetROISequence[0].ROIName == ""
    # 'IBSI_1_STS_002_CT_mask' holds the Patient ID 'STS_002': cut out, the rest kept.
    assert out.SeriesDescription == "IBSI_1_*_CT_mask"
    assert "STS_002" not in out.StudyDescription


def test_rtstruct_references_follow_the_new_image_uids(tmp_path: Path) -> None:
    report = deidentify_files(DEMO_STUDY, tmp_path, options=_options("basic"))
    image_paths = sorted((DEMO_STUDY / "image").iterdir())
    outputs = [pydicom.dcmread(p) for p in report.written]
    images = [ds for ds in outputs if ds.Modality == "CT"]
    (rtstruct,) = [ds for ds in outputs if ds.Modality == "RTSTRUCT"]
    image_uids = {str(ds.SOPInstanceUID) for ds in images}
    (image_series,) = {str(ds.SeriesInstanceUID) for ds in images}
    (frame_of_reference,) = {str(ds.FrameOfReferenceUID) for ds in images}
    referenced_frame = rtstruct.ReferencedFrameOfReferenceSequence[0]
    study_ref = referenced_frame.RTReferencedStudySequence[0]
    series_ref = study_ref.RTReferencedSeriesSequence[0]
    contour_refs = {
        str(image.ReferencedSOPInstanceUID)
        for roi in rtstruct.ROIContourSequence
        for contour in roi.ContourSequence
        for image in contour.ContourImageSequence
    }
    listed_refs = {str(i.ReferencedSOPInstanceUID) for i in series_ref.ContourImageSequence}
    # The demo RTSTRUCT references the 267 slices of the uncropped series (same study, series
    # and frame of reference, none of the 48 shipped instances): every reference, nested three
    # sequences deep, is mapped by the same salted function as the image SOP Instance UIDs.
    original_rt = read_instance(DEMO_STUDY / "mask" / "RS.dcm")
    original_series_ref = (
        original_rt.ReferencedFrameOfReferenceSequence[0]
        .RTReferencedStudySequence[0]
        .RTReferencedSeriesSequence[0]
    )
    original_refs = {
        str(i.ReferencedSOPInstanceUID) for i in original_series_ref.ContourImageSequence
    }
    assert len(listed_refs) == len(original_refs) == 267
    assert listed_refs == {derive_uid("deid", SALT, uid) for uid in original_refs}
    assert contour_refs <= listed_refs
    assert image_uids == {
        derive_uid("deid", SALT, str(read_instance(p).SOPInstanceUID)) for p in image_paths
    }
    assert str(series_ref.SeriesInstanceUID) == image_series
    assert str(study_ref.ReferencedSOPInstanceUID) == str(rtstruct.StudyInstanceUID)
    assert str(rtstruct.StudyInstanceUID) == str(images[0].StudyInstanceUID)
    assert str(referenced_frame.FrameOfReferenceUID) == frame_of_reference
    assert str(rtstruct.FrameOfReferenceUID) == frame_of_reference
    assert {str(r.ReferencedFrameOfReferenceUID) for r in rtstruct.StructureSetROISequence} == {
        frame_of_reference
    }


def _date_shift_days(before: str, after: str) -> int:
    def parse(value: str) -> date:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))

    return (parse(after) - parse(before)).days


def test_modified_dates_shift_every_date_of_a_patient_by_one_offset(tmp_path: Path) -> None:
    report = deidentify_files(DEMO_STUDY, tmp_path, options=_options("modified_dates"))
    originals = {
        str(ds.InstanceNumber if ds.Modality == "CT" else "rt"): ds
        for ds in (read_instance(p) for p in sorted(DEMO_STUDY.rglob("*.dcm")))
    }
    shifts: set[int] = set()
    for path in report.written:
        out = pydicom.dcmread(path)
        original = originals[str(out.InstanceNumber if out.Modality == "CT" else "rt")]
        for keyword in ("StudyDate", "SeriesDate", "ContentDate", "InstanceCreationDate"):
            shifts.add(_date_shift_days(original[keyword].value, out[keyword].value))
        # Whole-day shifts keep times of day, so intervals between date-times are kept.
        assert (out.StudyTime, out.ContentTime) == (original.StudyTime, original.ContentTime)
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    (shift,) = shifts
    assert -3650 <= shift <= -365
    # The 2006 study and the 2019 content date keep their 13-year interval.
    rt_out = pydicom.dcmread(next(p for p in report.written if "RTSTRUCT" in _modality(p)))
    assert _date_shift_days(rt_out.StudyDate, rt_out.StructureSetDate) == _date_shift_days(
        originals["rt"].StudyDate, originals["rt"].StructureSetDate
    )


def _modality(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).Modality)


def test_modified_dates_shift_datetimes_in_functional_groups(shared_data: Path) -> None:
    path = _sample_file(SAMPLES["philips_enhanced_mr"])
    assert path is not None
    original = read_instance(path)
    out = deidentify(original, options=_options("modified_dates"))
    before = original.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]
    after = out.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]
    shift = _date_shift_days(original.StudyDate, out.StudyDate)
    assert shift < 0
    for keyword in ("FrameAcquisitionDateTime", "FrameReferenceDateTime"):
        old, new = str(before[keyword].value), str(after[keyword].value)
        assert _date_shift_days(old, new) == shift
        assert new[8:] == old[8:]  # time of day and fraction kept
    basic = deidentify(original, options=_options("basic"))
    frame = basic.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]
    assert frame.FrameAcquisitionDateTime == "19000101000000"  # D: a dummy


def test_files_round_trip_with_unchanged_pixels(tmp_path: Path) -> None:
    report = deidentify_files(DEMO_STUDY, tmp_path / "out", options=_options("basic"))
    assert len(report.written) == 49
    assert (report.studies, report.series, report.skipped) == (1, 2, ())
    originals = {
        int(ds.InstanceNumber): ds for ds in map(read_instance, (DEMO_STUDY / "image").iterdir())
    }
    for path in report.written:
        out = pydicom.dcmread(path)
        assert path == tmp_path / "out" / out.StudyInstanceUID / out.SeriesInstanceUID / (
            f"{out.SOPInstanceUID}.dcm"
        )
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        if out.Modality == "CT":
            original = originals[int(out.InstanceNumber)]
            np.testing.assert_array_equal(out.pixel_array, original.pixel_array)
            assert out.SOPInstanceUID != original.SOPInstanceUID


def test_compressed_pixel_data_is_kept_byte_for_byte(shared_data: Path, tmp_path: Path) -> None:
    source = SAMPLES["totalseg_ct"]
    report = deidentify_files(source, tmp_path, options=_options("basic"))
    assert len(report.written) == len(list(source.iterdir())) == 20
    assert report.skipped == ()
    outputs = {str(pydicom.dcmread(p).InstanceNumber): pydicom.dcmread(p) for p in report.written}
    # The data set's SOP Instance UIDs are blank: each instance still gets its own UID.
    assert len({str(ds.SOPInstanceUID) for ds in outputs.values()}) == 20
    for path in sorted(source.iterdir())[:3]:
        original = pydicom.dcmread(path)
        out = outputs[str(original.InstanceNumber)]
        assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert out.PixelData == original.PixelData
        np.testing.assert_array_equal(out.pixel_array, original.pixel_array)


def test_same_salt_same_bytes_other_salt_other_ids(tmp_path: Path) -> None:
    first = deidentify_files(DEMO_STUDY, tmp_path / "a", options=_options("modified_dates"))
    again = deidentify_files(DEMO_STUDY, tmp_path / "b", options=_options("modified_dates"))
    other = deidentify_files(
        DEMO_STUDY, tmp_path / "c", options=_options("modified_dates", OTHER_SALT)
    )
    names = [p.relative_to(tmp_path / "a") for p in first.written]
    assert names == [p.relative_to(tmp_path / "b") for p in again.written]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other_names = {p.relative_to(tmp_path / "c") for p in other.written}
    assert other_names.isdisjoint(names)
    a = pydicom.dcmread(first.written[0])
    c = pydicom.dcmread(other.written[0])
    assert a.PatientID != c.PatientID
    assert a.StudyDate != c.StudyDate or a.PatientID != c.PatientID


def test_hostile_inputs_are_reported_and_skipped(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    images = sorted((DEMO_STUDY / "image").iterdir())[:3]
    for path in images:
        shutil.copy(path, source / path.name)
    (source / "garbage.dcm").write_bytes(b"\x00\x01 this is not DICOM " * 50)
    (source / "empty.dcm").write_bytes(b"")
    (source / "notes.txt").write_text("patient list")
    data = images[0].read_bytes()
    (source / "truncated.dcm").write_bytes(data[: len(data) // 2])
    report = deidentify_files(source, tmp_path / "out", options=_options("basic"))
    assert len(report.written) == 3
    skipped = {s.name: s.reason for s in report.skipped}
    assert sorted(skipped) == ["empty.dcm", "garbage.dcm", "notes.txt", "truncated.dcm"]
    assert "truncated" in skipped["truncated.dcm"]
    assert all(reason and "patient" not in reason for reason in skipped.values())


def test_zip_input_and_output_inside_input(tmp_path: Path) -> None:
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((DEMO_STUDY / "image").iterdir())[:2]:
            zf.write(path, f"image/{path.name}")
        zf.write(DEMO_STUDY / "mask" / "RS.dcm", "mask/RS.dcm")
        zf.writestr("README", "not dicom")
    report = deidentify_files(archive, tmp_path / "out", options=_options("basic"))
    assert (len(report.written), report.series) == (3, 2)
    assert [s.name for s in report.skipped] == ["study.zip/README"]
    assert not report.skipped[0].reason.startswith("<bytes>")
    # An output folder inside the input folder is not read back as input.
    folder = tmp_path / "folder"
    shutil.copytree(DEMO_STUDY / "mask", folder)
    deidentify_files(folder, folder / "out", options=_options("basic"))
    again = deidentify_files(folder, folder / "out", options=_options("basic"))
    assert (len(again.written), again.skipped) == (1, ())


def test_options_need_a_strong_salt_and_one_date_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(DeidentificationError):
        DeidOptions(salt="")
    with pytest.raises(DeidentificationError):
        DeidOptions(salt="short")
    with pytest.raises(DeidentificationError):
        DeidOptions(
            salt=SALT, retain_longitudinal_full_dates=True, retain_longitudinal_modified_dates=True
        )
    assert SALT not in repr(DeidOptions(salt=SALT))
    monkeypatch.delenv("RADSERVE_DEID_SALT", raising=False)
    with pytest.raises(DeidentificationError):
        resolve_salt(None)
    assert resolve_salt("from-the-command-line") == "from-the-command-line"
    monkeypatch.setenv("RADSERVE_DEID_SALT", SALT)
    assert resolve_salt(None) == SALT
    with pytest.raises(DeidentificationError):
        deidentify_files(Path("/nonexistent/input"), Path("/tmp"), options=_options("basic"))


def _normalised(report: ValidatorReport) -> set[str]:
    """Error lines without the values they quote (UIDs, dates change by design)."""
    return {re.sub(r"= <[^>]*>", "= <>", line) for line in report.errors}


@pytest.mark.parametrize("variant", ["basic", "modified_dates", "clean_descriptors"])
def test_output_adds_no_validator_errors(
    variant: str,
    dciodvfy: Callable[[Path], ValidatorReport],
    deidentified: Callable[[str, str], tuple[Dataset, Dataset]],
    tmp_path: Path,
) -> None:
    for sample in _available_samples():
        original, out = deidentified(sample, variant)
        # The baseline is the instance as radserve reads it (reading repairs a blank SOP
        # Class UID, which lets the validator check the whole IOD for the first time).
        in_path, out_path = tmp_path / f"{sample}-in.dcm", tmp_path / f"{sample}-out.dcm"
        original.save_as(in_path, enforce_file_format=False)
        out.save_as(out_path, enforce_file_format=False)
        before, after = dciodvfy(in_path), dciodvfy(out_path)
        assert _normalised(after) <= _normalised(before), (sample, after.output)
