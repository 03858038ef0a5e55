"""The one "same grid" comparison: just inside and just outside its tolerance."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from radserve.dicom_io import (
    SAME_GRID_DIRECTION_TOLERANCE,
    SAME_GRID_TOLERANCE_VOXELS,
    Grid,
    Volume,
)

SPACING_MM = (0.5, 0.8, 3.0)


def _volume() -> Volume:
    angle = np.deg2rad(20.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    return Volume(
        array=np.zeros((4, 6, 8), dtype=np.int16),
        spacing_mm=SPACING_MM,
        origin_mm=(-100.0, 50.0, 20.0),
        direction=rotation,
    )


def test_the_same_grid_matches() -> None:
    volume = _volume()
    assert volume.same_grid(volume)
    assert volume.grid_differences(volume.with_array(np.ones(volume.shape))) == ()
    assert volume.grid == Grid.from_sitk(volume.to_sitk())


@pytest.mark.parametrize("fraction", [0.9, 1.1])
def test_origin_tolerance_is_a_fraction_of_the_smallest_voxel(fraction: float) -> None:
    volume = _volume()
    step = fraction * SAME_GRID_TOLERANCE_VOXELS * min(SPACING_MM)
    moved = replace(volume, origin_mm=(-100.0, 50.0 + step, 20.0))
    inside = fraction < 1
    assert volume.same_grid(moved) is inside
    assert volume.grid_differences(moved) == (() if inside else ("origin",))


@pytest.mark.parametrize("fraction", [0.9, 1.1])
def test_spacing_tolerance_is_a_fraction_of_that_axis_spacing(fraction: float) -> None:
    volume = _volume()
    # Along k (3 mm) the tolerance is six times that along i (0.5 mm).
    slices = SPACING_MM[2] * (1 + fraction * SAME_GRID_TOLERANCE_VOXELS)
    stretched = replace(volume, spacing_mm=(SPACING_MM[0], SPACING_MM[1], slices))
    inside = fraction < 1
    assert volume.same_grid(stretched) is inside
    assert volume.grid_differences(stretched) == (() if inside else ("spacing",))


@pytest.mark.parametrize("fraction", [0.9, 1.1])
def test_direction_tolerance_is_absolute_on_each_cosine(fraction: float) -> None:
    volume = _volume()
    direction = np.array(volume.direction, copy=True)
    direction[2, 0] += fraction * SAME_GRID_DIRECTION_TOLERANCE
    tilted = replace(volume, direction=direction)
    inside = fraction < 1
    assert volume.same_grid(tilted) is inside
    assert volume.grid_differences(tilted) == (() if inside else ("direction",))


def test_a_flipped_axis_is_another_grid() -> None:
    volume = _volume()
    direction = np.array(volume.direction, copy=True)
    direction[:, 1] *= -1
    flipped = replace(volume, direction=direction)
    assert not volume.same_grid(flipped)
    assert volume.grid_differences(flipped) == ("direction",)


def test_a_different_shape_is_another_grid() -> None:
    volume = _volume()
    cropped = replace(volume, array=np.zeros((3, 6, 8), dtype=np.int16))
    assert not volume.same_grid(cropped)
    assert volume.grid_differences(cropped) == ("shape",)
    both = replace(cropped, origin_mm=(0.0, 0.0, 0.0))
    assert volume.grid_differences(both) == ("shape", "origin")


def test_grid_from_sitk_reverses_the_size_and_compares_with_a_volume() -> None:
    volume = _volume()
    image = sitk.Image([8, 6, 4], sitk.sitkUInt8)
    image.SetSpacing(SPACING_MM)
    image.SetOrigin(volume.origin_mm)
    image.SetDirection(tuple(float(d) for d in np.asarray(volume.direction).ravel()))
    grid = Grid.from_sitk(image)
    assert grid.shape == (4, 6, 8)
    assert volume.same_grid(grid)
    image.SetOrigin((-100.0, 50.0, 21.0))
    assert volume.grid_differences(Grid.from_sitk(image)) == ("origin",)


def test_a_grid_cannot_be_invalid() -> None:
    with pytest.raises(ValueError, match="positive"):
        Grid.from_geometry((4, 6, 8), (0.5, 0.0, 3.0), (0, 0, 0), np.eye(3))
    with pytest.raises(ValueError, match="3x3"):
        Grid(shape=(4, 6, 8), spacing_mm=SPACING_MM, origin_mm=(0, 0, 0), direction=(1.0,))
    with pytest.raises(ValueError, match="need a 3D image"):
        Grid.from_sitk(sitk.Image([4, 4], sitk.sitkUInt8))
