"""Series -> Volume: geometry, pixel values, enhanced multi-frame and the errors on bad input."""

from __future__ import annotations

import copy
import logging
import re
import zipfile
from pathlib import Path

import gdcm
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import generate_uid
from pydicom.valuerep import format_number_as_ds

from radserve.dicom_io import (
    DuplicatePositionError,
    GantryTiltError,
    InconsistentSeriesError,
    MissingSlicesError,
    MixedMatrixSizeError,
    MixedOrientationError,
    MultipleStacksError,
    NotAVolumeError,
    group_by_study,
    group_series,
    image_series_from_instances,
    iter_instance_headers,
    iter_instances,
    read_image_series,
    read_series,
    volume_from_instances,
)

# --- helpers -----------------------------------------------------------------------------


def _gdcm_convert(source: Path, target: Path, syntax: int) -> Path:
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    target.parent.mkdir(parents=True, exist_ok=True)
    writer.SetFileName(str(target))
    assert writer.Write()
    return target


def _sts(shared_data: Path, case: int = 1) -> list[Dataset]:
    return list(iter_instances([shared_data / "sts_ct" / "dicom" / f"STS_00{case}" / "image"]))


def _ds_values(values: npt.ArrayLike) -> list[str]:
    return [format_number_as_ds(float(v)) for v in np.asarray(values, dtype=float).ravel()]


def _rotation(axis: str, degrees: float) -> npt.NDArray[np.float64]:
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def _moved(
    instances: list[Dataset], rot: npt.NDArray[np.float64], shift: npt.ArrayLike
) -> list[Dataset]:
    """Copies of ``instances`` with the patient moved rigidly: p -> rot @ p + shift."""
    moved = []
    for ds in instances:
        new = copy.deepcopy(ds)
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        new.ImageOrientationPatient = _ds_values(np.concatenate([rot @ iop[:3], rot @ iop[3:]]))
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        new.ImagePositionPatient = _ds_values(rot @ ipp + np.asarray(shift, dtype=float))
        moved.append(new)
    return moved


def _new_uid(ds: Dataset) -> Dataset:
    new = copy.deepcopy(ds)
    new.SOPInstanceUID = generate_uid()
    return new


def _dicom_lps(ds: Dataset, i: float, j: float) -> npt.NDArray[np.float64]:
    """The DICOM formula (PS3.3 C.7.6.2.1.1) for pixel (column i, row j) of one slice."""
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    row_mm, column_mm = (float(v) for v in ds.PixelSpacing)
    return (
        np.asarray(ds.ImagePositionPatient, dtype=float)
        + i * column_mm * iop[:3]
        + j * row_mm * iop[3:]
    )


# --- real series -------------------------------------------------------------------------


def test_ct_series_geometry_and_values(shared_data: Path) -> None:
    instances = _sts(shared_data)
    series = image_series_from_instances(instances)
    vol = series.volume
    assert vol.shape == (59, 202, 198)
    assert vol.array.dtype == np.int16
    np.testing.assert_allclose(vol.spacing_mm, (0.976562, 0.976562, 3.27), atol=1e-6)
    np.testing.assert_allclose(vol.direction, np.eye(3))
    # Slices ordered inferior to superior; voxel values are the stored values (slope 1, 0).
    by_uid = {str(ds.SOPInstanceUID): ds for ds in instances}
    z = [float(by_uid[uid].ImagePositionPatient[2]) for uid in vol.sop_instance_uids]
    assert z == sorted(z)
    assert vol.origin_mm == pytest.approx(
        tuple(float(v) for v in by_uid[vol.sop_instance_uids[0]].ImagePositionPatient)
    )
    for k in (0, 30, 58):
        np.testing.assert_array_equal(vol.array[k], by_uid[vol.sop_instance_uids[k]].pixel_array)
    assert [h.SOPInstanceUID for h in series.headers] == list(vol.sop_instance_uids)
    assert all("PixelData" not in h for h in series.headers)
    assert vol.frame_of_reference_uid == str(instances[0].FrameOfReferenceUID)
    assert vol.modality == "CT"
    assert vol.frame_numbers == ()
    # Building the volume leaves the source instances intact (their pixels included).
    np.testing.assert_array_equal(volume_from_instances(instances).array, vol.array)


def test_spacing_comes_from_positions_and_rescale_is_applied(shared_data: Path) -> None:
    # 20 slices 2 mm apart although Slice Thickness is 3 mm; 12-bit unsigned, intercept -1024;
    # blank SOP Class / Instance UIDs in the data set (the file meta has them).
    folder = shared_data / "totalseg_ct" / "dicom"
    instances = list(iter_instances([folder]))
    assert float(instances[0].SliceThickness) == 3.0
    vol = volume_from_instances(instances)
    assert vol.shape == (20, 512, 512)
    assert vol.spacing_mm[2] == pytest.approx(2.0)
    assert vol.array.dtype == np.int16
    by_uid = {str(ds.file_meta.MediaStorageSOPInstanceUID): ds for ds in instances}
    assert set(vol.sop_instance_uids) == set(by_uid)
    assert vol.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    first = by_uid[vol.sop_instance_uids[0]]
    np.testing.assert_array_equal(vol.array[0], first.pixel_array.astype(np.int32) - 1024)
    assert int(vol.array.min()) < -1000


def test_varying_rescale_per_slice_gives_float32(shared_data: Path) -> None:
    folder = shared_data / "dicom2nifti" / "generic" / "anatomical" / "002_non_isotropic"
    instances = list(iter_instances([folder]))
    vol = volume_from_instances(instances)
    assert vol.array.dtype == np.float32
    assert vol.spacing_mm == pytest.approx((6.39995861, 4.0, 0.5), abs=1e-4)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in instances}
    for k, uid in enumerate(vol.sop_instance_uids):
        ds = by_uid[uid]
        expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(vol.array[k], expected, rtol=1e-6)


def test_rescale_out_of_int16_range_gives_float32(shared_data: Path) -> None:
    instances = _sts(shared_data)
    for ds in instances:
        ds.RescaleIntercept = "32000"
    vol = volume_from_instances(instances)
    assert vol.array.dtype == np.float32
    assert float(vol.array.max()) == float(max(ds.pixel_array.max() for ds in instances)) + 32000


def test_integral_slope_keeps_int16(shared_data: Path) -> None:
    instances = _sts(shared_data)
    for ds in instances:
        ds.RescaleSlope, ds.RescaleIntercept = "2", "-5"
    vol = volume_from_instances(instances)
    assert vol.array.dtype == np.int16
    by_uid = {str(ds.SOPInstanceUID): ds for ds in instances}
    np.testing.assert_array_equal(
        vol.array[3], by_uid[vol.sop_instance_uids[3]].pixel_array.astype(np.int32) * 2 - 5
    )


def test_input_order_does_not_matter(shared_data: Path) -> None:
    instances = _sts(shared_data)
    reference = volume_from_instances(instances)
    shuffled = [instances[i] for i in np.random.default_rng(0).permutation(len(instances))]
    for n, ds in enumerate(reversed(shuffled)):
        ds.InstanceNumber = n  # instance numbers that disagree with the positions
    vol = volume_from_instances(shuffled)
    np.testing.assert_array_equal(vol.array, reference.array)
    np.testing.assert_allclose(vol.affine_lps(), reference.affine_lps())
    assert vol.sop_instance_uids == reference.sop_instance_uids


def test_same_instance_twice_counts_once(shared_data: Path) -> None:
    instances = _sts(shared_data)
    vol = volume_from_instances([*instances, instances[5]])
    assert vol.shape[0] == len(instances)


# --- orientation: oblique, decubitus, prone, feet first ----------------------------------

_POSES = {
    "oblique": _rotation("x", 20) @ _rotation("y", -35) @ _rotation("z", 10),
    "left-decubitus": _rotation("z", 90),
    "right-decubitus": _rotation("z", -90),
    "prone": _rotation("z", 180),
    "feet-first-supine": _rotation("y", 180),
    "feet-first-prone": _rotation("x", 180),
    "sagittal-stack": _rotation("y", 90),
    "coronal-stack": _rotation("x", -90),
}


@pytest.mark.parametrize("pose", sorted(_POSES))
def test_rotated_series_has_rotated_affine(shared_data: Path, pose: str) -> None:
    rot = _POSES[pose]
    shift = np.array([12.5, -40.0, 300.0])
    instances = _sts(shared_data)
    reference = volume_from_instances(instances)
    moved = _moved(instances, rot, shift)
    vol = volume_from_instances(moved[::-1])
    rigid = np.eye(4)
    rigid[:3, :3], rigid[:3, 3] = rot, shift
    np.testing.assert_allclose(vol.affine_lps(), rigid @ reference.affine_lps(), atol=1e-4)
    np.testing.assert_array_equal(vol.array, reference.array)
    assert np.linalg.det(vol.direction) == pytest.approx(1.0)
    # Independently of the affine: corners of slices map where the DICOM formula puts them.
    by_uid = {str(ds.SOPInstanceUID): ds for ds in moved}
    for k in (0, vol.shape[0] - 1):
        ds = by_uid[vol.sop_instance_uids[k]]
        for i, j in ((0, 0), (vol.shape[2] - 1, 0), (5, vol.shape[1] - 1)):
            np.testing.assert_allclose(vol.index_to_lps([i, j, k]), _dicom_lps(ds, i, j), atol=1e-4)


def test_sorting_follows_the_normal_not_z(shared_data: Path) -> None:
    # Feet first: the normal points to the feet, so slice 0 is the most superior in LPS z.
    moved = _moved(_sts(shared_data), _rotation("y", 180), [0, 0, 0])
    vol = volume_from_instances(moved)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in moved}
    z = [float(by_uid[uid].ImagePositionPatient[2]) for uid in vol.sop_instance_uids]
    assert z == sorted(z, reverse=True)
    np.testing.assert_allclose(vol.direction[:, 2], [0, 0, -1], atol=1e-9)


# --- enhanced multi-frame ----------------------------------------------------------------


def _enhanced_file(shared_data: Path, vendor: str, kind: str = "anatomical") -> Path:
    (path,) = (shared_data / "dicom2nifti" / vendor / kind / "001").iterdir()
    return path


def test_philips_enhanced_mr(shared_data: Path) -> None:
    path = _enhanced_file(shared_data, "philips_enhanced")
    ds = pydicom.dcmread(path)
    vol = read_series(path)
    assert vol.shape == (8, 256, 256)
    assert vol.frame_numbers == tuple(range(1, 9))
    assert vol.sop_instance_uids == (str(ds.SOPInstanceUID),) * 8
    assert vol.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4.1"
    np.testing.assert_allclose(vol.spacing_mm, (1.0, 1.0, 1.2), atol=1e-4)
    # Sagittal: rows run anterior-posterior, columns head-foot, normal towards the right.
    np.testing.assert_allclose(vol.direction, [[0, 0, -1], [1, 0, 0], [0, -1, 0]], atol=1e-9)
    frame = ds.PerFrameFunctionalGroupsSequence[0]
    assert vol.origin_mm == pytest.approx(
        tuple(float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient)
    )
    # Philips' real-valued Rescale Slope is applied: float32 in display units.
    slope = float(frame.PixelValueTransformationSequence[0].RescaleSlope)
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, ds.pixel_array * slope, rtol=1e-6)


def test_enhanced_frames_are_sorted_by_position(shared_data: Path) -> None:
    ds = pydicom.dcmread(_enhanced_file(shared_data, "philips_enhanced"))
    reference = volume_from_instances([ds])
    # The same frames stored in reverse order: the volume is the same, frame numbers reversed.
    reversed_ds = copy.deepcopy(ds)
    reversed_ds.PerFrameFunctionalGroupsSequence = list(ds.PerFrameFunctionalGroupsSequence)[::-1]
    reversed_ds.PixelData = ds.pixel_array[::-1].tobytes()
    vol = volume_from_instances([reversed_ds])
    np.testing.assert_array_equal(vol.array, reference.array)
    np.testing.assert_allclose(vol.affine_lps(), reference.affine_lps())
    assert vol.frame_numbers == tuple(range(8, 0, -1))


def test_siemens_enhanced_mr_is_oblique_int16(shared_data: Path) -> None:
    path = _enhanced_file(shared_data, "siemens_multiframe")
    ds = pydicom.dcmread(path)
    series = read_image_series(path)
    vol = series.volume
    assert len(series.headers) == 1 and "PixelData" not in series.headers[0]
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, ds.pixel_array)
    iop = np.asarray(
        ds.PerFrameFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient,
        dtype=float,
    )
    np.testing.assert_allclose(vol.direction[:, 0], iop[:3], atol=1e-5)
    np.testing.assert_allclose(vol.direction[:, 1], iop[3:], atol=1e-5)
    np.testing.assert_allclose(vol.direction[:, 2], np.cross(iop[:3], iop[3:]), atol=1e-5)
    assert vol.spacing_mm == pytest.approx((0.9375, 0.9375, 0.9), abs=1e-3)


def test_enhanced_shared_functional_groups_apply_to_every_frame(shared_data: Path) -> None:
    ds = pydicom.dcmread(_enhanced_file(shared_data, "siemens_multiframe"))
    reference = volume_from_instances([ds])
    # Orientation and pixel measures moved from each frame into the shared groups.
    shared = Dataset()
    first = ds.PerFrameFunctionalGroupsSequence[0]
    shared.PlaneOrientationSequence = first.PlaneOrientationSequence
    shared.PixelMeasuresSequence = first.PixelMeasuresSequence
    ds.SharedFunctionalGroupsSequence = [shared]
    for frame in ds.PerFrameFunctionalGroupsSequence:
        del frame.PlaneOrientationSequence
        del frame.PixelMeasuresSequence
    vol = volume_from_instances([ds])
    np.testing.assert_array_equal(vol.array, reference.array)
    np.testing.assert_allclose(vol.affine_lps(), reference.affine_lps())


def test_multiframe_without_functional_groups_is_not_a_volume(shared_data: Path) -> None:
    ds = _sts(shared_data)[0]
    ds.NumberOfFrames = 2
    with pytest.raises(NotAVolumeError, match="2 frames but no functional groups"):
        volume_from_instances([ds])


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        (
            "philips_enhanced/fmri/001",
            r"32 images at 8 positions form 4 stacks of 8 slices"
            r".*TemporalPositionIndex \(1, 2, 3, 4\)",
        ),
        ("philips_enhanced/fmri/001_implicit", r"TemporalPositionIndex \(1, 2, 3, 4\)"),
        ("philips_enhanced/dti/001", r"4 stacks of 8 slices.*DiffusionBValue \(0.0, 1300.0\)"),
        ("philips_enhanced/dti/001_implicit", r"DiffusionBValue"),
        ("ge/fmri/001", r"8 images at 4 positions form 2 stacks of 4 slices"),
        ("ge/dti/001", r"8 images at 4 positions form 2 stacks"),
        ("ge/dti/002", r"16 images at 4 positions form 4 stacks of 4 slices"),
    ],
)
def test_multi_volume_series_raise_multiple_stacks(
    shared_data: Path, relative: str, message: str
) -> None:
    with pytest.raises(MultipleStacksError, match=message):
        read_series(shared_data / "dicom2nifti" / relative)


# --- the failing examples ----------------------------------------------------------------

_FAILING = {
    "gantrytilting/001": (GantryTiltError, r"sheared.*tilt of about 14\.0 degrees"),
    "notavolume/001": (NotAVolumeError, r"4 images lie at only 1 distinct position"),
    "slicecount/001": (NotAVolumeError, r"only 2 slices; a volume needs at least 3"),
    "sliceincrement/001": (
        MissingSlicesError,
        r"expected 5\.000 mm, found 10\.000 mm between slices 3 and 4 \(about 1 missing\)",
    ),
    "sliceincrement/002": (
        MissingSlicesError,
        r"expected 0\.750 mm, found 1\.499 mm between slices 3 and 4 \(about 1 missing\)",
    ),
    "sliceorientation/001": (
        MixedOrientationError,
        r"4 images have 2 different Image Orientation \(Patient\) values",
    ),
}


def test_every_failing_example_is_covered(shared_data: Path) -> None:
    folder = shared_data / "dicom2nifti" / "failing"
    found = {f"{p.parent.name}/{p.name}" for p in folder.glob("*/*") if p.is_dir()}
    assert found == set(_FAILING)


@pytest.mark.parametrize("relative", sorted(_FAILING))
def test_failing_example_raises_its_error(shared_data: Path, relative: str) -> None:
    error, message = _FAILING[relative]
    with pytest.raises(InconsistentSeriesError) as caught:
        read_series(shared_data / "dicom2nifti" / "failing" / relative)
    assert type(caught.value) is error
    assert re.search(message, str(caught.value)), str(caught.value)
    # No patient-identifying values in the message.
    header = next(iter_instances([shared_data / "dicom2nifti" / "failing" / relative]))
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate"):
        value = str(header.get(keyword, "") or "")
        assert not value or value not in str(caught.value)


def test_single_slice_is_not_a_volume(shared_data: Path) -> None:
    folder = shared_data / "dicom2nifti" / "ge" / "anatomical" / "001_single_slice"
    with pytest.raises(NotAVolumeError, match="a single image"):
        read_series(folder)


def test_colour_series_is_not_a_volume(shared_data: Path) -> None:
    with pytest.raises(NotAVolumeError, match="RGB colour images"):
        read_series(shared_data / "dicom2nifti" / "generic" / "rgb" / "001")


def test_folder_with_several_series_is_refused(shared_data: Path) -> None:
    with pytest.raises(NotAVolumeError, match=r"expected one image series, found 2"):
        read_series(shared_data / "dicom2nifti" / "ge" / "anatomical")


# --- errors built from a good series ----------------------------------------------------


def test_missing_slice(shared_data: Path) -> None:
    instances = sorted(_sts(shared_data), key=lambda ds: float(ds.ImagePositionPatient[2]))
    del instances[30]
    with pytest.raises(MissingSlicesError, match=r"3\.270 mm.*6\.540 mm between slices 30 and 31"):
        volume_from_instances(instances)


def test_duplicate_position(shared_data: Path) -> None:
    instances = _sts(shared_data)
    with pytest.raises(DuplicatePositionError, match=r"2 of 60 images share a position"):
        volume_from_instances([*instances, _new_uid(instances[10])])


def test_two_echoes_are_multiple_stacks(shared_data: Path) -> None:
    first = _sts(shared_data)
    second = [_new_uid(ds) for ds in first]
    for ds in first:
        ds.EchoNumbers = "1"
    for ds in second:
        ds.EchoNumbers = "2"
    with pytest.raises(MultipleStacksError, match=r"2 stacks of 59 slices.*EchoNumbers \(1, 2\)"):
        volume_from_instances(first + second)


def test_mixed_orientation(shared_data: Path) -> None:
    instances = _sts(shared_data)
    instances[4:5] = _moved(instances[4:5], _rotation("z", 5), [0, 0, 0])
    with pytest.raises(MixedOrientationError, match=r"\(58 images\).*\(1 images\)"):
        volume_from_instances(instances)


def test_mixed_pixel_spacing(shared_data: Path) -> None:
    instances = _sts(shared_data)
    instances[7].PixelSpacing = ["0.5", "0.5"]
    with pytest.raises(MixedMatrixSizeError, match=r"Pixel Spacing: 0\.9766x0\.9766 mm \(58"):
        volume_from_instances(instances)


def test_mixed_matrix_size(shared_data: Path) -> None:
    instances = _sts(shared_data)
    instances[7].Rows = 100
    with pytest.raises(MixedMatrixSizeError, match=r"202x198 \(58 images\), 100x198 \(1 images\)"):
        volume_from_instances(instances)


def test_synthetic_gantry_tilt(shared_data: Path) -> None:
    instances = _sts(shared_data)
    for ds in instances:
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        ipp[1] += (ipp[2] + 881.32) * np.tan(np.deg2rad(10))  # shift along y with z
        ds.ImagePositionPatient = _ds_values(ipp)
    with pytest.raises(GantryTiltError, match=r"tilt of about 10\.0 degrees"):
        volume_from_instances(instances)


def test_position_jitter_is_tolerated(shared_data: Path) -> None:
    instances = _sts(shared_data)
    jitter = np.random.default_rng(1).uniform(-0.005, 0.005, size=(len(instances), 3))
    for ds, noise in zip(instances, jitter, strict=True):
        ds.ImagePositionPatient = _ds_values(np.asarray(ds.ImagePositionPatient, float) + noise)
    vol = volume_from_instances(instances)
    assert vol.spacing_mm[2] == pytest.approx(3.27, abs=1e-3)


def test_localizer_is_not_a_volume(shared_data: Path) -> None:
    instances = _sts(shared_data)
    for ds in instances:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    with pytest.raises(NotAVolumeError, match="localizer"):
        volume_from_instances(instances)


def test_images_without_position_are_not_a_volume(shared_data: Path) -> None:
    instances = _sts(shared_data)
    del instances[3].ImagePositionPatient
    with pytest.raises(NotAVolumeError, match=r"1 of 59 images have no Image Position"):
        volume_from_instances(instances)


def test_mixed_frames_of_reference(shared_data: Path) -> None:
    instances = _sts(shared_data)
    instances[0].FrameOfReferenceUID = generate_uid()
    with pytest.raises(InconsistentSeriesError, match="2 different Frames of Reference"):
        volume_from_instances(instances)


def test_min_slices_option(shared_data: Path) -> None:
    folder = shared_data / "dicom2nifti" / "failing" / "slicecount" / "001"
    vol = read_series(folder, min_slices=2)
    assert vol.shape == (2, 256, 256)
    assert vol.spacing_mm[2] == pytest.approx(1.0)


# --- grouping ----------------------------------------------------------------------------


def test_group_by_study_and_series(shared_data: Path) -> None:
    one, two = _sts(shared_data, 1), _sts(shared_data, 2)
    studies = group_by_study([*one, *two])
    assert studies == {
        str(one[0].StudyInstanceUID): {str(one[0].SeriesInstanceUID): one},
        str(two[0].StudyInstanceUID): {str(two[0].SeriesInstanceUID): two},
    }
    assert group_series([*one, *two]) == {
        str(one[0].SeriesInstanceUID): one,
        str(two[0].SeriesInstanceUID): two,
    }


# --- reading series from files: headers first, pixels straight into the volume -----------


def _write(instances: list[Dataset], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, ds in enumerate(instances):
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return folder


def _consecutive_sts(shared_data: Path, count: int = 5) -> list[Dataset]:
    """``count`` neighbouring slices of the real STS_001 CT (signed, 16 bits stored)."""
    instances = sorted(_sts(shared_data), key=lambda ds: float(ds.ImagePositionPatient[2]))
    return instances[20 : 20 + count]


def _assert_same_series(path: Path) -> None:
    """``read_image_series(path)`` equals the volume built from whole instances (pixels
    included) read by ``iter_instances``."""
    series = read_image_series(path)
    reference = image_series_from_instances(list(iter_instances([path])))
    assert series.volume.array.dtype == reference.volume.array.dtype
    np.testing.assert_array_equal(series.volume.array, reference.volume.array)
    assert series.volume.sop_instance_uids == reference.volume.sop_instance_uids
    np.testing.assert_allclose(series.volume.affine_lps(), reference.volume.affine_lps())
    for header, expected in zip(series.headers, reference.headers, strict=True):
        assert header.to_json_dict() == expected.to_json_dict()


def test_uncompressed_series_is_read_from_the_files(shared_data: Path) -> None:
    folder = shared_data / "sts_ct" / "dicom" / "STS_001" / "image"
    located = [location for _, location in iter_instance_headers([folder])]
    assert len(located) == 59
    assert all(location is not None for location in located)  # no Pixel Data parsed
    series = read_image_series(folder)
    assert all("PixelData" not in header for header in series.headers)
    # Complete headers: every other element of the source instances is there.
    by_uid = {str(ds.SOPInstanceUID): ds for ds in _sts(shared_data)}
    for header in series.headers[::20]:
        source = by_uid[str(header.SOPInstanceUID)]
        assert set(header.keys()) == set(source.keys()) - {Tag("PixelData")}
    _assert_same_series(folder)


def test_big_endian_series_matches_little_endian(shared_data: Path, tmp_path: Path) -> None:
    instances = _consecutive_sts(shared_data)
    source = _write(instances, tmp_path / "little")
    for k, path in enumerate(sorted(source.iterdir())):
        _gdcm_convert(path, tmp_path / "big" / f"{k}.dcm", gdcm.TransferSyntax.ExplicitVRBigEndian)
    located = [location for _, location in iter_instance_headers([tmp_path / "big"])]
    assert all(location is not None and not location.little_endian for location in located)
    vol = read_series(tmp_path / "big")
    np.testing.assert_array_equal(vol.array, volume_from_instances(instances).array)
    assert int(vol.array.min()) < 0


def test_garbage_in_unused_high_bits_is_cleared_like_pydicom(
    shared_data: Path, tmp_path: Path
) -> None:
    # Unsigned, 12 of 16 bits stored: set the 4 unused high bits of every other slice.
    folder = shared_data / "dicom2nifti" / "generic" / "anatomical" / "001"
    instances = [pydicom.dcmread(path) for path in sorted(folder.iterdir())]
    clean = volume_from_instances(instances)
    for ds in instances[::2]:
        ds.PixelData = (ds.pixel_array | np.uint16(0xF000)).tobytes()
    path = _write(instances, tmp_path / "series")
    vol = read_series(path)
    np.testing.assert_array_equal(vol.array, clean.array)
    assert int(vol.array.max()) < 4096
    for written in sorted(path.iterdir())[::2]:
        ds = pydicom.dcmread(written)
        uid = str(ds.SOPInstanceUID)
        np.testing.assert_array_equal(vol.array[vol.sop_instance_uids.index(uid)], ds.pixel_array)


def test_signed_values_without_sign_extension_are_extended(
    shared_data: Path, tmp_path: Path
) -> None:
    # Signed, 12 of 16 bits stored, written without the sign bits above bit 11.
    instances = _consecutive_sts(shared_data, 4)
    expected = []
    for ds in instances:
        values = np.clip(ds.pixel_array, -2048, 2047)
        expected.append(values)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = (values.astype(np.uint16) & np.uint16(0x0FFF)).tobytes()
    path = _write(instances, tmp_path / "series")
    vol = read_series(path)
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, np.stack(expected))
    assert int(vol.array.min()) < 0
    reference = pydicom.dcmread(sorted(path.iterdir())[0]).pixel_array
    np.testing.assert_array_equal(vol.array[0], reference)


@pytest.mark.parametrize("bits_allocated", [8, 32])
def test_8_and_32_bits_allocated(shared_data: Path, tmp_path: Path, bits_allocated: int) -> None:
    instances = _consecutive_sts(shared_data, 4)
    dtype = np.uint8 if bits_allocated == 8 else np.int32
    for ds in instances:
        values = ds.pixel_array.astype(np.int32)
        if bits_allocated == 8:
            values = np.clip(values // 16 + 64, 0, 255)
        ds.BitsAllocated = ds.BitsStored = bits_allocated
        ds.HighBit = bits_allocated - 1
        ds.PixelRepresentation = 0 if bits_allocated == 8 else 1
        ds.PixelData = values.astype(dtype).tobytes()
        ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"
    path = _write(instances, tmp_path / "series")
    assert all(location is not None for _, location in iter_instance_headers([path]))
    vol = read_series(path)
    assert vol.array.dtype == np.int16  # the values fit
    np.testing.assert_array_equal(vol.array, volume_from_instances(instances).array)


@pytest.mark.parametrize(
    ("offset", "intercept", "dtype"),
    [(1024, "0", np.int16), (40000, "-40000", np.int16), (40000, "0", np.float32)],
)
def test_16_bits_stored_unsigned(
    shared_data: Path, tmp_path: Path, offset: int, intercept: str, dtype: type
) -> None:
    # Unsigned with all 16 bits stored: whether int16 holds the result depends on the values.
    instances = _consecutive_sts(shared_data, 4)
    for ds in instances:
        values = np.clip(ds.pixel_array.astype(np.int32) + offset, 0, 65535)
        ds.PixelRepresentation, ds.RescaleIntercept = 0, intercept
        ds.PixelData = values.astype(np.uint16).tobytes()
    vol = read_series(_write(instances, tmp_path / "series"))
    assert vol.array.dtype == dtype
    reference = volume_from_instances(instances)
    assert reference.array.dtype == dtype
    np.testing.assert_array_equal(vol.array, reference.array)
    expected = instances[0].pixel_array.astype(np.int32) + int(intercept)
    np.testing.assert_array_equal(
        vol.array[vol.sop_instance_uids.index(str(instances[0].SOPInstanceUID))], expected
    )


def test_float_rescale_is_read_slice_by_slice(shared_data: Path, tmp_path: Path) -> None:
    instances = _consecutive_sts(shared_data, 4)
    for k, ds in enumerate(instances):
        ds.RescaleSlope, ds.RescaleIntercept = f"{0.5 + k / 10:.1f}", "-3.25"
    vol = read_series(_write(instances, tmp_path / "series"))
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, volume_from_instances(instances).array)


def test_mixed_encodings_in_one_series(shared_data: Path, tmp_path: Path) -> None:
    # Pixel Representation differs between slices and one slice is RLE compressed: no single
    # stored type, so every slice goes through the general decoder.
    instances = _consecutive_sts(shared_data, 5)
    unsigned = instances[1]
    values = unsigned.pixel_array.astype(np.int32) + 1024
    unsigned.PixelRepresentation, unsigned.RescaleIntercept = 0, "-1024"
    unsigned.PixelData = values.astype(np.uint16).tobytes()
    path = _write(instances, tmp_path / "series")
    rle = pydicom.dcmread(path / "003.dcm")
    rle.compress(pydicom.uid.RLELossless)
    rle.save_as(path / "003.dcm", enforce_file_format=True)
    located = {
        p.name: loc
        for p, (_, loc) in zip(sorted(path.iterdir()), iter_instance_headers([path]), strict=True)
    }
    assert located["003.dcm"] is None and located["001.dcm"] is not None
    _assert_same_series(path)


def test_elements_after_the_pixel_data_are_kept(shared_data: Path, tmp_path: Path) -> None:
    instances = _consecutive_sts(shared_data, 4)
    instances[2].add_new(0xFFFCFFFC, "OB", bytes(16))  # Data Set Trailing Padding
    path = _write(instances, tmp_path / "series")
    located = [location for _, location in iter_instance_headers([path])]
    assert [location is None for location in located] == [False, False, True, False]
    series = read_image_series(path)
    assert sum(0xFFFCFFFC in header for header in series.headers) == 1
    _assert_same_series(path)


def test_header_longer_than_the_first_read_chunk(shared_data: Path, tmp_path: Path) -> None:
    instances = _consecutive_sts(shared_data, 3)
    for ds in instances:
        ds.add_new(0x00091010, "LO", "RADSERVE TEST")
        ds.add_new(0x00091011, "OB", bytes(200_000))  # private, before the Pixel Data
    path = _write(instances, tmp_path / "series")
    assert all(location is not None for _, location in iter_instance_headers([path]))
    _assert_same_series(path)


def test_zip_of_a_series_reads_like_the_folder(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "dicom2nifti" / "generic" / "anatomical" / "001"
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"series/{path.name}")
    vol = read_series(archive)
    np.testing.assert_array_equal(vol.array, read_series(folder).array)
    assert vol.sop_instance_uids == read_series(folder).sop_instance_uids


def test_enhanced_frames_in_reverse_order_on_disk(shared_data: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(_enhanced_file(shared_data, "siemens_multiframe"))
    reference = volume_from_instances([ds])
    ds.PerFrameFunctionalGroupsSequence = list(ds.PerFrameFunctionalGroupsSequence)[::-1]
    ds.PixelData = ds.pixel_array[::-1].tobytes()
    path = tmp_path / "reversed.dcm"
    ds.save_as(path, enforce_file_format=True)
    ((_, location),) = iter_instance_headers([path])
    assert location is not None
    vol = read_series(path)
    np.testing.assert_array_equal(vol.array, reference.array)
    assert vol.frame_numbers == tuple(range(8, 0, -1))


def test_one_summary_line_for_tolerated_quirks(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every STS_001 slice has an 18-character Study ID (SH allows 16).
    caplog.set_level(logging.DEBUG, logger="radserve.dicom_io.reading.instances")
    read_series(shared_data / "sts_ct" / "dicom" / "STS_001" / "image")
    records = [r for r in caplog.records if "tolerated" in r.getMessage()]
    summaries = [r for r in records if r.levelno == logging.INFO]
    assert [r.getMessage() for r in summaries] == [
        "tolerated in 59 instances: StudyID (SH) longer than 16 characters"
    ]
    per_instance = [r for r in records if r.levelno == logging.DEBUG]
    assert len(per_instance) == 59
    study_id = str(_sts(shared_data)[0].StudyID)
    assert all(study_id not in r.getMessage() for r in records)
