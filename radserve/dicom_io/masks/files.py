"""Reading and writing label maps as NIfTI (``.nii``, ``.nii.gz``) or NRRD (``.nrrd``, ``.nhdr``).

Files are read with SimpleITK, so geometry (origin, spacing, direction, LPS) is kept. With a
``reference`` volume the label map must lie on the reference grid: the only change made is an
exact reordering of axes (permutation and flips, e.g. a NIfTI stored with the y axis flipped
relative to the DICOM series); anything else is a :class:`MaskError` naming what differs.
No interpolation ever happens.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from radserve.dicom_io.errors import MaskError
from radserve.dicom_io.masks.labelmap import TISSUE, LabelMap, SegmentInfo
from radserve.dicom_io.volume import Volume

logger = logging.getLogger(__name__)

SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr")

# Float label values within this distance of an integer are taken as that integer.
INTEGRAL_TOLERANCE = 1e-3
# Index axes this close to parallel (|cos|) are matched when reordering axes.
_PARALLEL_COSINE = 0.999


def read_labelmap_file(
    path: str | Path,
    *,
    reference: Volume | None = None,
    segment_names: Mapping[int, str] | None = None,
) -> LabelMap:
    """Read a NIfTI or NRRD label map.

    Args:
        path: The label map file.
        reference: When given, the grid the label map must lie on; the result then uses the
            reference volume's grid and UIDs. Axis order may differ (permutation and flips).
        segment_names: Name of each label; other labels are called ``"Segment N"``.

    Returns:
        A label map (uint8, or uint16 above 255) with one segment per label present, coded
        as Tissue.

    Raises:
        MaskError: Missing or unreadable file, not a 3D scalar image, label values that are
            not integers in 0..65535, or a grid different from the reference.
    """
    path = Path(path)
    volume = Volume.from_sitk(_read_image(path))
    labels = _integer_labels(volume.array, path.name)
    volume = volume.with_array(labels)
    if reference is not None:
        volume = _onto_reference(volume, reference, path.name)
    return LabelMap(volume=volume, segments=_segments(labels, segment_names, path.name))


def write_labelmap_file(labelmap: LabelMap, path: str | Path) -> None:
    """Write a label map as NIfTI or NRRD, chosen by the suffix of ``path``.

    Segment names are not stored; keep them with the file (e.g. a labels JSON).

    Raises:
        MaskError: Unsupported suffix, or the file cannot be written.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix is None:
        raise MaskError(f"{path.name}: label map files must end in one of {', '.join(SUFFIXES)}")
    compress = suffix != ".nii"
    try:
        sitk.WriteImage(labelmap.volume.to_sitk(), str(path), useCompression=compress)
    except RuntimeError as exc:
        raise MaskError(f"{path.name}: cannot write the label map ({exc})") from exc


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def _read_image(path: Path) -> sitk.Image:
    if not path.is_file():
        raise MaskError(f"{path.name}: label map file not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise MaskError(f"{path.name}: not a readable NIfTI/NRRD image") from exc
    if image.GetDimension() != 3:
        raise MaskError(
            f"{path.name}: a label map must be a 3D image, got {image.GetDimension()}D "
            f"(size {image.GetSize()})"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise MaskError(
            f"{path.name}: a label map needs one value per voxel, got "
            f"{image.GetNumberOfComponentsPerPixel()} components"
        )
    return image


def _integer_labels(array: npt.NDArray[Any], name: str) -> npt.NDArray[np.unsignedinteger[Any]]:
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise MaskError(f"{name}: label values must be finite numbers")
        rounded = np.rint(array)
        worst = float(np.abs(array - rounded).max(initial=0.0))
        if worst > INTEGRAL_TOLERANCE:
            raise MaskError(
                f"{name}: label values must be integers, found non-integral values "
                f"(up to {worst:.3g} away from an integer); is this a probability map?"
            )
        array = rounded
    elif not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        raise MaskError(f"{name}: label map pixel type {array.dtype} is not numeric")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low < 0 or high > 65535:
        raise MaskError(f"{name}: label values must be in 0..65535, found {low:g}..{high:g}")
    dtype = np.uint8 if high <= 255 else np.uint16
    return np.ascontiguousarray(array, dtype=dtype)


def _segments(
    labels: npt.NDArray[Any], segment_names: Mapping[int, str] | None, name: str
) -> tuple[SegmentInfo, ...]:
    names = dict(segment_names or {})
    for label, segment_name in names.items():
        if not 1 <= int(label) <= 65535 or not segment_name:
            raise MaskError(f"segment_names: invalid entry {label!r}: {segment_name!r}")
    present = [int(v) for v in np.unique(labels) if v != 0]
    unnamed = [v for v in present if v not in names]
    if segment_names is not None and unnamed:
        logger.warning("%s: labels without a name in segment_names: %s", name, unnamed)
    return tuple(
        SegmentInfo(
            label=label, name=names.get(label, f"Segment {label}"), category=TISSUE, type=TISSUE
        )
        for label in present
    )


def _onto_reference(volume: Volume, reference: Volume, name: str) -> Volume:
    """The label map on the reference grid, reordering axes when that makes them coincide."""
    reordered = _reorder_axes_like(volume, reference)
    differences = _grid_differences(reordered, reference)
    if differences:
        note = " (after reordering its axes like the reference)" if reordered is not volume else ""
        raise MaskError(
            f"{name}: label map is not on the reference grid{note}: "
            + "; ".join(differences)
            + ". Resample it onto the image first."
        )
    if reordered is not volume:
        logger.info("%s: axes reordered (permutation/flip) to match the reference grid", name)
    return reference.with_array(reordered.array)


def _reorder_axes_like(volume: Volume, reference: Volume) -> Volume:
    """Permute and flip ``volume``'s index axes to run like ``reference``'s, if they are parallel.

    Returns ``volume`` itself when nothing needs to change or the axes are not parallel.
    """
    # cosines[a, b]: reference axis a against label map axis b.
    cosines = np.asarray(reference.direction).T @ np.asarray(volume.direction)
    source_axis = np.argmax(np.abs(cosines), axis=1)
    signs = np.sign(cosines[np.arange(3), source_axis])
    parallel = np.abs(cosines[np.arange(3), source_axis]) >= _PARALLEL_COSINE
    if sorted(source_axis.tolist()) != [0, 1, 2] or not parallel.all():
        return volume
    if source_axis.tolist() == [0, 1, 2] and (signs > 0).all():
        return volume
    # Work in (i, j, k) order: array.T; axis a of the result is source axis source_axis[a].
    array_ijk = np.transpose(volume.array.T, source_axis)
    flipped = tuple(int(a) for a in np.flatnonzero(signs < 0))
    array_ijk = np.flip(array_ijk, axis=flipped) if flipped else array_ijk
    size_ijk = volume.array.shape[::-1]
    corner = [0] * 3  # the source index that becomes index (0, 0, 0)
    for axis, source in enumerate(source_axis.tolist()):
        if signs[axis] < 0:
            corner[source] = int(size_ijk[source]) - 1
    origin = volume.index_to_lps(corner)
    spacing = [volume.spacing_mm[s] for s in source_axis.tolist()]
    direction = np.asarray(volume.direction)[:, source_axis] * signs
    return Volume(
        array=np.ascontiguousarray(array_ijk.T),
        spacing_mm=(spacing[0], spacing[1], spacing[2]),
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction=direction,
    )


def _grid_differences(volume: Volume, reference: Volume) -> list[str]:
    """What differs, with the values, for each property :meth:`Volume.grid_differences` names."""
    differences = []
    found = reference.grid_differences(volume)
    if "shape" in found:
        differences.append(
            f"shape (slices, rows, columns) {volume.shape} vs reference {reference.shape}"
        )
    if "spacing" in found:
        differences.append(
            f"spacing {_fmt(volume.spacing_mm, '.4f')} mm vs reference "
            f"{_fmt(reference.spacing_mm, '.4f')} mm"
        )
    if "origin" in found:
        origin_error = np.abs(np.subtract(volume.origin_mm, reference.origin_mm)).max()
        differences.append(
            f"origin {_fmt(volume.origin_mm, '.3f')} mm vs reference "
            f"{_fmt(reference.origin_mm, '.3f')} mm "
            f"(off by up to {origin_error:.3g} mm)"
        )
    if "direction" in found:
        differences.append(
            f"direction {_fmt(np.ravel(np.transpose(volume.direction)), '.4f')} vs reference "
            f"{_fmt(np.ravel(np.transpose(reference.direction)), '.4f')} (i, j, k axis vectors)"
        )
    return differences


def _fmt(values: Any, spec: str) -> str:
    return "(" + ", ".join(format(float(v), spec) for v in values) + ")"
