"""Test helper: voxels of an image in another space, placed onto a ``Volume``'s grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from radserve.dicom_io import Volume


def onto_grid(
    array: npt.NDArray[Any], affine: npt.NDArray[np.float64], grid: Volume
) -> npt.NDArray[Any]:
    """Put the nonzero voxels of ``array`` (``affine``: numpy index -> LPS) onto ``grid``.

    Every voxel must land on a voxel centre of the grid; a voxel outside fails the test.
    """
    indices = np.argwhere(array)
    world = indices @ affine[:3, :3].T + affine[:3, 3]
    grid_affine = grid.affine_lps()[:, [2, 1, 0, 3]]  # numpy index order (k, j, i)
    target = (world - grid_affine[:3, 3]) @ np.linalg.inv(grid_affine[:3, :3]).T
    rounded = np.rint(target).astype(int)
    assert np.abs(target - rounded).max(initial=0) < 0.01
    assert np.all(rounded >= 0) and np.all(rounded < grid.shape)
    out = np.zeros(grid.shape, dtype=np.int64)
    out[tuple(rounded.T)] = array[tuple(indices.T)]
    return out
