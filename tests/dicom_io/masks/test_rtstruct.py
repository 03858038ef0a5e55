"""RTSTRUCT contours rasterised onto a series grid."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from skimage.draw import polygon2mask

from radserve.dicom_io import (
    ANATOMICAL_STRUCTURE,
    MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
    NEOPLASM,
    ORGAN,
    PLANNING_TARGET_VOLUME,
    RT_STRUCTURE_SET_STORAGE,
    RT_TARGET,
    TISSUE,
    MaskError,
    Volume,
    list_rois,
    read_rtstruct,
    read_series,
)

STS_CASES = ["STS_001", "STS_002", "STS_003", "STS_004"]
# Measured: the four STS cases match MIRP's voxel masks exactly (Dice 1.0, 0 voxels differ;
# the contours run along voxel edges). One voxel of in-plane shift already gives Dice
# 0.970-0.982, one slice of shift 0.89-0.95, a flip 0.73-0.93, so this catches all of them.
DICE_MIN = 0.995
FOR_UID = "1.2.826.0.1.3680043.8.498.1"

Points = Sequence[tuple[float, float]]


# ---------------------------------------------------------------- real data (STS, MIRP masks)


@cache
def _read_series_once(image_folder: Path) -> Volume:
    return read_series(image_folder)


def _sts_series(shared_data: Path, case: str) -> Volume:
    return _read_series_once(shared_data / "sts_ct" / "dicom" / case / "image")


def _mirp_mask(shared_data: Path, case: str, reference: Volume) -> npt.NDArray[np.bool_]:
    """MIRP's voxel mask brought onto the DICOM grid by world coordinates."""
    mask = sitk.ReadImage(str(shared_data / "sts_ct" / "nifti" / case / "mask.nii.gz"))
    on_grid = sitk.Resample(
        mask, reference.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    return np.asarray(sitk.GetArrayFromImage(on_grid) > 0)


def _dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    return float(2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)))


@pytest.mark.parametrize("case", STS_CASES)
def test_sts_rtstruct_matches_mirp_mask(shared_data: Path, case: str) -> None:
    reference = _sts_series(shared_data, case)
    labelmap = read_rtstruct(shared_data / "sts_ct" / "dicom" / case / "mask" / "RS.dcm", reference)
    assert [(s.label, s.name) for s in labelmap.segments] == [(1, "GTV_Mass_CT")]
    assert labelmap.segments[0].category == MORPHOLOGICALLY_ABNORMAL_STRUCTURE
    assert labelmap.segments[0].type == NEOPLASM
    assert labelmap.volume.array.dtype == np.uint8
    assert labelmap.volume.sop_instance_uids == reference.sop_instance_uids
    expected = _mirp_mask(shared_data, case, reference)
    got = labelmap.mask(1)
    differing = int(np.count_nonzero(got ^ expected))
    assert expected.sum() > 10_000
    assert _dice(got, expected) >= DICE_MIN
    assert differing <= 0.005 * expected.sum()


def test_shifted_or_flipped_masks_fail_the_threshold(shared_data: Path) -> None:
    case = "STS_002"  # the smallest tumour, where a shift costs least overlap
    reference = _sts_series(shared_data, case)
    got = read_rtstruct(shared_data / "sts_ct" / "dicom" / case / "mask" / "RS.dcm", reference)
    expected = _mirp_mask(shared_data, case, reference)
    mask = got.mask(1)
    assert _dice(mask, expected) >= DICE_MIN
    for wrong in (
        np.roll(mask, 1, axis=0),  # one slice
        np.roll(mask, 1, axis=2),  # one column
        mask[:, :, ::-1],  # left-right flip
        mask[:, ::-1, :],  # anterior-posterior flip
        mask[::-1],  # head-feet flip
    ):
        assert _dice(wrong, expected) < DICE_MIN


def test_list_rois_and_unknown_roi_name(shared_data: Path) -> None:
    path = shared_data / "sts_ct" / "dicom" / "STS_001" / "mask" / "RS.dcm"
    assert list_rois(path) == ["GTV_Mass_CT"]
    with pytest.raises(MaskError, match=r"ROI 'Liver' not in .*GTV_Mass_CT"):
        read_rtstruct(path, _sts_series(shared_data, "STS_001"), roi_names=["Liver"])


def test_frame_of_reference_mismatch(shared_data: Path) -> None:
    path = shared_data / "sts_ct" / "dicom" / "STS_001" / "mask" / "RS.dcm"
    other = replace(_sts_series(shared_data, "STS_001"), frame_of_reference_uid=FOR_UID)
    with pytest.raises(MaskError, match=r"GTV_Mass_CT.*Frame of Reference"):
        read_rtstruct(path, other)


def test_not_an_rtstruct_truncated_garbage_missing(shared_data: Path, tmp_path: Path) -> None:
    reference = _sts_series(shared_data, "STS_001")
    image = sorted((shared_data / "sts_ct" / "dicom" / "STS_001" / "image").iterdir())[0]
    with pytest.raises(MaskError, match="not an RT Structure Set"):
        read_rtstruct(image, reference)
    data = (shared_data / "sts_ct" / "dicom" / "STS_001" / "mask" / "RS.dcm").read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(MaskError, match="cannot read the RTSTRUCT"):
        read_rtstruct(truncated, reference)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(MaskError, match="cannot read the RTSTRUCT"):
        list_rois(garbage)
    with pytest.raises(MaskError, match="not found"):
        read_rtstruct(tmp_path / "absent.dcm", reference)


# ---------------------------------------------------------------- synthetic structure sets


def _grid(direction: npt.ArrayLike | None = None) -> Volume:
    return Volume(
        array=np.zeros((6, 20, 24), dtype=np.int16),
        spacing_mm=(0.8, 0.9, 2.5),
        origin_mm=(10.0, -20.0, 30.0),
        direction=np.eye(3) if direction is None else np.asarray(direction, dtype=float),
        frame_of_reference_uid=FOR_UID,
    )


def _rotation() -> npt.NDArray[np.float64]:
    """A rotation about a non-trivial axis (no index axis stays parallel to an LPS axis)."""
    axis = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)
    angle = np.deg2rad(35.0)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.asarray(np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross)


def _contour(grid: Volume, k: float, points_ij: Points) -> list[str]:
    """Contour Data (LPS mm) for a polygon given in (i, j) index coordinates on slice k."""
    ijk = np.array([(i, j, k) for i, j in points_ij])
    return [f"{v:.6f}" for v in grid.index_to_lps(ijk).ravel()]


def _structure_set(
    rois: Sequence[tuple[str, str, list[list[str]]]], frame_of_reference_uid: str = FOR_UID
) -> Dataset:
    """A minimal RT Structure Set; each ROI is (name, RT ROI Interpreted Type, contours)."""
    ds = Dataset()
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence = []
    ds.ROIContourSequence = []
    ds.RTROIObservationsSequence = []
    for number, (name, interpreted_type, contours) in enumerate(rois, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = frame_of_reference_uid
        ds.StructureSetROISequence.append(roi)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        roi_contour.ContourSequence = []
        for data in contours:
            item = Dataset()
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(data) // 3
            item.ContourData = data
            roi_contour.ContourSequence.append(item)
        ds.ROIContourSequence.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = interpreted_type
        ds.RTROIObservationsSequence.append(observation)
    return ds


def _square(lo: float, hi: float) -> list[tuple[float, float]]:
    return [(lo, lo), (hi, lo), (hi, hi), (lo, hi)]


def _star(rng: np.random.Generator, centre: tuple[float, float], n: int) -> Points:
    """A random star-shaped polygon with vertices at generic (non-integer) positions."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(2.0, 8.0, n)
    return [
        (centre[0] + r * np.cos(a), centre[1] + r * np.sin(a))
        for a, r in zip(angles, radii, strict=True)
    ]


def _expected(
    shape: tuple[int, int, int], k: int, polygons: Sequence[Points]
) -> npt.NDArray[np.bool_]:
    """Independent reference: skimage's polygon2mask, XOR-ed per slice."""
    mask = np.zeros(shape, dtype=bool)
    for points in polygons:
        mask[k] ^= polygon2mask(shape[1:], [(j, i) for i, j in points])
    return mask


@pytest.mark.parametrize("oblique", [False, True])
def test_polygons_match_skimage_on_axial_and_oblique_grids(oblique: bool) -> None:
    grid = _grid(_rotation() if oblique else None)
    rng = np.random.default_rng(7)
    stars = [_star(rng, (11.3, 9.7), 9), _star(rng, (12.1, 10.4), 14)]
    ds = _structure_set(
        [
            ("A", "ORGAN", [_contour(grid, 1, stars[0])]),
            ("B", "", [_contour(grid, 4, stars[1])]),
        ]
    )
    labelmap = read_rtstruct(ds, grid)
    expected_a = _expected(grid.shape, 1, [stars[0]])
    expected_b = _expected(grid.shape, 4, [stars[1]])
    assert expected_a.sum() > 40 and expected_b.sum() > 40
    np.testing.assert_array_equal(labelmap.mask(1), expected_a)
    np.testing.assert_array_equal(labelmap.mask(2), expected_b)


def test_rotating_only_the_image_makes_contours_off_plane() -> None:
    axial = _grid()
    ds = _structure_set([("A", "GTV", [_contour(axial, 2, _square(3.5, 12.5))])])
    assert read_rtstruct(ds, axial).mask(1).sum() == 9 * 9
    with pytest.raises(MaskError, match=r"ROI 'A': contour 1 does not lie on a slice"):
        read_rtstruct(ds, _grid(_rotation()))


def test_contour_off_plane_between_or_beyond_slices() -> None:
    grid = _grid()
    tilted = [(3.5, 3.5, 1.0), (12.5, 3.5, 1.0), (12.5, 12.5, 1.8), (3.5, 12.5, 1.8)]
    data = [f"{v:.6f}" for v in grid.index_to_lps(np.array(tilted)).ravel()]
    with pytest.raises(MaskError, match=r"ROI 'Tilted'.*off by up to 0\.80"):
        read_rtstruct(_structure_set([("Tilted", "GTV", [data])]), grid)
    beyond = _structure_set([("Beyond", "GTV", [_contour(grid, 6.6, _square(3.5, 12.5))])])
    with pytest.raises(MaskError, match=r"ROI 'Beyond'.*nearest slice index 7 of 0..5"):
        read_rtstruct(beyond, grid)
    # Within half a slice spacing of a slice is accepted and lands on that slice.
    near = _structure_set([("Near", "GTV", [_contour(grid, 5.4, _square(3.5, 12.5))])])
    assert read_rtstruct(near, grid).mask(1)[5].sum() == 81


def test_holes_and_disjoint_contours_use_even_odd_rule() -> None:
    grid = _grid()
    ring = [_contour(grid, 3, _square(1.5, 11.5)), _contour(grid, 3, _square(4.5, 8.5))]
    islands = [_contour(grid, 0, _square(0.5, 3.5)), _contour(grid, 0, _square(14.5, 17.5))]
    labelmap = read_rtstruct(_structure_set([("Ring", "GTV", ring + islands)]), grid)
    mask = labelmap.mask(1)
    assert mask[3].sum() == 10 * 10 - 4 * 4
    assert not mask[3, 5:9, 5:9].any()  # the hole
    assert mask[3, 2:12, 2:5].all()
    assert mask[0].sum() == 2 * 3 * 3
    assert mask.sum() == 84 + 18


def test_edge_rule_is_half_open_so_neighbours_do_not_share_voxels() -> None:
    grid = _grid()
    # Two squares sharing the edge i = 6 (through voxel centres): left owns none of them twice.
    left = _contour(grid, 2, [(2.0, 2.0), (6.0, 2.0), (6.0, 6.0), (2.0, 6.0)])
    right = _contour(grid, 2, [(6.0, 2.0), (10.0, 2.0), (10.0, 6.0), (6.0, 6.0)])
    ds = _structure_set([("L", "ORGAN", [left]), ("R", "ORGAN", [right])])
    labelmap = read_rtstruct(ds, grid, overlap="error")
    assert labelmap.mask(1).sum() == 4 * 4  # columns 2..5, rows 2..5
    assert labelmap.mask(2).sum() == 4 * 4  # columns 6..9
    assert labelmap.mask(2)[2, 2:6, 6:10].all()


def test_overlap_later_roi_wins_or_raises() -> None:
    grid = _grid()
    ds = _structure_set(
        [
            ("First", "CTV", [_contour(grid, 2, _square(1.5, 9.5))]),
            ("Second", "PTV", [_contour(grid, 2, _square(5.5, 12.5))]),
        ]
    )
    labelmap = read_rtstruct(ds, grid)
    assert labelmap.mask(2).sum() == 7 * 7
    assert labelmap.mask(1).sum() == 8 * 8 - 4 * 4
    assert labelmap.segments[1].category == RT_TARGET
    assert labelmap.segments[1].type == PLANNING_TARGET_VOLUME
    with pytest.raises(MaskError, match=r"ROI 'Second' overlaps ROI\(s\) \['First'\]"):
        read_rtstruct(ds, grid, overlap="error")
    # Selection order sets the labels (and so which ROI wins).
    swapped = read_rtstruct(ds, grid, roi_names=["Second", "First"])
    assert [(s.label, s.name) for s in swapped.segments] == [(1, "Second"), (2, "First")]
    assert swapped.mask(2).sum() == 8 * 8
    with pytest.raises(MaskError, match="more than once"):
        read_rtstruct(ds, grid, roi_names=["First", "First"])


def test_roi_hidden_by_a_later_roi_is_omitted(caplog: pytest.LogCaptureFixture) -> None:
    grid = _grid()
    ds = _structure_set(
        [
            ("Inner", "GTV", [_contour(grid, 2, _square(4.5, 6.5))]),
            ("Outer", "ORGAN", [_contour(grid, 2, _square(1.5, 9.5))]),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="radserve.dicom_io.masks.rtstruct"):
        labelmap = read_rtstruct(ds, grid)
    assert [(s.label, s.name) for s in labelmap.segments] == [(2, "Outer")]
    assert "ROI 'Inner' is covered entirely by later ROIs" in caplog.text
    assert labelmap.mask(2).sum() == 8 * 8


def test_codes_follow_rt_roi_interpreted_type() -> None:
    grid = _grid()
    square = _square(2.5, 5.5)
    ds = _structure_set(
        [
            ("Tumour", "GTV", [_contour(grid, 1, square)]),
            ("Kidney", "ORGAN", [_contour(grid, 2, square)]),
            ("Marker", "MARKER", [_contour(grid, 3, square)]),
        ]
    )
    segments = read_rtstruct(ds, grid).segments
    assert [(s.category, s.type) for s in segments] == [
        (MORPHOLOGICALLY_ABNORMAL_STRUCTURE, NEOPLASM),
        (ANATOMICAL_STRUCTURE, ORGAN),
        (TISSUE, TISSUE),
    ]
    assert segments[1].description == "RT ROI Interpreted Type ORGAN"


def test_empty_roi_is_omitted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    grid = _grid()
    ds = _structure_set(
        [
            ("Empty", "ORGAN", []),
            # Between voxel centres: a valid contour that covers no centre.
            ("Tiny", "ORGAN", [_contour(grid, 1, [(3.1, 3.1), (3.6, 3.1), (3.6, 3.6)])]),
            ("Body", "EXTERNAL", [_contour(grid, 1, _square(4.5, 8.5))]),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="radserve.dicom_io.masks.rtstruct"):
        default = read_rtstruct(ds, grid)
    assert [(s.label, s.name) for s in default.segments] == [(2, "Body")]
    assert "ROI 'Tiny' covers no voxel centre" in caplog.text
    assert default.present_labels() == [2]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="radserve.dicom_io.masks.rtstruct"):
        chosen = read_rtstruct(ds, grid, roi_names=["Body", "Empty"])
    assert [(s.label, s.name) for s in chosen.segments] == [(1, "Body")]
    assert "ROI 'Empty' has no closed planar contours" in caplog.text


def test_frame_of_reference_mismatch_synthetic() -> None:
    grid = _grid()
    ds = _structure_set([("A", "GTV", [_contour(grid, 1, _square(2.5, 5.5))])], "1.2.3.4.5")
    with pytest.raises(MaskError, match="ROI 'A' is in another Frame of Reference"):
        read_rtstruct(ds, grid)
