"""PyRadiomics' 3D shape coefficients (mesh surface, mesh volume, maximum diameters), fast.

PyRadiomics computes the surface area and volume of a marching-cubes mesh of the mask and the
four maximum diameters between the mesh's vertices in one C call,
``radiomics.cShape.calculate_coefficients``. The diameters compare every pair of vertices:
O(n^2) in the number of surface points, 16 s for a 750,000-voxel tumour. This module gives
the same four numbers and the same surface and volume (equal to rounding) in O(n log n):

* **Diameters.** The mesh's vertices are the midpoints of the voxel edges between a voxel in
  the mask and one outside (that is how PyRadiomics places them). The largest distance
  between points is reached between two vertices of their convex hull, so only the hull's
  vertices are compared (Qhull); the 2D diameters do the same per plane of equal slice, row
  or column coordinate.
* **Surface and volume.** Each 2x2x2 cube of voxels adds the triangles its corner pattern
  selects. A cube's surface depends on its pattern alone, and its signed volume term is
  ``q + p . m`` for a cube at physical position ``p``, with ``q`` and ``m`` fixed per pattern
  (the triple product of the shifted triangle corners is linear in the shift). ``q``, ``m``
  and the surface of all 256 patterns are measured with PyRadiomics' own C function on one-
  and two-cube masks, so the triangulation is exactly PyRadiomics'; the mask's totals are
  then sums over its cubes.

:func:`fast_shape` makes ``radiomics.shape`` use :func:`mesh_coefficients` within a
``with`` block only (in this thread or task), so a stock PyRadiomics call elsewhere in the
process keeps the C function.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist

import radserve.radiomics.pyradiomics_compat as pyradiomics_compat

#: Corner ``b`` of a cube (bit ``b`` of its pattern index): offsets along (slice, row, column).
CORNERS = tuple((b >> 2 & 1, b >> 1 & 1, b & 1) for b in range(8))
_HULL_FROM = 32  # fewer points are compared directly
_BLOCK = 2048  # rows of one pairwise-distance block

_FAST = contextvars.ContextVar("radserve_fast_shape", default=False)


def mesh_coefficients(
    mask: npt.NDArray[Any], spacing: npt.ArrayLike
) -> tuple[float, float, npt.NDArray[np.float64]]:
    """What ``radiomics.cShape.calculate_coefficients(mask, spacing)`` returns.

    Args:
        mask: The segment, zero-padded by one voxel on every side (as PyRadiomics pads it),
            indexed (slice, row, column).
        spacing: Voxel spacing in the same axis order.

    Returns:
        ``(surface area, volume, diameters)``; the diameters in PyRadiomics' order: within a
        slice, within a row (row-slice plane), within a column (column-slice plane), 3D.
    """
    inside = np.ascontiguousarray(mask, dtype=bool)
    step = tuple(float(s) for s in np.asarray(spacing, dtype=np.float64).ravel())
    if inside.ndim != 3 or len(step) != 3:
        raise ValueError("shape coefficients need a 3D mask and three spacings")
    surface, volume = _surface_and_volume(inside, step)
    return surface, volume, _diameters(inside, np.asarray(step))


@contextmanager
def fast_shape() -> Iterator[None]:
    """Within this block, PyRadiomics' shape class uses :func:`mesh_coefficients`."""
    _install()
    token = _FAST.set(True)
    try:
        yield
    finally:
        _FAST.reset(token)


# --- surface and volume -----------------------------------------------------------------


def _surface_and_volume(
    inside: npt.NDArray[np.bool_], spacing: tuple[float, float, float]
) -> tuple[float, float]:
    if min(inside.shape) < 2:
        return 0.0, 0.0
    pattern = _patterns(inside)
    positions = np.nonzero((pattern != 0) & (pattern != 255))
    kinds = pattern[positions]
    surface_of, q_of, m_of = _pattern_table(spacing)
    counts = np.bincount(kinds, minlength=256)
    surface = float(counts @ surface_of)
    volume = float(counts @ q_of)
    for axis in range(3):
        offset = positions[axis].astype(np.float64) * spacing[axis]
        volume += float(offset @ m_of[kinds, axis])
    return surface, volume


def _patterns(inside: npt.NDArray[np.bool_]) -> npt.NDArray[np.intp]:
    """The pattern index of every cube (corner ``b`` inside sets bit ``b``)."""
    nz, ny, nx = inside.shape
    pattern = np.zeros((nz - 1, ny - 1, nx - 1), dtype=np.intp)
    for bit, (dz, dy, dx) in enumerate(CORNERS):
        corner = inside[dz : dz + nz - 1, dy : dy + ny - 1, dx : dx + nx - 1]
        pattern |= corner.astype(np.intp) << bit
    return pattern


@functools.lru_cache(maxsize=64)
def _pattern_table(
    spacing: tuple[float, float, float],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per pattern: surface area, volume term at the origin ``q``, and the position factor
    ``m`` (a cube at physical position ``p`` adds ``q + p . m``), all from PyRadiomics' C."""
    step = np.asarray(spacing, dtype=np.float64)

    def measure(cells: npt.NDArray[np.bool_]) -> tuple[float, float]:
        surface, volume, _ = pyradiomics_compat.c_shape_coefficients(cells, step)
        return surface, volume

    surface_of = np.zeros(256)
    q_of = np.zeros(256)
    m_of = np.zeros((256, 3))
    cubes = [_cube(kind) for kind in range(256)]
    for kind, cube in enumerate(cubes):
        surface_of[kind], q_of[kind] = measure(cube)
    for kind, cube in enumerate(cubes):
        if kind in (0, 255):
            continue
        for axis in range(3):
            # Two cubes along ``axis``: a leading one whose two faces across ``axis`` both
            # equal this pattern's first face, then this pattern one step further on.
            first = np.take(cube, [0], axis=axis)
            pair = np.concatenate([first, cube], axis=axis)
            lead = _pattern_of(np.take(pair, [0, 1], axis=axis))
            _, both = measure(pair)
            m_of[kind, axis] = (both - q_of[lead] - q_of[kind]) / step[axis]
    return surface_of, q_of, m_of


def _cube(kind: int) -> npt.NDArray[np.bool_]:
    cube = np.zeros((2, 2, 2), dtype=bool)
    for bit, corner in enumerate(CORNERS):
        cube[corner] = bool(kind >> bit & 1)
    return cube


def _pattern_of(cube: npt.NDArray[np.bool_]) -> int:
    return sum(1 << bit for bit, corner in enumerate(CORNERS) if cube[corner])


# --- diameters ----------------------------------------------------------------------------


def _diameters(
    inside: npt.NDArray[np.bool_], spacing: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    points = _vertices(inside) * spacing
    squared = [_max_in_planes(points, axis) for axis in range(3)]
    squared.append(_max_squared_distance(points))
    return np.sqrt(np.asarray(squared, dtype=np.float64))


def _vertices(inside: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Voxel-index coordinates of the midpoints of the edges that cross the mask boundary."""
    found = []
    for axis in range(3):
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis], upper[axis] = slice(None, -1), slice(1, None)
        crossing = np.argwhere(inside[tuple(lower)] != inside[tuple(upper)]).astype(np.float64)
        crossing[:, axis] += 0.5
        found.append(crossing)
    return np.concatenate(found)


def _max_in_planes(points: npt.NDArray[np.float64], axis: int) -> float:
    """Largest squared distance between points with the same coordinate along ``axis``."""
    if len(points) < 2:
        return 0.0
    order = np.argsort(points[:, axis], kind="stable")
    ordered = points[order]
    starts = np.flatnonzero(np.diff(ordered[:, axis])) + 1
    others = [d for d in range(3) if d != axis]
    best = 0.0
    for plane in np.split(ordered[:, others], starts):
        best = max(best, _max_squared_distance(plane))
    return best


def _max_squared_distance(points: npt.NDArray[np.float64]) -> float:
    if len(points) < 2:
        return 0.0
    if len(points) >= _HULL_FROM:
        with contextlib.suppress(QhullError):  # flat or degenerate: compare every pair
            points = points[ConvexHull(points).vertices]
    best = 0.0
    for start in range(0, len(points), _BLOCK):
        block = cdist(points[start : start + _BLOCK], points, "sqeuclidean")
        best = max(best, float(block.max()))
    return best


# --- the switch inside radiomics.shape ----------------------------------------------------


def _fast_coefficients(mask: Any, spacing: Any) -> Any:
    return mesh_coefficients(mask, spacing)


@functools.cache
def _install() -> None:
    pyradiomics_compat.route_shape_coefficients(_FAST.get, _fast_coefficients)
