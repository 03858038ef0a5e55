"""Preprocessing onto the network grid and labels back onto the source grid.

Values are exact: the synthetic volumes are built so that every expected value is exactly
representable, and every comparison is ``==``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk

from radserve.dicom_io import Volume
from radserve.inference import (
    PreprocessingError,
    PreprocessingSpec,
    labels_to_source,
    network_grid_size,
    preprocess,
)


def _spec(
    orientation: str,
    spacing: tuple[float, float, float],
    window: tuple[float, float] = (8.0, 136.0),
    normalisation: dict[str, Any] | None = None,
) -> PreprocessingSpec:
    return PreprocessingSpec.model_validate(
        {
            "orientation": orientation,
            "target_spacing_mm": spacing,
            "intensity": {
                "window_hu": window,
                "normalisation": normalisation or {"method": "scale_to_unit"},
            },
        }
    )


def _ramp_volume() -> Volume:
    """9 columns (i), 5 rows (j), 3 slices (k); value i + 8 j + 64 k; spacing 1, 2, 3 mm."""
    k, j, i = np.meshgrid(np.arange(3), np.arange(5), np.arange(9), indexing="ij")
    return Volume(
        array=(i + 8 * j + 64 * k).astype(np.int16),
        spacing_mm=(1.0, 2.0, 3.0),
        origin_mm=(-20.0, 10.0, 100.0),
        direction=np.eye(3),
    )


def _world_of_grid(image: sitk.Image) -> npt.NDArray[np.float64]:
    """LPS position of every voxel of ``image``, shape ``[x, y, z, 3]``."""
    size = image.GetSize()
    index = np.stack(np.meshgrid(*(np.arange(n) for n in size), indexing="ij"), axis=-1)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return np.asarray(
        index * np.asarray(image.GetSpacing()) @ direction.T + np.asarray(image.GetOrigin())
    )


def test_orientation_resampling_and_scaling_exact() -> None:
    volume = _ramp_volume()
    # LPS source -> RAS flips x and y; x 1 -> 2 mm (every other column), y kept at 2 mm,
    # z 3 -> 1.5 mm (slices and midpoints between them).
    result = preprocess(volume, _spec("RAS", (2.0, 2.0, 1.5)))
    assert result.array.dtype == np.float32
    assert result.array.flags.c_contiguous
    assert result.array.shape == (1, 5, 5, 5)
    assert result.spatial_shape == (5, 5, 5)
    a, b, c = np.meshgrid(np.arange(5), np.arange(5), np.arange(5), indexing="ij")
    hu = (8 - 2 * a) + 8 * (4 - b) + 32 * c  # i = 8 - 2a, j = 4 - b, k = c / 2
    expected = (np.clip(hu, 8, 136) - 8) / 128
    assert np.array_equal(result.array[0], expected.astype(np.float32))
    reference = result.reference
    assert reference.GetSize() == (5, 5, 5)
    assert reference.GetSpacing() == (2.0, 2.0, 1.5)
    assert reference.GetDirection() == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    # The first network voxel is the source voxel (i=8, j=4, k=0).
    assert reference.GetOrigin() == (-20.0 + 8.0, 10.0 + 8.0, 100.0)


def test_zscore_exact() -> None:
    spec = _spec("LPS", (1.0, 2.0, 3.0), normalisation={"method": "zscore", "mean": 40, "std": 16})
    result = preprocess(_ramp_volume(), spec)
    volume = _ramp_volume()
    expected = (np.clip(volume.array.astype(np.float64), 8, 136) - 40) / 16
    assert np.array_equal(result.array[0], expected.T.astype(np.float32))


def test_network_grid_size_rule() -> None:
    # round((n - 1) * spacing / target + 1), numpy rounding (half to even)
    assert network_grid_size((9, 5, 3), (1.0, 2.0, 3.0), (2.0, 2.0, 1.5)) == (5, 5, 5)
    assert network_grid_size((10, 10, 10), (1.0, 1.0, 1.0), (2.0, 4.0, 6.0)) == (6, 3, 2)
    assert network_grid_size((1, 2, 4), (1.0, 1.0, 1.0), (0.4, 10.0, 1.2)) == (1, 1, 4)


def test_grid_size_guard() -> None:
    with pytest.raises(PreprocessingError, match="more than"):
        preprocess(_ramp_volume(), _spec("LPS", (0.001, 0.001, 0.01)))


def test_labels_round_trip_on_identity_grid_is_exact() -> None:
    volume = _ramp_volume()
    spec = _spec("LPS", volume.spacing_mm)
    result = preprocess(volume, spec)
    assert np.array_equal(result.array[0], ((np.clip(volume.array, 8, 136) - 8) / 128).T)
    labels = (result.array[0] > 0.3).astype(np.uint8) + (result.array[0] > 0.8)
    back = labels_to_source(labels, reference=result.reference, source=volume)
    assert back.dtype == np.uint8
    assert np.array_equal(back, labels.T)
    assert set(np.unique(back).tolist()) == {0, 1, 2}


def _rotation(axis: npt.ArrayLike, degrees: float) -> npt.NDArray[np.float64]:
    u = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    t = np.radians(degrees)
    cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return np.cos(t) * np.eye(3) + np.sin(t) * cross + (1 - np.cos(t)) * np.outer(u, u)


def _oblique_volume() -> Volume:
    """A flipped, permuted and 17-degree oblique LPS volume with irregular content."""
    # Columns: i points mostly superior, j mostly to the right, k mostly posterior.
    flips = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    direction = _rotation((1, 2, 3), 17.0) @ flips
    rng = np.random.default_rng(7)
    return Volume(
        array=rng.integers(-50, 200, size=(11, 13, 10)).astype(np.int16),
        spacing_mm=(0.8, 1.1, 2.5),
        origin_mm=(12.5, -40.0, 300.0),
        direction=direction,
    )


def test_oblique_flipped_volume_lands_at_the_same_world_positions() -> None:
    volume = _oblique_volume()
    oriented = sitk.DICOMOrient(volume.to_sitk(), "RAS")
    spacing = oriented.GetSpacing()
    assert spacing != volume.spacing_mm  # the axes were permuted
    result = preprocess(volume, _spec("RAS", spacing, window=(-50.0, 206.0)))
    # Every network voxel sits exactly on a source voxel centre and carries its value.
    world = _world_of_grid(result.reference)
    affine = volume.affine_lps()
    ijk = np.linalg.solve(affine[:3, :3], (world - affine[:3, 3]).reshape(-1, 3).T).T
    nearest = np.rint(ijk).astype(int)
    assert np.abs(ijk - nearest).max() < 1e-9
    source_values = volume.array[nearest[:, 2], nearest[:, 1], nearest[:, 0]]
    expected = ((source_values.astype(np.float32) + 50) / 256).reshape(result.spatial_shape)
    assert np.array_equal(result.array[0], expected)
    # A mask made on the network grid comes back to the same voxels (same world positions).
    labels = (result.array[0] > 0.5).astype(np.uint8)
    back = labels_to_source(labels, reference=result.reference, source=volume)
    assert np.array_equal(back, (volume.array > 78).astype(np.uint8))
    assert 0 < back.sum() < back.size


def test_oblique_mask_resampled_back_keeps_its_world_position() -> None:
    volume = _oblique_volume()
    k, j, i = np.indices(volume.shape)
    source_world = volume.index_to_lps(np.stack([i, j, k], axis=-1))
    centre = volume.index_to_lps([4.6, 6.3, 5.2])
    result = preprocess(volume, _spec("RAS", (0.7, 0.7, 0.7)))
    network_world = _world_of_grid(result.reference)
    radius = 5.0
    labels = (np.linalg.norm(network_world - centre, axis=-1) <= radius).astype(np.uint8)
    back = labels_to_source(labels, reference=result.reference, source=volume)
    truth = np.linalg.norm(source_world - centre, axis=-1) <= radius
    agreement = np.mean(back.astype(bool) == truth)
    assert agreement >= 0.98, agreement
    dice = 2 * np.sum(back.astype(bool) & truth) / (back.sum() + truth.sum())
    assert dice >= 0.9, dice
    back_centre = source_world[back.astype(bool)].mean(axis=0)
    truth_centre = source_world[truth].mean(axis=0)
    assert np.linalg.norm(back_centre - truth_centre) < 0.5


def test_labels_to_source_checks_the_shape() -> None:
    volume = _ramp_volume()
    result = preprocess(volume, _spec("LPS", volume.spacing_mm))
    with pytest.raises(ValueError, match="do not fit the network grid"):
        labels_to_source(np.zeros((9, 5, 4), np.uint8), reference=result.reference, source=volume)
