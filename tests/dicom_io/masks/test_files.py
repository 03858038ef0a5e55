"""NIfTI / NRRD label maps: reading onto a reference grid, writing, and clear errors."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk

from radserve.dicom_io import (
    TISSUE,
    LabelMap,
    MaskError,
    SegmentInfo,
    Volume,
    read_image_file,
    read_labelmap_file,
    read_series,
    write_labelmap_file,
)


@cache
def _read_series_once(folder: Path) -> Volume:
    return read_series(folder)


def _oblique_grid(shape: tuple[int, int, int] = (5, 7, 9)) -> Volume:
    angle = np.deg2rad(25.0)
    rotation = np.array(
        [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    )
    return Volume(
        array=np.zeros(shape, dtype=np.int16),
        spacing_mm=(0.6, 0.8, 2.5),
        origin_mm=(-12.5, 40.25, 101.0),
        direction=rotation,
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.2",
        sop_instance_uids=tuple(f"1.2.826.0.1.3680043.8.498.3.{k}" for k in range(shape[0])),
    )


def _labels(shape: tuple[int, int, int], seed: int = 3) -> npt.NDArray[np.uint16]:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 1, 2, 300], dtype=np.uint16), size=shape)


def _write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


# ---------------------------------------------------------------- real data


@pytest.mark.parametrize("case", ["brain1", "breast1", "lung1"])
def test_pyradiomics_labels_on_their_images(shared_data: Path, case: str) -> None:
    folder = shared_data / "pyradiomics"
    image = read_image_file(folder / f"{case}_image.nrrd")
    labelmap = read_labelmap_file(folder / f"{case}_label.nrrd", reference=image)
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{case}_label.nrrd")))
    assert labelmap.volume.array.dtype == np.uint8  # stored as int16 / int32
    np.testing.assert_array_equal(labelmap.volume.array, stored)
    assert labelmap.volume.shape == image.shape
    assert [(s.label, s.name, s.category, s.type) for s in labelmap.segments] == [
        (1, "Segment 1", TISSUE, TISSUE)
    ]
    assert int(labelmap.mask(1).sum()) == int((stored == 1).sum()) > 100


def test_multi_label_nrrd_with_names_and_its_own_geometry(shared_data: Path) -> None:
    path = shared_data / "pyradiomics" / "prostate_phantom_subvolume-label.nrrd"
    labelmap = read_labelmap_file(path, segment_names={7: "peripheral zone", 8: "gland"})
    image = sitk.ReadImage(str(path))
    assert [(s.label, s.name) for s in labelmap.segments] == [
        (1, "Segment 1"),
        (7, "peripheral zone"),
        (8, "gland"),
        (9, "Segment 9"),
    ]
    np.testing.assert_allclose(labelmap.volume.origin_mm, image.GetOrigin())
    np.testing.assert_allclose(labelmap.volume.spacing_mm, image.GetSpacing())
    np.testing.assert_allclose(labelmap.volume.direction.ravel(), image.GetDirection())
    np.testing.assert_allclose(labelmap.volume.direction[:, 0], [-1, 0, 0], atol=1e-6)


@pytest.mark.parametrize("case", ["STS_001", "STS_003"])
def test_sts_nifti_mask_on_the_dicom_grid(shared_data: Path, case: str) -> None:
    reference = _read_series_once(shared_data / "sts_ct" / "dicom" / case / "image")
    path = shared_data / "sts_ct" / "nifti" / case / "mask.nii.gz"
    labelmap = read_labelmap_file(path, reference=reference, segment_names={1: "GTV_Mass"})
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    np.testing.assert_array_equal(labelmap.volume.array, stored)
    assert labelmap.volume.sop_instance_uids == reference.sop_instance_uids
    assert labelmap.volume.frame_of_reference_uid == reference.frame_of_reference_uid
    assert [(s.label, s.name) for s in labelmap.segments] == [(1, "GTV_Mass")]


def test_totalseg_y_flipped_nifti_lands_on_dicom_grid_by_world_position(
    shared_data: Path,
) -> None:
    folder = shared_data / "totalseg_ct"
    reference = _read_series_once(folder / "dicom")
    names = {int(k): v for k, v in json.loads((folder / "labels.json").read_text()).items()}
    path = folder / "reference_seg.nii.gz"
    labelmap = read_labelmap_file(path, reference=reference, segment_names=names)
    nifti = sitk.ReadImage(str(path))
    nifti_array = sitk.GetArrayFromImage(nifti)
    assert labelmap.volume.shape == reference.shape
    assert labelmap.volume.sop_instance_uids == reference.sop_instance_uids
    np.testing.assert_array_equal(labelmap.volume.array, nifti_array[:, ::-1, :])
    assert len(labelmap.segments) == 31
    assert {(s.label, s.name) for s in labelmap.segments} >= {(1, "spleen"), (5, "liver")}
    inverse = np.linalg.inv(reference.affine_lps())
    rng = np.random.default_rng(0)
    for label in (1, 5, 20, 117):
        # DICOM grid -> world -> NIfTI grid.
        k, j, i = np.argwhere(labelmap.volume.array == label)[rng.integers(100)]
        world = reference.index_to_lps([i, j, k])
        ni, nj, nk = nifti.TransformPhysicalPointToIndex(tuple(float(v) for v in world))
        assert nifti_array[nk, nj, ni] == label
        # NIfTI grid -> world -> DICOM grid.
        nk, nj, ni = np.argwhere(nifti_array == label)[rng.integers(100)]
        world = np.asarray(nifti.TransformIndexToPhysicalPoint((int(ni), int(nj), int(nk))))
        di, dj, dk = np.rint(world @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
        assert labelmap.volume.array[dk, dj, di] == label


# ---------------------------------------------------------------- writing and round trips


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".nhdr"])
def test_write_read_round_trip(tmp_path: Path, suffix: str) -> None:
    grid = _oblique_grid()
    labelmap = LabelMap(
        volume=grid.with_array(_labels(grid.shape)),
        segments=(SegmentInfo(1, "a"), SegmentInfo(2, "b"), SegmentInfo(300, "c")),
    )
    path = tmp_path / f"labels{suffix}"
    write_labelmap_file(labelmap, path)
    back = read_labelmap_file(path, reference=grid, segment_names={2: "b"})
    np.testing.assert_array_equal(back.volume.array, labelmap.volume.array)
    assert back.volume.array.dtype == np.uint16
    assert [(s.label, s.name) for s in back.segments] == [
        (1, "Segment 1"),
        (2, "b"),
        (300, "Segment 300"),
    ]
    # Independent readers.
    if suffix.startswith(".nii"):
        img = nib.load(path)
        np.testing.assert_allclose(img.affine, grid.affine_ras(), atol=1e-4)
        np.testing.assert_array_equal(
            np.asarray(img.dataobj).transpose(2, 1, 0), labelmap.volume.array
        )
    else:
        data, header = nrrd.read(str(path), index_order="C")
        np.testing.assert_array_equal(data, labelmap.volume.array)
        assert header["space"] == "left-posterior-superior"
        np.testing.assert_allclose(header["space origin"], grid.origin_mm)
        np.testing.assert_allclose(
            header["space directions"], (grid.direction * grid.spacing_mm).T, atol=1e-9
        )


def test_write_rejects_unknown_suffix(tmp_path: Path) -> None:
    grid = _oblique_grid()
    labelmap = LabelMap(volume=grid.with_array(np.zeros(grid.shape, np.uint8)), segments=())
    with pytest.raises(MaskError, match=r"must end in one of \.nii"):
        write_labelmap_file(labelmap, tmp_path / "labels.mha")


def test_permuted_and_flipped_axes_are_reordered_exactly(tmp_path: Path) -> None:
    grid = _oblique_grid()
    labels = _labels(grid.shape)
    image = grid.with_array(labels).to_sitk()
    # Store it with i and k swapped and the (new) j and k axes reversed: same voxels in space.
    stored = sitk.Flip(sitk.PermuteAxes(image, [2, 1, 0]), [False, True, True])
    path = _write(stored, tmp_path / "reordered.nii.gz")
    assert sitk.ReadImage(str(path)).GetSize() == (5, 7, 9)
    back = read_labelmap_file(path, reference=grid)
    np.testing.assert_array_equal(back.volume.array, labels)
    np.testing.assert_allclose(back.volume.affine_lps(), grid.affine_lps())


# ---------------------------------------------------------------- bad input


def test_float_labels_integral_accepted_fractional_rejected(tmp_path: Path) -> None:
    grid = _oblique_grid()
    values = np.zeros(grid.shape, dtype=np.float32)
    values[1, 2:4, 3:6] = 3.0
    values[2, 2, 2] = 2.0000001
    path = _write(grid.with_array(values).to_sitk(), tmp_path / "float.nii.gz")
    labelmap = read_labelmap_file(path, reference=grid)
    assert labelmap.volume.array.dtype == np.uint8
    assert [s.label for s in labelmap.segments] == [2, 3]
    assert int(labelmap.mask(3).sum()) == 6
    values[1, 2, 3] = 0.5
    path = _write(grid.with_array(values).to_sitk(), tmp_path / "probability.nrrd")
    with pytest.raises(MaskError, match=r"probability\.nrrd: label values must be integers"):
        read_labelmap_file(path)


def test_negative_labels_rejected(tmp_path: Path) -> None:
    grid = _oblique_grid()
    values = np.zeros(grid.shape, dtype=np.int16)
    values[0, 0, 0] = -1
    path = _write(grid.with_array(values).to_sitk(), tmp_path / "negative.nii.gz")
    with pytest.raises(MaskError, match=r"must be in 0\.\.65535, found -1\.\.0"):
        read_labelmap_file(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"origin_mm": (-12.5, 40.25, 101.5)}, r"origin \(-12\.500, 40\.250, 101\.500\) mm"),
        ({"spacing_mm": (0.6, 0.8, 2.4)}, r"spacing \(0\.6000, 0\.8000, 2\.4000\) mm"),
        ({"direction": np.eye(3)}, r"direction .* \(i, j, k axis vectors\)"),
        ({"array": np.zeros((4, 7, 9), np.int16)}, r"shape .* \(4, 7, 9\) vs reference"),
    ],
)
def test_label_map_on_another_grid_is_rejected(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    grid = _oblique_grid()
    other = replace(grid, sop_instance_uids=(), **change)  # type: ignore[arg-type]
    path = _write(other.to_sitk(), tmp_path / "other.nii.gz")
    with pytest.raises(MaskError, match="not on the reference grid.*" + message):
        read_labelmap_file(path, reference=grid)


def test_grid_within_tolerance_is_accepted(tmp_path: Path) -> None:
    grid = _oblique_grid()
    nudged = replace(grid, origin_mm=(-12.5004, 40.2504, 101.0004), spacing_mm=(0.6004, 0.8, 2.5))
    path = _write(nudged.with_array(np.ones(grid.shape, np.uint8)).to_sitk(), tmp_path / "n.nrrd")
    labelmap = read_labelmap_file(path, reference=grid)
    assert labelmap.volume.origin_mm == grid.origin_mm
    assert int(labelmap.mask(1).sum()) == int(np.prod(grid.shape))


def test_4d_vector_garbage_and_missing_files(tmp_path: Path) -> None:
    four_d = _write(sitk.Image([4, 4, 4, 2], sitk.sitkUInt8), tmp_path / "four_d.nii.gz")
    with pytest.raises(MaskError, match="must be a 3D image, got 4D"):
        read_labelmap_file(four_d)
    rgb = _write(sitk.Image([4, 4, 4], sitk.sitkVectorUInt8, 3), tmp_path / "rgb.nrrd")
    with pytest.raises(MaskError, match="got 3 components"):
        read_labelmap_file(rgb)
    for name in ("garbage.nii.gz", "garbage.nrrd"):
        garbage = tmp_path / name
        garbage.write_bytes(np.random.default_rng(1).bytes(2048))
        with pytest.raises(MaskError, match="not a readable NIfTI/NRRD image"):
            read_labelmap_file(garbage)
    with pytest.raises(MaskError, match=r"absent\.nii\.gz: label map file not found"):
        read_labelmap_file(tmp_path / "absent.nii.gz")
