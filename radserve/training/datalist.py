"""Datalists: which cases exist, reading them, reporting bad ones, and the train/val split.

A datalist is JSON in the Medical Segmentation Decathlon style::

    {"training": [{"name": "STS_001", "image": "STS_001/image.nii.gz",
                   "label": "STS_001/mask.nii.gz"}, ...]}

or CSV with ``image`` and ``label`` columns (and an optional ``name`` column). Relative
paths are resolved against the datalist's folder. A case is either an image file (NIfTI or
NRRD) with a label map file on the same grid, or a DICOM series folder with a DICOM SEG or
RTSTRUCT file (read through :mod:`radserve.dicom_io`). Without a ``name`` a case is called by
its image path relative to the datalist folder.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom

from radserve.dicom_io import (
    DicomIOError,
    Volume,
    read_image_file,
    read_labelmap_file,
    read_rtstruct,
    read_seg,
    read_series,
)
from radserve.training.config import SplitConfig
from radserve.training.errors import DatalistError

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True)
class CaseRef:
    """One datalist entry: a name and two paths (not yet read)."""

    name: str
    image: Path
    label: Path


@dataclass(frozen=True)
class Case:
    """One readable case: the image volume and its label map on the same grid.

    Attributes:
        name: Case name.
        image: The image in modality units.
        label: uint8 labels ``[k, j, i]`` on the image grid.
    """

    name: str
    image: Volume
    label: npt.NDArray[np.uint8]


@dataclass(frozen=True)
class BadCase:
    """A case that cannot be used, and why."""

    name: str
    reason: str


def read_datalist(path: str | Path) -> list[CaseRef]:
    """Parse a JSON or CSV datalist.

    Raises:
        DatalistError: Unreadable file, wrong structure, missing columns or repeated names.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatalistError(f"cannot read datalist {path}: {exc}") from exc
    if path.suffix.lower() == ".csv":
        rows: list[dict[str, Any]] = list(csv.DictReader(text.splitlines()))
        if rows and not {"image", "label"} <= set(rows[0]):
            raise DatalistError(f"datalist {path.name} needs 'image' and 'label' columns")
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatalistError(f"datalist {path.name} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("training"), list):
            raise DatalistError(f"datalist {path.name} needs a 'training' list")
        rows = data["training"]
    base = path.resolve().parent
    cases = [_case_ref(row, base, index, path.name) for index, row in enumerate(rows)]
    names = [case.name for case in cases]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatalistError(f"datalist {path.name} repeats case names {repeated}")
    if not cases:
        raise DatalistError(f"datalist {path.name} has no cases")
    return cases


def _case_ref(row: Any, base: Path, index: int, source: str) -> CaseRef:
    if not isinstance(row, dict) or not row.get("image") or not row.get("label"):
        raise DatalistError(f"{source}: entry {index} needs 'image' and 'label'")
    image, label = (_resolve(base, str(row[key])) for key in ("image", "label"))
    name = str(row.get("name") or "") or _default_name(image, base)
    return CaseRef(name=name, image=image, label=label)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


def _default_name(image: Path, base: Path) -> str:
    try:
        relative = image.relative_to(base)
    except ValueError:
        relative = Path(image.name)
    text = relative.as_posix()
    for suffix in _IMAGE_SUFFIXES:
        text = text.removesuffix(suffix)
    return text


def read_case(
    ref: CaseRef, *, roi_names: Sequence[str] | None = None, require_foreground: bool = True
) -> Case:
    """Read one case's image and label map onto the image grid.

    Raises:
        DatalistError: A file is missing or unreadable, the label map is not on the image
            grid, or (with ``require_foreground``) it has no foreground voxel.
    """
    for role, path in (("image", ref.image), ("label", ref.label)):
        if not path.exists():
            raise DatalistError(f"{role} file missing: {path}")
    try:
        image = read_series(ref.image) if ref.image.is_dir() else read_image_file(ref.image)
        label = _read_label(ref.label, image, roi_names)
    except DicomIOError as exc:
        raise DatalistError(str(exc)) from exc
    except RuntimeError as exc:  # SimpleITK reading errors
        raise DatalistError(f"cannot read {ref.image.name} or {ref.label.name}: {exc}") from exc
    if label.shape != image.shape:
        raise DatalistError(f"label grid {label.shape} differs from image grid {image.shape}")
    if require_foreground and not label.any():
        raise DatalistError("label map is empty (no foreground voxel)")
    return Case(name=ref.name, image=image, label=label)


def _read_label(
    path: Path, image: Volume, roi_names: Sequence[str] | None
) -> npt.NDArray[np.uint8]:
    if path.suffix.lower() == ".dcm" or _is_dicom(path):
        modality = str(pydicom.dcmread(path, stop_before_pixels=True).get("Modality", ""))
        if modality == "RTSTRUCT":
            labelmap = read_rtstruct(path, image, roi_names=roi_names)
        elif modality == "SEG":
            labelmap = read_seg(path, reference=image)
        else:
            raise DatalistError(f"label {path.name} is DICOM {modality!r}, not SEG or RTSTRUCT")
    else:
        labelmap = read_labelmap_file(path, reference=image)
    labels = np.asarray(labelmap.volume.array)
    if labels.max(initial=0) > np.iinfo(np.uint8).max:
        raise DatalistError(f"label {path.name} has values above 255")
    return labels.astype(np.uint8)


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False


def read_cases(
    refs: Sequence[CaseRef],
    *,
    skip_bad_cases: bool,
    max_label: int,
    roi_names: Sequence[str] | None = None,
    require_foreground: bool = True,
) -> tuple[list[Case], list[BadCase]]:
    """Read every case, collecting the bad ones (all of them, before training starts).

    Args:
        refs: Datalist entries.
        skip_bad_cases: Skip bad cases (logging each) instead of raising.
        max_label: Largest label value the model predicts; higher values make a case bad.
        roi_names: RTSTRUCT ROIs to read.
        require_foreground: An empty label map makes a case bad.

    Raises:
        DatalistError: Some cases are bad and ``skip_bad_cases`` is false; the message lists
            every bad case by name and reason.
    """
    good: list[Case] = []
    bad: list[BadCase] = []
    for ref in refs:
        try:
            case = read_case(ref, roi_names=roi_names, require_foreground=require_foreground)
        except DatalistError as exc:
            bad.append(BadCase(name=ref.name, reason=str(exc)))
            continue
        if int(case.label.max()) > max_label:
            bad.append(BadCase(ref.name, f"label value {int(case.label.max())} > {max_label}"))
            continue
        good.append(case)
    for item in bad:
        logger.warning("bad case %s: %s", item.name, item.reason)
    if bad and not skip_bad_cases:
        listing = "; ".join(f"{item.name}: {item.reason}" for item in bad)
        raise DatalistError(
            f"{len(bad)} bad case(s) (set data.skip_bad_cases: true to skip them): {listing}"
        )
    return good, bad


def split_names(names: Sequence[str], split: SplitConfig) -> tuple[list[str], list[str]]:
    """Divide case names into (training, validation), deterministically.

    Raises:
        DatalistError: An explicit or forced validation case is not in ``names``, or a set
            would be empty.
    """
    unknown = sorted((set(split.validation) | set(split.force_validation)) - set(names))
    if unknown:
        raise DatalistError(f"validation cases not in the datalist (or bad): {unknown}")
    forced = [n for n in names if n in split.force_validation]
    if split.validation:
        validation = [n for n in names if n in split.validation or n in forced]
    else:
        rest = [n for n in names if n not in forced]
        random.Random(split.seed).shuffle(rest)
        if split.folds is not None:
            chosen = rest[split.fold :: split.folds]
        else:
            wanted = max(1, round(len(names) * split.validation_fraction)) - len(forced)
            chosen = rest[: max(0, wanted)]
        validation = [n for n in names if n in forced or n in chosen]
    training = [n for n in names if n not in validation]
    if not training or not validation:
        raise DatalistError(
            f"split gives {len(training)} training and {len(validation)} validation cases; "
            "both need at least one"
        )
    return training, validation
