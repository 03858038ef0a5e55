"""The :class:`Grid`: the voxel grid of a volume (shape and geometry, no voxel values).

"Are these on the same grid?" is asked before measuring a label map on an image, writing it
as SEG, SR or an overlay, extracting radiomic features, and before resampling. Every such
question is answered by :meth:`Grid.matches`, with one tolerance convention (see there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

GridProperty = Literal["shape", "spacing", "origin", "direction"]
"""A property of a grid that :meth:`Grid.differences` may name."""

SAME_GRID_TOLERANCE_VOXELS = 1e-3
"""How far spacing and origin may differ on the same grid, as a fraction of a voxel."""

SAME_GRID_DIRECTION_TOLERANCE = 1e-4
"""How far a direction cosine may differ on the same grid (unitless, absolute)."""


@dataclass(frozen=True)
class Grid:
    """A regular 3D voxel grid in patient space (LPS), with the conventions of ``Volume``.

    Attributes:
        shape: ``(slices, rows, columns)``, i.e. the sizes along k, j, i.
        spacing_mm: Voxel size along i, j, k.
        origin_mm: LPS position of the centre of voxel ``[0, 0, 0]``.
        direction: The 3x3 direction matrix row by row (9 values, as SimpleITK's
            ``GetDirection``); its columns are the i, j, k axes in LPS.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(n < 1 for n in self.shape):
            raise ValueError(f"a grid needs three positive sizes, got {self.shape}")
        if len(self.direction) != 9:
            raise ValueError("direction must hold the 9 values of a 3x3 matrix")
        if any(s <= 0 for s in self.spacing_mm):
            raise ValueError(f"spacing must be positive, got {self.spacing_mm}")

    @classmethod
    def from_geometry(
        cls,
        shape: tuple[int, ...],
        spacing_mm: npt.ArrayLike,
        origin_mm: npt.ArrayLike,
        direction: npt.ArrayLike,
    ) -> Grid:
        """A grid from a ``(k, j, i)`` shape, spacing, origin and a 3x3 (or 9) direction."""
        spacing = [float(s) for s in np.ravel(spacing_mm)]
        origin = [float(o) for o in np.ravel(origin_mm)]
        if len(shape) != 3 or len(spacing) != 3 or len(origin) != 3:
            raise ValueError("a grid needs a 3D shape, spacing and origin")
        return cls(
            shape=(int(shape[0]), int(shape[1]), int(shape[2])),
            spacing_mm=(spacing[0], spacing[1], spacing[2]),
            origin_mm=(origin[0], origin[1], origin[2]),
            direction=tuple(float(d) for d in np.ravel(direction)),
        )

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Grid:
        """The grid of a 3D SimpleITK image (its size is ``(i, j, k)``, reversed here)."""
        if image.GetDimension() != 3:
            raise ValueError(f"need a 3D image, got {image.GetDimension()}D")
        return cls.from_geometry(
            tuple(int(n) for n in reversed(image.GetSize())),
            image.GetSpacing(),
            image.GetOrigin(),
            image.GetDirection(),
        )

    def differences(self, other: Grid) -> tuple[GridProperty, ...]:
        """The properties in which ``other`` is not on this grid; empty when it is.

        The tolerance convention (the only one radserve uses for "the same grid"):

        * ``shape``: equal.
        * ``spacing``: along each axis, within ``SAME_GRID_TOLERANCE_VOXELS`` (a thousandth) of
          this grid's spacing along that axis.
        * ``origin``: each LPS coordinate within ``SAME_GRID_TOLERANCE_VOXELS`` times this grid's
          smallest spacing.
        * ``direction``: each direction cosine within ``SAME_GRID_DIRECTION_TOLERANCE`` (1e-4, about
          0.006 degrees); a flipped or permuted axis is a different grid.

        Geometry written as DICOM decimal strings or NIfTI float32 round-trips far inside
        these bounds; a grid further off needs resampling. Tolerances scale with the voxel,
        so they mean the same for 0.4 mm and 5 mm voxels.
        """
        spacing = np.asarray(self.spacing_mm)
        spacing_error = np.abs(np.subtract(other.spacing_mm, spacing))
        origin_error = np.abs(np.subtract(other.origin_mm, self.origin_mm))
        direction_error = np.abs(np.subtract(other.direction, self.direction))
        checks: tuple[tuple[GridProperty, bool], ...] = (
            ("shape", other.shape != self.shape),
            ("spacing", bool(np.any(spacing_error > SAME_GRID_TOLERANCE_VOXELS * spacing))),
            ("origin", bool(np.any(origin_error > SAME_GRID_TOLERANCE_VOXELS * spacing.min()))),
            ("direction", bool(np.any(direction_error > SAME_GRID_DIRECTION_TOLERANCE))),
        )
        return tuple(name for name, differs in checks if differs)

    def matches(self, other: Grid) -> bool:
        """Whether ``other`` is on this grid (see :meth:`differences` for the tolerance)."""
        return not self.differences(other)
