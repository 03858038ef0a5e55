"""Reading an image and its mask for extraction: DICOM series, NIfTI/NRRD, SEG, RTSTRUCT.

Every reader is :mod:`radserve.dicom_io`'s; this module picks the reader from the path and
turns reading failures into :class:`~radserve.radiomics.errors.InputError` and grid
mismatches into :class:`~radserve.radiomics.errors.MaskGeometryError`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from radserve.dicom_io import (
    SUFFIXES,
    DicomIOError,
    LabelMap,
    Volume,
    read_image_file,
    read_image_series,
    read_instance,
    read_labelmap_file,
    read_rtstruct,
    read_seg,
)
from radserve.radiomics.errors import InputError, MaskGeometryError
from radserve.radiomics.extract import check_grid

_IMAGE_FILE_SUFFIXES = (*SUFFIXES, ".mha", ".mhd")


def read_image(path: str | Path, *, modality: str | None = None) -> Volume:
    """Read an image: a DICOM series folder (or zip), or a NIfTI / NRRD / MetaImage file.

    Args:
        path: The image.
        modality: DICOM Modality to assume (e.g. ``CT`` for a NIfTI CT, for units); a DICOM
            series' own Modality wins.

    Raises:
        InputError: Missing or unreadable image.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    try:
        if path.is_file() and _has_suffix(path, _IMAGE_FILE_SUFFIXES):
            volume = read_image_file(path)
        else:
            volume = read_image_series(path).volume
    except (DicomIOError, RuntimeError, ValueError) as exc:  # SimpleITK raises RuntimeError
        raise InputError(f"cannot read the image {path.name}: {exc}") from exc
    if volume.modality is None and modality:
        volume = dataclasses.replace(volume, modality=modality.upper())
    return volume


def read_mask(path: str | Path, reference: Volume) -> LabelMap:
    """Read a mask onto the grid of ``reference``.

    NIfTI / NRRD label maps must be on the reference grid (an exact reordering of axes is
    accepted); a DICOM SEG or RTSTRUCT is placed by its patient coordinates. A folder
    holding a single DICOM file is read as that file.

    Raises:
        InputError: Missing or unreadable mask, or a DICOM object that is not a mask.
        MaskGeometryError: The mask is outside the image or on another grid.
    """
    path = Path(path)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        if len(files) != 1:
            raise InputError(f"mask folder {path.name} must hold exactly one file")
        path = files[0]
    if not path.is_file():
        raise InputError(f"mask not found: {path}")
    if _has_suffix(path, SUFFIXES):
        return _read_labelmap(path, reference)
    try:
        dataset = read_instance(path)
        modality = str(dataset.get("Modality", "")).upper()
        if modality == "SEG":
            return read_seg(dataset, reference=reference)
        if modality == "RTSTRUCT":
            return read_rtstruct(dataset, reference)
    except DicomIOError as exc:
        raise InputError(f"cannot read the mask {path.name}: {exc}") from exc
    raise InputError(f"mask {path.name} is neither a DICOM SEG, an RTSTRUCT nor a label map file")


def read_case(
    image_path: str | Path, mask_path: str | Path, *, modality: str | None = None
) -> tuple[Volume, LabelMap]:
    """Read an image and its mask (see :func:`read_image` and :func:`read_mask`)."""
    image = read_image(image_path, modality=modality)
    return image, read_mask(mask_path, image)


def _read_labelmap(path: Path, reference: Volume) -> LabelMap:
    try:
        raw = read_labelmap_file(path)
    except DicomIOError as exc:
        raise InputError(f"cannot read the mask {path.name}: {exc}") from exc
    try:
        check_grid(reference, raw.volume)
    except MaskGeometryError as grid_error:
        try:  # the same grid with axes stored in another order or direction
            return read_labelmap_file(path, reference=reference)
        except DicomIOError:
            raise grid_error from None
    return LabelMap(volume=reference.with_array(raw.volume.array), segments=raw.segments)


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in suffixes)
