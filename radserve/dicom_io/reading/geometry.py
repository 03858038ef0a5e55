"""The geometry of a slice stack: ordering planes along their normal and checking that they
form one regular volume.

Checks, in this order, each raising its own error: one Image Orientation (Patient)
(:class:`MixedOrientationError`); one matrix size and Pixel Spacing
(:class:`MixedMatrixSizeError`); at least ``min_slices`` distinct positions along the slice
normal (:class:`NotAVolumeError`); one image per position (:class:`MultipleStacksError`,
:class:`DuplicatePositionError`); uniform slice spacing (:class:`MissingSlicesError`);
positions on a line along the normal (:class:`GantryTiltError`). See
:mod:`radserve.dicom_io.reading.series` for the whole sequence.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from radserve.dicom_io.errors import (
    DuplicatePositionError,
    GantryTiltError,
    MissingSlicesError,
    MixedMatrixSizeError,
    MixedOrientationError,
    MultipleStacksError,
    NotAVolumeError,
)
from radserve.dicom_io.reading.enhanced import ImagePlane, stack_attributes

_ORIENTATION_ATOL = 1e-3  # direction cosines; about 0.06 degrees
_UNIT_VECTOR_ATOL = 1e-2
_POSITION_ATOL_MM = 0.01  # closer along the normal than this: the same position
_SPACING_ATOL_MM = 0.01
_SPACING_RTOL = 0.01
_SHEAR_PIXEL_FRACTION = 0.1  # in-plane shift tolerated at any slice, in pixels ...
_SHEAR_SLOPE = 5e-4  # ... plus this per mm along the normal (about 0.03 degrees)


@dataclass(frozen=True)
class StackGeometry:
    """The planes' order along their normal and the volume geometry they define."""

    order: npt.NDArray[np.intp]
    direction: npt.NDArray[np.float64]
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]


def stack_geometry(
    planes: list[ImagePlane],
    origins: list[tuple[Dataset, int | None]],
    *,
    min_slices: int,
) -> StackGeometry:
    """Order the planes along their normal and check that they form one regular stack.

    ``origins`` holds the source instance and frame number of each plane (for messages).
    """
    orientations = np.asarray([p.image_orientation for p in planes], dtype=np.float64)
    if np.any(np.abs(orientations - orientations[0]) > _ORIENTATION_ATOL):
        raise MixedOrientationError(_describe_orientations(orientations))
    row, column = _orthonormal(orientations[0])
    sizes = Counter((p.rows, p.columns) for p in planes)
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c} ({k} images)" for (r, c), k in sizes.most_common())
        raise MixedMatrixSizeError(f"the images differ in Rows x Columns: {listed}")
    spacings = np.asarray([p.pixel_spacing_mm for p in planes], dtype=np.float64)
    if np.any(np.abs(spacings - spacings[0]) > 1e-3):
        found = Counter((round(float(a), 4), round(float(b), 4)) for a, b in spacings)
        listed = ", ".join(f"{a}x{b} mm ({k} images)" for (a, b), k in found.most_common())
        raise MixedMatrixSizeError(f"the images differ in Pixel Spacing: {listed}")
    normal = np.cross(row, column)
    positions = np.asarray([p.image_position_mm for p in planes], dtype=np.float64)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    group = np.concatenate([[0], np.cumsum(np.diff(along) > _POSITION_ATOL_MM)])
    distinct = int(group[-1]) + 1
    if distinct < min_slices:
        raise NotAVolumeError(_describe_too_few(len(planes), distinct, min_slices))
    if distinct < len(planes):
        _raise_repeated_positions(origins, order, group, along)
    _check_spacing(np.diff(along))
    ps_row, ps_column = (float(v) for v in spacings[0])
    _check_shear(positions[order], normal, min(ps_row, ps_column))
    origin = positions[order[0]]
    return StackGeometry(
        order=order,
        direction=np.column_stack([row, column, normal]),
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        spacing_mm=(ps_column, ps_row, float((along[-1] - along[0]) / (len(along) - 1))),
    )


def _orthonormal(
    orientation: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    row, column = orientation[:3], orientation[3:]
    if (
        abs(np.linalg.norm(row) - 1) > _UNIT_VECTOR_ATOL
        or abs(np.linalg.norm(column) - 1) > _UNIT_VECTOR_ATOL
        or abs(float(row @ column)) > _UNIT_VECTOR_ATOL
    ):
        raise NotAVolumeError(
            f"Image Orientation (Patient) {_fmt(orientation)} is not two orthogonal unit vectors"
        )
    row = row / np.linalg.norm(row)
    column = column - (column @ row) * row
    return row, column / np.linalg.norm(column)


def _describe_orientations(orientations: npt.NDArray[np.float64]) -> str:
    found = Counter(tuple(np.round(o, 4).tolist()) for o in orientations)
    listed = "; ".join(f"{_fmt(o)} ({k} images)" for o, k in found.most_common(4))
    more = f" and {len(found) - 4} more" if len(found) > 4 else ""
    return (
        f"the {len(orientations)} images have {len(found)} different Image Orientation "
        f"(Patient) values: {listed}{more}; a volume needs one stack of parallel slices"
    )


def _describe_too_few(images: int, distinct: int, min_slices: int) -> str:
    if images == 1:
        return f"a single image (e.g. a localizer) is not a volume; need {min_slices} slices"
    if distinct == images:
        return f"only {images} slices; a volume needs at least {min_slices}"
    return (
        f"the {images} images lie at only {distinct} distinct position(s) along the slice "
        f"normal (e.g. a monitoring scan); a volume needs at least {min_slices}"
    )


def _raise_repeated_positions(
    origins: list[tuple[Dataset, int | None]],
    order: npt.NDArray[np.intp],
    group: npt.NDArray[np.intp],
    along: npt.NDArray[np.float64],
) -> None:
    counts = np.bincount(group)
    repeated = int(np.argmax(counts > 1))
    differ = _differing_attributes([origins[i] for i in order[group == repeated]])
    if np.all(counts == counts[0]):
        raise MultipleStacksError(
            f"{len(origins)} images at {len(counts)} positions form {counts[0]} stacks of "
            f"{len(counts)} slices, which {differ}; a volume needs one stack (select one "
            "echo, time point or diffusion direction)"
        )
    shared = [float(along[np.argmax(group == g)]) for g in np.flatnonzero(counts > 1)]
    listed = ", ".join(f"{v:.2f}" for v in shared[:5]) + (" ..." if len(shared) > 5 else "")
    raise DuplicatePositionError(
        f"{int(np.sum(counts[counts > 1]))} of {len(origins)} images share a position with "
        f"another image ({len(shared)} positions, at {listed} mm along the slice normal), "
        f"while {int(np.sum(counts == 1))} positions have one image; the images at a shared "
        f"position {differ}"
    )


def _differing_attributes(origins: list[tuple[Dataset, int | None]]) -> str:
    values: dict[str, list[str]] = defaultdict(list)
    for ds, frame_number in origins:
        for keyword, value in stack_attributes(ds, frame_number):
            if value not in values[keyword]:
                values[keyword].append(value)
    differing = {k: v for k, v in values.items() if len(v) > 1}
    if len(differing) > 1:
        differing.pop("DimensionIndexValues", None)
    if not differing:
        return "no standard attribute tells apart (e.g. diffusion directions or time points)"
    listed = "; ".join(
        f"{k} ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})" for k, v in differing.items()
    )
    return f"differ in {listed}"


def _check_spacing(gaps: npt.NDArray[np.float64]) -> None:
    expected = float(np.median(gaps)) if len(gaps) >= 3 else float(np.min(gaps))
    wrong = np.flatnonzero(np.abs(gaps - expected) > _SPACING_ATOL_MM + _SPACING_RTOL * expected)
    if not len(wrong):
        return
    details = ", ".join(
        f"{gaps[i]:.3f} mm between slices {i + 1} and {i + 2}"
        + (f" (about {round(gaps[i] / expected) - 1} missing)" if gaps[i] > expected else "")
        for i in wrong[:4]
    )
    more = f" and {len(wrong) - 4} more" if len(wrong) > 4 else ""
    raise MissingSlicesError(
        f"slice spacing is not uniform across {len(gaps) + 1} slices: expected {expected:.3f} mm, "
        f"found {details}{more}; slices are missing or the spacing varies"
    )


def _check_shear(
    positions: npt.NDArray[np.float64], normal: npt.NDArray[np.float64], pixel_mm: float
) -> None:
    offsets = positions - positions[0]
    along = offsets @ normal
    shift = np.linalg.norm(offsets - np.outer(along, normal), axis=1)
    tolerance = _SHEAR_PIXEL_FRACTION * pixel_mm + _SHEAR_SLOPE * np.abs(along)
    if np.all(shift <= tolerance):
        return
    span = float(along[-1] - along[0])
    angle = float(np.degrees(np.arctan2(shift[-1], span)))
    raise GantryTiltError(
        f"the slices are sheared: their positions drift {shift[-1]:.2f} mm in-plane over "
        f"{span:.2f} mm along the slice normal (a tilt of about {angle:.1f} degrees, e.g. "
        "gantry/detector tilt); the volume would need resampling"
    )


def _fmt(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"
