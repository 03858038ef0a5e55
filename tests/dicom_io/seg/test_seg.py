"""DICOM SEG: writing on real series, reading real SEGs, and independent readers agreeing.

Every comparison is made in patient space: masks read by highdicom or dcmqi are put onto the
source grid through their own geometry, never by array order.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset

from radserve.dicom_io import (
    ANATOMICAL_STRUCTURE,
    MAX_LENGTH,
    ORGAN,
    AlgorithmIdentity,
    ImageSeries,
    LabelMap,
    MaskError,
    SegmentInfo,
    ValidatorReport,
    Volume,
    read_image_series,
    read_seg,
    write_seg,
)
from tests.conftest import REPO_ROOT, require
from tests.grids import onto_grid

ALGORITHM = AlgorithmIdentity(name="test-model", version="1.2.3", model_sha256="ab" * 32)
SEGMENTATION_TYPES = ("BINARY", "FRACTIONAL", "LABELMAP")
DCMQI = REPO_ROOT / ".venv" / "bin" / "segimage2itkimage"

pytestmark = [pytest.mark.shared_data]

# --- helpers -----------------------------------------------------------------------------


def _resampled(path: Path, grid: Volume) -> npt.NDArray[Any]:
    """A label image file put onto ``grid`` by world coordinates (nearest neighbour)."""
    image = sitk.ReadImage(str(path))
    reference = grid.to_sitk()
    result = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID()
    )
    return sitk.GetArrayFromImage(result)


def _sitkonto_grid(path: Path, grid: Volume) -> npt.NDArray[Any]:
    volume = Volume.from_sitk(sitk.ReadImage(str(path)))
    return onto_grid(volume.array, volume.affine_lps()[:, [2, 1, 0, 3]], grid)


def _highdicom_labels(path: Path, grid: Volume) -> npt.NDArray[Any]:
    """highdicom's reading (segment numbers as values) on ``grid``."""
    seg = hd.seg.segread(str(path))
    volume = seg.get_volume(combine_segments=True, allow_missing_positions=True)
    return onto_grid(np.asarray(volume.array), np.asarray(volume.affine), grid)


def _dcmqi_labels(path: Path, grid: Volume, tmp_path: Path) -> npt.NDArray[Any]:
    """dcmqi's ``segimage2itkimage`` (NRRD per segment, segment number as value, or the
    fractional value for FRACTIONAL, in ``<segment number>.nrrd``) on ``grid``."""
    fractional = pydicom.dcmread(path, stop_before_pixels=True).SegmentationType == "FRACTIONAL"
    require(DCMQI.exists(), "dcmqi (segimage2itkimage) not installed")
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run(
        [str(DCMQI), "--inputDICOM", str(path), "--outputDirectory", str(out), "-t", "nrrd"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    combined = np.zeros(grid.shape, dtype=np.int64)
    for nrrd in sorted(out.glob("*.nrrd")):
        on_grid = _sitkonto_grid(nrrd, grid)
        if fractional:
            on_grid = np.where(on_grid >= 128, int(nrrd.stem), 0)
        assert not np.any((combined != 0) & (on_grid != 0)), "segments overlap"
        combined += on_grid
    return combined


def _original_labels(read: LabelMap, written: LabelMap) -> npt.NDArray[Any]:
    """The array read back, relabelled by segment name to the label values written."""
    by_name = {s.name: s.label for s in written.segments}
    lut = np.zeros(max(s.label for s in read.segments) + 1, dtype=np.int64)
    for segment in read.segments:
        lut[segment.label] = by_name[segment.name]
    return lut[read.volume.array]


def _number_to_label(seg: Dataset, written: LabelMap) -> npt.NDArray[np.int64]:
    """Lookup table from the SEG's Segment Numbers to the label values written."""
    by_name = {s.name: s.label for s in written.segments}
    lut = np.zeros(max(int(s.SegmentNumber) for s in seg.SegmentSequence) + 1, dtype=np.int64)
    for item in seg.SegmentSequence:
        if item.SegmentLabel in by_name:
            lut[int(item.SegmentNumber)] = by_name[item.SegmentLabel]
    return lut


def _save(seg: Dataset, path: Path) -> Path:
    seg.save_as(path, enforce_file_format=True)
    return path


def _errors(
    report: ValidatorReport, *, source: ValidatorReport | None = None, labelmap: bool = False
) -> list[str]:
    """The validator's errors, less those the source image has too (copied attributes)."""
    errors = [e for e in report.errors if source is None or e not in source.errors]
    if labelmap:
        # The installed dicom3tools (2022) predates the Label Map Segmentation Storage SOP
        # Class (2024): it cannot find the IOD and applies the BINARY rule that segment
        # numbers run 1, 2, ... to the LABELMAP background segment 0.
        errors = [
            e
            for e in errors
            if "Information Object Not found" not in e
            and "SegmentNumber not monotonically increasing" not in e
        ]
    return errors


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def totalseg(shared_data: Path) -> tuple[ImageSeries, LabelMap]:
    """The real 20-slice CT and its multi-organ label map, put onto the DICOM grid."""
    folder = shared_data / "totalseg_ct"
    series = read_image_series(folder / "dicom")
    array = _resampled(folder / "reference_seg.nii.gz", series.volume)
    names = json.loads((folder / "labels.json").read_text())
    segments = tuple(SegmentInfo(int(k), v, ANATOMICAL_STRUCTURE, ORGAN) for k, v in names.items())
    return series, LabelMap(volume=series.volume.with_array(array), segments=segments)


@pytest.fixture(scope="module")
def totalseg_segs(
    totalseg: tuple[ImageSeries, LabelMap], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    series, labelmap = totalseg
    folder = tmp_path_factory.mktemp("totalseg_seg")
    return {
        kind: _save(
            write_seg(series, labelmap, algorithm=ALGORITHM, segmentation_type=kind),
            folder / f"{kind}.dcm",
        )
        for kind in SEGMENTATION_TYPES
    }


@pytest.fixture(scope="module")
def sts(shared_data: Path) -> Callable[[int], tuple[ImageSeries, LabelMap]]:
    cache: dict[int, tuple[ImageSeries, LabelMap]] = {}

    def load(case: int) -> tuple[ImageSeries, LabelMap]:
        if case not in cache:
            folder = shared_data / "sts_ct"
            series = read_image_series(folder / "dicom" / f"STS_00{case}" / "image")
            array = _resampled(folder / "nifti" / f"STS_00{case}" / "mask.nii.gz", series.volume)
            segment = SegmentInfo(label=1, name="GTV_Mass")
            cache[case] = (series, LabelMap(series.volume.with_array(array), (segment,)))
        return cache[case]

    return load


@pytest.fixture(scope="module")
def seg_sr(shared_data: Path) -> Path:
    return shared_data / "seg_sr"


@pytest.fixture(autouse=True)
def _quiet_blank_uid_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # totalseg_ct has blank Study / Series Instance UIDs; the writer warns once per SEG.
    caplog.set_level(logging.ERROR, logger="radserve.dicom_io.seg.writing")
    yield


# --- round trips on real data ---------------------------------------------------------------


def test_totalseg_reference_is_y_flipped_and_resampling_fixes_it(
    shared_data: Path, totalseg: tuple[ImageSeries, LabelMap]
) -> None:
    raw = sitk.GetArrayFromImage(
        sitk.ReadImage(str(shared_data / "totalseg_ct" / "reference_seg.nii.gz"))
    )
    on_grid = totalseg[1].volume.array
    assert len(np.unique(on_grid)) > 20
    assert not np.array_equal(raw, on_grid)  # array order alone would be wrong...
    assert np.array_equal(raw[:, ::-1, :], on_grid)  # ...by exactly a flip of y


@pytest.mark.parametrize("kind", SEGMENTATION_TYPES)
def test_totalseg_round_trip_read_seg(
    kind: str, totalseg: tuple[ImageSeries, LabelMap], totalseg_segs: dict[str, Path]
) -> None:
    series, labelmap = totalseg
    read = read_seg(totalseg_segs[kind], reference=series.volume)
    assert np.array_equal(_original_labels(read, labelmap), labelmap.volume.array)
    present = set(labelmap.present_labels())
    assert {s.name for s in read.segments} == {
        s.name for s in labelmap.segments if s.label in present
    }
    liver = next(s for s in read.segments if s.name == "liver")
    assert (liver.category, liver.type) == (ANATOMICAL_STRUCTURE, ORGAN)
    if kind == "LABELMAP":  # a LABELMAP SEG keeps the label values
        assert np.array_equal(read.volume.array, labelmap.volume.array)


@pytest.mark.parametrize("kind", SEGMENTATION_TYPES)
def test_totalseg_highdicom_reads_the_same_mask(
    kind: str, totalseg: tuple[ImageSeries, LabelMap], totalseg_segs: dict[str, Path]
) -> None:
    series, labelmap = totalseg
    path = totalseg_segs[kind]
    lut = _number_to_label(pydicom.dcmread(path, stop_before_pixels=True), labelmap)
    assert np.array_equal(lut[_highdicom_labels(path, series.volume)], labelmap.volume.array)


@pytest.mark.parametrize("kind", SEGMENTATION_TYPES)
def test_totalseg_dcmqi_reads_the_same_mask(
    kind: str,
    totalseg: tuple[ImageSeries, LabelMap],
    totalseg_segs: dict[str, Path],
    tmp_path: Path,
) -> None:
    series, labelmap = totalseg
    path = totalseg_segs[kind]
    lut = _number_to_label(pydicom.dcmread(path, stop_before_pixels=True), labelmap)
    labels = _dcmqi_labels(path, series.volume, tmp_path)
    assert np.array_equal(lut[labels], labelmap.volume.array)


def test_frames_are_placed_by_position_not_by_order(
    totalseg: tuple[ImageSeries, LabelMap], totalseg_segs: dict[str, Path]
) -> None:
    series, labelmap = totalseg
    seg = pydicom.dcmread(totalseg_segs["BINARY"])
    size = seg.Rows * seg.Columns // 8  # 512 x 512: every frame is whole bytes
    frames = [seg.PixelData[i * size : (i + 1) * size] for i in range(seg.NumberOfFrames)]
    order = np.random.default_rng(0).permutation(len(frames))
    items = list(seg.PerFrameFunctionalGroupsSequence)
    seg.PerFrameFunctionalGroupsSequence = [items[i] for i in order]
    seg.PixelData = b"".join(frames[i] for i in order)
    read = read_seg(seg, reference=series.volume)
    assert np.array_equal(_original_labels(read, labelmap), labelmap.volume.array)


def test_reading_onto_a_flipped_grid(
    shared_data: Path, totalseg: tuple[ImageSeries, LabelMap], totalseg_segs: dict[str, Path]
) -> None:
    # The NIfTI's grid is the DICOM grid with the y axis reversed: each frame lands flipped.
    nifti = Volume.from_sitk(
        sitk.ReadImage(str(shared_data / "totalseg_ct" / "reference_seg.nii.gz"))
    )
    grid = nifti.with_array(np.zeros(nifti.shape, dtype=np.uint8))
    read = read_seg(totalseg_segs["LABELMAP"], reference=grid)
    assert np.array_equal(read.volume.array, nifti.array)
    assert not np.array_equal(read.volume.array, totalseg[1].volume.array)


def test_a_y_flipped_seg_fails_the_comparisons(
    totalseg: tuple[ImageSeries, LabelMap], tmp_path: Path
) -> None:
    series, labelmap = totalseg
    flipped = LabelMap(
        labelmap.volume.with_array(labelmap.volume.array[:, ::-1, :]), labelmap.segments
    )
    path = _save(write_seg(series, flipped, algorithm=ALGORITHM), tmp_path / "flipped.dcm")
    read = read_seg(path, reference=series.volume)
    assert not np.array_equal(_original_labels(read, labelmap), labelmap.volume.array)
    lut = _number_to_label(pydicom.dcmread(path, stop_before_pixels=True), labelmap)
    assert not np.array_equal(lut[_highdicom_labels(path, series.volume)], labelmap.volume.array)


@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_sts_round_trip(
    case: int, sts: Callable[[int], tuple[ImageSeries, LabelMap]], tmp_path: Path
) -> None:
    series, labelmap = sts(case)
    assert labelmap.volume.array.sum() > 100
    path = _save(write_seg(series, labelmap, algorithm=ALGORITHM), tmp_path / "seg.dcm")
    read = read_seg(path, reference=series.volume)
    assert np.array_equal(read.volume.array, labelmap.volume.array)
    assert [s.name for s in read.segments] == ["GTV_Mass"]
    assert np.array_equal(_highdicom_labels(path, series.volume), labelmap.volume.array)
    if case == 1:
        assert np.array_equal(_dcmqi_labels(path, series.volume, tmp_path), labelmap.volume.array)


def test_odd_frame_size_round_trip(seg_sr: Path, tmp_path: Path) -> None:
    # 23 columns x 38 rows: frames are not whole bytes, so frames share bytes when packed.
    folder = seg_sr / "dcmqi" / "segmentations" / "23x38x3"
    series = read_image_series(folder / "image")
    array = _resampled(folder / "nrrd" / "label.nrrd", series.volume)
    labelmap = LabelMap(series.volume.with_array(array), (SegmentInfo(1, "Liver"),))
    path = _save(write_seg(series, labelmap, algorithm=ALGORITHM), tmp_path / "odd.dcm")
    assert np.array_equal(read_seg(path, reference=series.volume).volume.array, array)
    assert np.array_equal(_highdicom_labels(path, series.volume), array)


def test_enhanced_multiframe_source(seg_sr: Path, tmp_path: Path) -> None:
    folder = seg_sr / "dcmqi" / "segmentations" / "24x38x3"
    series = read_image_series(folder / "multiframe")
    assert len(series.headers) == 1 and series.volume.frame_numbers
    array = _resampled(folder / "nrrd" / "label.nrrd", series.volume)
    labelmap = LabelMap(series.volume.with_array(array), (SegmentInfo(1, "Liver"),))
    seg = write_seg(series, labelmap, algorithm=ALGORITHM)
    source = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
    reference = source.SourceImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == series.headers[0].SOPInstanceUID
    assert int(reference.ReferencedFrameNumber) in series.volume.frame_numbers
    path = _save(seg, tmp_path / "mf.dcm")
    assert np.array_equal(read_seg(path, reference=series.volume).volume.array, array)
    assert np.array_equal(_highdicom_labels(path, series.volume), array)


# --- the fast path writes what highdicom's own constructor writes ---------------------------


def _highdicom_default(series: ImageSeries, labelmap: LabelMap, ours: Dataset) -> Dataset:
    """highdicom's default constructor given our segment descriptions and identifiers."""
    kind = str(ours.SegmentationType)
    items = [s for s in ours.SegmentSequence if int(s.SegmentNumber) > 0]
    lut = np.zeros(int(labelmap.volume.array.max()) + 1, dtype=np.uint16)
    for item in items:
        written = next(s for s in labelmap.segments if s.name == item.SegmentLabel)
        lut[written.label] = int(item.SegmentNumber)
    headers = []
    for header in series.headers:  # the UIDs our writer repairs (blank in totalseg_ct)
        header = copy.deepcopy(header)
        header.SOPClassUID = header.SOPClassUID or header.file_meta.MediaStorageSOPClassUID
        header.SOPInstanceUID = header.SOPInstanceUID or header.file_meta.MediaStorageSOPInstanceUID
        header.StudyInstanceUID = ours.StudyInstanceUID
        header.SeriesInstanceUID = ours.ReferencedSeriesSequence[0].SeriesInstanceUID
        headers.append(header)
    theirs = hd.seg.Segmentation(
        source_images=headers,
        pixel_array=lut[labelmap.volume.array],
        segmentation_type=kind,
        segment_descriptions=[hd.seg.SegmentDescription.from_dataset(i) for i in items],
        series_instance_uid=ours.SeriesInstanceUID,
        series_number=int(ours.SeriesNumber),
        sop_instance_uid=ours.SOPInstanceUID,
        instance_number=1,
        manufacturer=ours.Manufacturer,
        manufacturer_model_name=ours.ManufacturerModelName,
        software_versions=ours.SoftwareVersions,
        device_serial_number=ours.DeviceSerialNumber,
        series_description=ours.SeriesDescription,
        content_description=ours.ContentDescription,
        fractional_type=ours.get("SegmentationFractionalType", "PROBABILITY"),
        max_fractional_value=int(ours.get("MaximumFractionalValue", 255)),
    )
    buffer = io.BytesIO()
    theirs.save_as(buffer)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _assert_same_as_highdicom(ours: Dataset, theirs: Dataset) -> None:
    buffer = io.BytesIO()
    ours.save_as(buffer, enforce_file_format=True)
    ours = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    ignored = {
        "InstanceCreationTime",
        "ContentTime",
        "InstanceCreationDate",
        "ContentDate",
        "ContributingEquipmentSequence",  # ours appends the model (checked below)
        "DimensionIndexSequence",  # Dimension Organization UIDs: derived, not random
        "DimensionOrganizationSequence",
        "PixelData",  # highdicom pads an odd length with b"0" (checked below)
    }
    # Ours adds Series Date and Time (a dated result series); highdicom leaves them out.
    assert {e.keyword for e in ours} == {e.keyword for e in theirs} | {"SeriesDate", "SeriesTime"}
    for element in theirs:
        if element.keyword in ignored:
            continue
        limit = MAX_LENGTH.get(element.VR)
        if limit is not None and isinstance(element.value, str) and len(element.value) > limit:
            # highdicom copies an over-long source value; ours is cut to the VR's limit.
            assert ours[element.tag].value == element.value[:limit], element.keyword
            continue
        assert ours[element.tag] == element, element.keyword
    ours_equipment = list(ours.ContributingEquipmentSequence)
    assert ours_equipment[-1].Manufacturer == "radserve"
    for a, b in zip(ours_equipment[:-1], theirs.ContributingEquipmentSequence, strict=True):
        for item in (a, b):  # highdicom's own item has the time of writing
            item.pop("ContributionDateTime", None)
        assert a == b
    for a, b in zip(ours.DimensionIndexSequence, theirs.DimensionIndexSequence, strict=True):
        assert a.DimensionIndexPointer == b.DimensionIndexPointer
        assert a.FunctionalGroupPointer == b.FunctionalGroupPointer
    size = len(ours.PixelData) - len(ours.PixelData) % 2 if len(ours.PixelData) > 1 else 1
    assert ours.PixelData[:size] == theirs.PixelData[:size]


@pytest.mark.parametrize("kind", SEGMENTATION_TYPES)
def test_totalseg_same_as_highdicom_constructor(
    kind: str, totalseg: tuple[ImageSeries, LabelMap]
) -> None:
    series, labelmap = totalseg
    ours = write_seg(series, labelmap, algorithm=ALGORITHM, segmentation_type=kind)
    _assert_same_as_highdicom(ours, _highdicom_default(series, labelmap, ours))


@pytest.mark.filterwarnings("ignore::UserWarning")  # highdicom: person names
def test_single_segment_same_as_highdicom_constructor(
    sts: Callable[[int], tuple[ImageSeries, LabelMap]],
) -> None:
    # One segment: shared Segment Identification and a "3D" Dimension Organization Type.
    series, labelmap = sts(2)
    ours = write_seg(series, labelmap, algorithm=ALGORITHM)
    assert ours.DimensionOrganizationType == "3D"
    _assert_same_as_highdicom(ours, _highdicom_default(series, labelmap, ours))


@pytest.mark.filterwarnings("ignore::UserWarning")  # highdicom: person names
def test_odd_and_multiframe_same_as_highdicom_constructor(seg_sr: Path) -> None:
    folder = seg_sr / "dcmqi" / "segmentations"
    for series_folder, nrrd in (
        (folder / "23x38x3" / "image", folder / "23x38x3" / "nrrd" / "label.nrrd"),
        (folder / "24x38x3" / "multiframe", folder / "24x38x3" / "nrrd" / "label.nrrd"),
    ):
        series = read_image_series(series_folder)
        array = _resampled(nrrd, series.volume)
        labelmap = LabelMap(series.volume.with_array(array), (SegmentInfo(1, "Liver"),))
        ours = write_seg(series, labelmap, algorithm=ALGORITHM)
        _assert_same_as_highdicom(ours, _highdicom_default(series, labelmap, ours))


# --- metadata, UIDs, validator -----------------------------------------------------------


def test_metadata_identifies_the_algorithm(totalseg_segs: dict[str, Path]) -> None:
    seg = pydicom.dcmread(totalseg_segs["BINARY"], stop_before_pixels=True)
    assert seg.Manufacturer == "radserve"
    assert seg.ManufacturerModelName == "test-model 1.2.3"
    assert "test-model 1.2.3" in str(seg.SoftwareVersions)
    assert seg.SeriesDescription == "AI SEG (test-model 1.2.3) - requires review"
    assert seg.SeriesNumber == 901
    # A result series is dated when it was made (its content), not left undated.
    assert (seg.SeriesDate, seg.SeriesTime) == (seg.ContentDate, seg.ContentTime)
    assert len(seg.SeriesDate) == 8 and seg.SeriesTime
    item = seg.SegmentSequence[0]
    assert item.SegmentAlgorithmType == "AUTOMATIC"
    assert item.SegmentAlgorithmName == "test-model 1.2.3"
    algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("test-model", "1.2.3")
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    equipment = seg.ContributingEquipmentSequence[-1]
    assert equipment.Manufacturer == "radserve"
    assert equipment.ManufacturerModelName == "test-model 1.2.3"
    assert [s.SegmentLabel for s in seg.SegmentSequence][:3] == ["spleen", "liver", "stomach"]


def test_empty_frames_and_segments_are_omitted(
    totalseg: tuple[ImageSeries, LabelMap],
    totalseg_segs: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    series, labelmap = totalseg
    seg = pydicom.dcmread(totalseg_segs["BINARY"], stop_before_pixels=True)
    present = labelmap.present_labels()
    assert len(seg.SegmentSequence) == len(present) < len(labelmap.segments)
    frames = sum(
        int(np.any(labelmap.volume.array[k] == label))
        for label in present
        for k in range(series.volume.shape[0])
    )
    assert seg.NumberOfFrames == frames
    caplog.set_level(logging.INFO, logger="radserve.dicom_io.seg.writing")
    write_seg(series, labelmap, algorithm=ALGORITHM)
    assert "segment 90 (brain) has no voxels" in caplog.text


def test_uids_are_deterministic(sts: Callable[[int], tuple[ImageSeries, LabelMap]]) -> None:
    series, labelmap = sts(1)
    first = write_seg(series, labelmap, algorithm=ALGORITHM)
    again = write_seg(series, labelmap, algorithm=ALGORITHM)
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (
        again.SOPInstanceUID,
        again.SeriesInstanceUID,
    )
    assert first.StudyInstanceUID == series.volume.study_instance_uid
    newer = AlgorithmIdentity(name="test-model", version="1.2.4", model_sha256="ab" * 32)
    other = write_seg(series, labelmap, algorithm=newer)
    assert other.SOPInstanceUID != first.SOPInstanceUID
    assert other.SeriesInstanceUID != first.SeriesInstanceUID
    labelmap_seg = write_seg(series, labelmap, algorithm=ALGORITHM, segmentation_type="LABELMAP")
    assert labelmap_seg.SOPInstanceUID != first.SOPInstanceUID


@pytest.mark.tools
@pytest.mark.parametrize("kind", SEGMENTATION_TYPES)
def test_validator_accepts_totalseg_segs(
    kind: str, totalseg_segs: dict[str, Path], dciodvfy: Callable[[Path], ValidatorReport]
) -> None:
    report = dciodvfy(totalseg_segs[kind])
    assert _errors(report, labelmap=kind == "LABELMAP") == [], report.output


@pytest.mark.tools
def test_validator_accepts_sts_and_odd_size_segs(
    sts: Callable[[int], tuple[ImageSeries, LabelMap]],
    seg_sr: Path,
    tmp_path: Path,
    dciodvfy: Callable[[Path], ValidatorReport],
) -> None:
    series, labelmap = sts(1)
    path = _save(write_seg(series, labelmap, algorithm=ALGORITHM), tmp_path / "sts.dcm")
    report = dciodvfy(path)
    # The source CT's Study ID is 17 characters (SH allows 16); the SEG copies it verbatim.
    source = dciodvfy(next((seg_sr.parent / "sts_ct" / "dicom" / "STS_001" / "image").iterdir()))
    assert any("StudyID" in e for e in source.errors)
    assert _errors(report, source=source) == [], report.output
    folder = seg_sr / "dcmqi" / "segmentations" / "23x38x3"
    odd = read_image_series(folder / "image")
    array = _resampled(folder / "nrrd" / "label.nrrd", odd.volume)
    odd_map = LabelMap(odd.volume.with_array(array), (SegmentInfo(1, "Liver"),))
    path = _save(write_seg(odd, odd_map, algorithm=ALGORITHM), tmp_path / "odd.dcm")
    report = dciodvfy(path)
    assert _errors(report) == [], report.output


# --- reading SEGs from other writers -------------------------------------------------------


def test_pydicom_liver_in_nine_encodings_reads_the_same(seg_sr: Path) -> None:
    grid = read_image_series(seg_sr / "dcmqi" / "segmentations" / "ct-3slice").volume
    paths = sorted((seg_sr / "pydicom_data").glob("liver*.dcm"))
    syntaxes = {
        str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in paths
    }
    assert len(paths) == 9 and len(syntaxes) == 5  # native, big endian, deflate, RLE, J2K
    arrays = [read_seg(p, reference=grid).volume.array for p in paths]
    assert arrays[0].sum() > 100_000
    for path, array in zip(paths[1:], arrays[1:], strict=True):
        assert np.array_equal(array, arrays[0]), path.name
    expected = _sitkonto_grid(seg_sr / "dcmqi" / "segmentations" / "liver_seg.nrrd", grid)
    assert np.array_equal(arrays[0], expected)


def test_dcmqi_binary_matches_its_source_labels(seg_sr: Path) -> None:
    folder = seg_sr / "dcmqi" / "segmentations"
    for name in ("24x38x3", "23x38x3"):
        grid = read_image_series(folder / name / "image").volume
        read = read_seg(folder / name / "seg" / "label.seg", reference=grid)
        expected = _sitkonto_grid(folder / name / "nrrd" / "label.nrrd", grid)
        assert read.volume.array.sum() > 0
        assert np.array_equal(read.volume.array, expected), name
        assert [s.name for s in read.segments] == ["Liver"]


def test_dcmqi_labelmap_with_and_without_padding_value(seg_sr: Path) -> None:
    folder = seg_sr / "dcmqi" / "segmentations"
    grid = read_image_series(folder / "24x38x3" / "image").volume
    for name in ("sparse-labelmap-ppv5.dcm", "sparse-labelmap-noppv.dcm"):
        read = read_seg(folder / name, reference=grid)
        assert [(s.label, s.name) for s in read.segments] == [(1, "Liver")]
        assert np.array_equal(read.volume.array, _highdicom_labels(folder / name, grid))
        # Sparse: the middle slice has no frame, the outer two have the same 315 voxels.
        assert [int(read.volume.array[k].sum()) for k in range(3)] == [315, 0, 315]


def test_overlapping_segments(seg_sr: Path) -> None:
    folder = seg_sr / "dcmqi" / "segmentations"
    grid = read_image_series(folder / "ct-3slice").volume
    path = folder / "partial_overlaps.dcm"
    with pytest.raises(MaskError, match="overlap"):
        read_seg(path, reference=grid)
    read = read_seg(path, reference=grid, overlap="later_wins")
    seg = hd.seg.segread(str(path))
    volume = seg.get_volume(combine_segments=False, allow_missing_positions=True)
    expected = np.zeros(grid.shape, dtype=np.int64)
    for channel, number in enumerate(seg.segment_numbers):
        mask = np.asarray(volume.array[..., channel]) != 0
        on_grid = onto_grid(mask.astype(np.int64), np.asarray(volume.affine), grid)
        expected[on_grid != 0] = number  # ascending: the later segment overwrites
    assert np.array_equal(read.volume.array, expected)
    assert [s.name for s in read.segments] == [
        "GREEN",
        "ORANGE",
        "PURPLE",
        "LIGHT_BLUE",
        "DARK_BLUE",
    ]


def test_mirp_bit_packing_edge_case(seg_sr: Path) -> None:
    grid = read_image_series(seg_sr / "mirp_data_5" / "image").volume
    path = seg_sr / "mirp_data_5" / "mask" / "mask.dcm"
    array = read_seg(path, reference=grid).volume.array
    assert grid.shape == (3, 38, 23)
    for k in range(3):  # the four corners of every slice
        assert [array[k, 0, 0], array[k, 0, -1], array[k, -1, 0], array[k, -1, -1]] == [1] * 4
    assert [int(array[k].sum()) for k in range(3)] == [4, 314, 4]  # a disc in the middle
    assert np.array_equal(array, _highdicom_labels(path, grid))


def _grid_of(seg: hd.seg.Segmentation) -> Volume:
    """The regular grid highdicom derives from a SEG's frames (no source series here)."""
    geometry = seg.get_volume_geometry()
    matrix = np.asarray(geometry.affine)[:3, :3]  # columns: numpy axes 0, 1, 2 = k, j, i
    spacing = np.linalg.norm(matrix, axis=0)
    direction = (matrix / spacing)[:, ::-1]
    return Volume(
        array=np.zeros(geometry.spatial_shape, dtype=np.uint8),
        spacing_mm=(float(spacing[2]), float(spacing[1]), float(spacing[0])),
        origin_mm=tuple(float(v) for v in np.asarray(geometry.affine)[:3, 3]),  # type: ignore[arg-type]
        direction=direction,
        frame_of_reference_uid=str(seg.FrameOfReferenceUID),
    )


@pytest.mark.parametrize(
    "name",
    [
        "seg_image_ct_binary.dcm",
        "seg_image_ct_binary_overlap.dcm",
        "seg_image_ct_binary_fractional.dcm",
        "seg_image_ct_true_fractional.dcm",
    ],
)
def test_highdicom_examples(seg_sr: Path, name: str) -> None:
    path = seg_sr / "highdicom" / name
    seg = hd.seg.segread(str(path))
    grid = _grid_of(seg)
    read = read_seg(path, reference=grid, overlap="later_wins")
    volume = seg.get_volume(combine_segments=False, allow_missing_positions=True)
    expected = np.zeros(grid.shape, dtype=np.int64)
    for channel, number in enumerate(seg.segment_numbers):
        # FRACTIONAL: inside where the fraction is at least 0.5.
        mask = np.asarray(volume.array[..., channel]) >= 0.5
        expected[onto_grid(mask.astype(np.int64), np.asarray(volume.affine), grid) != 0] = number
    assert expected.sum() > 0
    assert np.array_equal(read.volume.array, expected)
    if seg.SegmentationType == "FRACTIONAL" and "true" in name:
        fractions = np.unique(np.asarray(volume.array))
        assert len(fractions) > 2  # a real probability map, thresholded


def test_fractional_threshold_is_an_option(seg_sr: Path) -> None:
    path = seg_sr / "highdicom" / "seg_image_ct_true_fractional.dcm"
    grid = _grid_of(hd.seg.segread(str(path)))
    low = read_seg(path, reference=grid, fractional_threshold=0.1).volume.array
    high = read_seg(path, reference=grid, fractional_threshold=0.9).volume.array
    assert high.sum() < low.sum()
    assert np.all(low[high != 0] != 0)


# --- bad input ---------------------------------------------------------------------------


def test_another_frame_of_reference_raises(
    sts: Callable[[int], tuple[ImageSeries, LabelMap]],
) -> None:
    series, labelmap = sts(1)
    seg = write_seg(series, labelmap, algorithm=ALGORITHM)
    seg.FrameOfReferenceUID = "1.2.3.4"
    with pytest.raises(MaskError, match="Frame of Reference"):
        read_seg(seg, reference=series.volume)


def test_a_seg_of_another_series_on_the_same_frame_raises(
    sts: Callable[[int], tuple[ImageSeries, LabelMap]],
) -> None:
    # Same Frame of Reference, but the reference grid is shifted by half a voxel.
    series, labelmap = sts(1)
    seg = write_seg(series, labelmap, algorithm=ALGORITHM)
    origin = np.asarray(series.volume.origin_mm) + series.volume.direction[:, 0] * 0.5
    shifted = Volume(
        array=series.volume.array,
        spacing_mm=series.volume.spacing_mm,
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction=series.volume.direction,
        frame_of_reference_uid=series.volume.frame_of_reference_uid,
    )
    with pytest.raises(MaskError, match="not on the reference grid"):
        read_seg(seg, reference=shifted)
    cropped = Volume(
        array=series.volume.array[:, :, :10],
        spacing_mm=series.volume.spacing_mm,
        origin_mm=series.volume.origin_mm,
        direction=series.volume.direction,
        frame_of_reference_uid=series.volume.frame_of_reference_uid,
    )
    with pytest.raises(MaskError, match="outside the reference grid"):
        read_seg(seg, reference=cropped)


@pytest.mark.filterwarnings("ignore:Expected implicit VR")  # the reader reading a plain CT
def test_not_a_seg_raises(seg_sr: Path, tmp_path: Path) -> None:
    grid = read_image_series(seg_sr / "dcmqi" / "segmentations" / "ct-3slice").volume
    ct = seg_sr / "dcmqi" / "segmentations" / "ct-3slice" / "01.dcm"
    with pytest.raises(MaskError, match="not a DICOM SEG"):
        read_seg(ct, reference=grid)
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM at all")
    with pytest.raises(MaskError, match="not a DICOM SEG"):
        read_seg(text, reference=grid)
    with pytest.raises(MaskError, match="Frame of Reference"):  # a CR SEG: no patient space
        read_seg(seg_sr / "highdicom" / "seg_image_cr_binary.dcm", reference=grid)


def test_corrupt_seg_raises(sts: Callable[[int], tuple[ImageSeries, LabelMap]]) -> None:
    series, labelmap = sts(1)
    seg = write_seg(series, labelmap, algorithm=ALGORITHM)
    seg.PixelData = seg.PixelData[:100]
    with pytest.raises(MaskError, match="corrupt"):
        read_seg(seg, reference=series.volume)
    seg = write_seg(series, labelmap, algorithm=ALGORITHM)
    seg.NumberOfFrames = int(seg.NumberOfFrames) + 1
    with pytest.raises(MaskError, match="corrupt"):
        read_seg(seg, reference=series.volume)


def test_writer_rejects_a_label_map_it_cannot_write(
    sts: Callable[[int], tuple[ImageSeries, LabelMap]],
) -> None:
    series, labelmap = sts(1)
    other_grid = LabelMap(
        Volume(
            array=labelmap.volume.array,
            spacing_mm=(1.5, 1.5, 3.27),
            origin_mm=series.volume.origin_mm,
            direction=series.volume.direction,
        ),
        labelmap.segments,
    )
    with pytest.raises(MaskError, match="off the source grid"):
        write_seg(series, other_grid, algorithm=ALGORITHM)
    undeclared = labelmap.volume.array.copy()
    undeclared[0, 0, 0] = 7
    with pytest.raises(MaskError, match=r"without a SegmentInfo: \[7\]"):
        write_seg(
            series,
            LabelMap(series.volume.with_array(undeclared), labelmap.segments),
            algorithm=ALGORITHM,
        )
    empty = LabelMap(series.volume.with_array(np.zeros_like(undeclared)), labelmap.segments)
    with pytest.raises(MaskError, match="empty"):
        write_seg(series, empty, algorithm=ALGORITHM)
