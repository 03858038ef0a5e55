"""The :class:`Volume`: a 3D voxel array with its patient-space geometry.

Conventions (the same as SimpleITK / ITK, so conversions are lossless):

* ``array`` is indexed ``[k, j, i]``: slice, row, column.
* ``spacing_mm`` is ``(column spacing, row spacing, slice spacing)``, i.e. along i, j, k.
* ``direction`` is a 3x3 matrix whose *columns* are the unit vectors of the i, j and k index
  axes in DICOM patient coordinates (LPS).
* ``origin_mm`` is the LPS position of the centre of voxel ``[0, 0, 0]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from radserve.dicom_io.grid import Grid, GridProperty

# Flips LPS to RAS (NIfTI's patient space).
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    """A regular 3D image in patient space, built from one DICOM series or a file.

    Attributes:
        array: Voxel values ``[k, j, i]`` in modality units (rescale applied for CT).
        spacing_mm: Voxel size along i, j, k.
        origin_mm: LPS position of voxel ``[0, 0, 0]``.
        direction: 3x3; columns are the i, j, k axes in LPS.
        frame_of_reference_uid: Frame of Reference UID, when known.
        study_instance_uid: Study Instance UID, when known.
        series_instance_uid: Series Instance UID, when known.
        sop_instance_uids: SOP Instance UID of each slice ``k`` (for single-frame series), or
            the one UID of an enhanced multi-frame instance repeated per frame.
        modality: DICOM Modality, when known.
        sop_class_uid: SOP Class UID of the source instances, when known.
        frame_numbers: For enhanced multi-frame sources, the 1-based frame number of each slice.
    """

    array: npt.NDArray[Any]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: npt.NDArray[np.float64]
    frame_of_reference_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uids: tuple[str, ...] = ()
    modality: str | None = None
    sop_class_uid: str | None = None
    frame_numbers: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a Volume needs a 3D array, got shape {self.array.shape}")
        if np.asarray(self.direction).shape != (3, 3):
            raise ValueError("direction must be a 3x3 matrix")
        if any(s <= 0 for s in self.spacing_mm):
            raise ValueError(f"spacing must be positive, got {self.spacing_mm}")
        if self.sop_instance_uids and len(self.sop_instance_uids) != self.array.shape[0]:
            raise ValueError("one SOP Instance UID per slice is required")

    @property
    def shape(self) -> tuple[int, int, int]:
        """The array shape ``(slices, rows, columns)``."""
        k, j, i = self.array.shape
        return (int(k), int(j), int(i))

    @property
    def grid(self) -> Grid:
        """The voxel grid (shape and geometry) of this volume."""
        return Grid.from_geometry(self.shape, self.spacing_mm, self.origin_mm, self.direction)

    def same_grid(self, other: Volume | Grid) -> bool:
        """Whether ``other`` lies on this volume's grid (tolerance: :meth:`Grid.differences`)."""
        return self.grid.matches(other if isinstance(other, Grid) else other.grid)

    def grid_differences(self, other: Volume | Grid) -> tuple[GridProperty, ...]:
        """What differs between this volume's grid and ``other``'s; empty on the same grid."""
        return self.grid.differences(other if isinstance(other, Grid) else other.grid)

    def affine_lps(self) -> npt.NDArray[np.float64]:
        """4x4 matrix mapping ``(i, j, k, 1)`` to LPS millimetres."""
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(self.direction, dtype=float) * np.asarray(self.spacing_mm)
        affine[:3, 3] = self.origin_mm
        return affine

    def affine_ras(self) -> npt.NDArray[np.float64]:
        """4x4 matrix mapping ``(i, j, k, 1)`` to RAS millimetres (the NIfTI convention)."""
        return _LPS_TO_RAS @ self.affine_lps()

    def index_to_lps(self, ijk: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """LPS coordinates of voxel indices given as ``(..., 3)`` in ``(i, j, k)`` order."""
        pts = np.asarray(ijk, dtype=float)
        affine = self.affine_lps()
        result: npt.NDArray[np.float64] = pts @ affine[:3, :3].T + affine[:3, 3]
        return result

    def with_array(self, array: npt.NDArray[Any]) -> Volume:
        """A copy on the same grid with another array (e.g. a label map)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match grid {self.array.shape}")
        return replace(self, array=array)

    def to_sitk(self) -> sitk.Image:
        """This volume as a SimpleITK image (geometry included)."""
        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(tuple(float(s) for s in self.spacing_mm))
        image.SetOrigin(tuple(float(o) for o in self.origin_mm))
        image.SetDirection(tuple(float(d) for d in np.asarray(self.direction).ravel()))
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, **metadata: Any) -> Volume:
        """Build a volume from a 3D SimpleITK image; ``metadata`` fills the UID fields."""
        if image.GetDimension() != 3:
            raise ValueError(f"need a 3D image, got {image.GetDimension()}D")
        direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
        spacing = tuple(float(s) for s in image.GetSpacing())
        origin = tuple(float(o) for o in image.GetOrigin())
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing_mm=(spacing[0], spacing[1], spacing[2]),
            origin_mm=(origin[0], origin[1], origin[2]),
            direction=direction,
            **metadata,
        )

    def write_nifti(self, path: str | Path) -> None:
        """Write the volume as NIfTI (``.nii`` or ``.nii.gz``) with a correct RAS affine."""
        sitk.WriteImage(self.to_sitk(), str(path), useCompression=str(path).endswith(".gz"))


def read_image_file(path: str | Path) -> Volume:
    """Read a NIfTI, NRRD or other ITK-readable 3D image file as a :class:`Volume`."""
    return Volume.from_sitk(sitk.ReadImage(str(path)))
