"""One segment's extraction as tasks for worker processes.

A segment's work is its shape features and each filtered image ("parts", independent of
each other); :func:`segment_tasks` cuts the segment's region from the image (see
:mod:`radserve.radiomics.cropping`) and groups its parts into tasks of similar cost, and
:func:`run_task` computes one task (in this process or a worker) with
:mod:`radserve.radiomics.engine`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

import radserve.radiomics.pyradiomics_compat as pyradiomics_compat
from radserve.dicom_io import LabelMap, Volume
from radserve.radiomics.cropping import (
    CropPlan,
    Region,
    bounding_box,
    plan_crops,
    whole_image_plan,
)
from radserve.radiomics.engine import SHAPE_PART, PartsRequest, execute_parts
from radserve.radiomics.errors import EmptyMaskError, RadiomicsError
from radserve.radiomics.features import RawExtraction
from radserve.radiomics.params import ParameterSet

OnError = Literal["raise", "skip"]


@dataclass(frozen=True)
class SegmentTask:
    """One segment's extraction, as sent to a worker process (arrays, not SimpleITK images).

    Attributes:
        label: Label value.
        segment_name: Segment name.
        image: Image values in ``plan.union``, ``[k, j, i]``.
        mask: Label values in ``plan.union``.
        spacing_mm: Voxel spacing ``(i, j, k)``.
        origin_mm: LPS position of the first voxel of ``plan.union``.
        direction: Row-major 3x3 direction matrix (SimpleITK order).
        plan: Regions per filtered image.
        parameter_set: The PyRadiomics parameters.
        modality: DICOM Modality (for units).
        diagnostics: Compute PyRadiomics' diagnostics too.
        normalized: The image is already normalized.
        on_error: ``"skip"`` returns a segment rejected by PyRadiomics with its reason
            instead of raising.
        parts: The parts of the segment this task computes (see
            :class:`~radserve.radiomics.engine.PartsRequest`); None for all.
    """

    label: int
    segment_name: str
    image: npt.NDArray[Any]
    mask: npt.NDArray[Any]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    plan: CropPlan
    parameter_set: ParameterSet
    modality: str | None
    diagnostics: bool = False
    normalized: bool = False
    on_error: OnError = "raise"
    parts: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TaskResult:
    """What a worker returns for a :class:`SegmentTask`.

    Attributes:
        label: The segment's label.
        parts: ``(part, result)`` for each part computed.
        error: Why PyRadiomics rejected the segment (``on_error="skip"``).
    """

    label: int
    parts: tuple[tuple[int, RawExtraction], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """How a case's segments become tasks.

    Attributes:
        parameter_set: The PyRadiomics parameters.
        diagnostics: Compute PyRadiomics' diagnostics too.
        on_error: ``"skip"`` returns a segment rejected by PyRadiomics with its reason
            instead of raising.
        split: Tasks per segment at most (its parts are split between them).
    """

    parameter_set: ParameterSet
    diagnostics: bool = False
    on_error: OnError = "raise"
    split: int = 1


def run_task(task: SegmentTask) -> TaskResult:
    """Extract one segment, or some of its parts (in this process or a worker)."""
    image = _to_sitk(task.image, task)
    mask = _to_sitk(task.mask, task)
    try:
        request = PartsRequest(
            label=task.label,
            parameter_set=task.parameter_set,
            plan=task.plan,
            parts=task.parts,
            diagnostics=task.diagnostics,
            normalized=task.normalized,
        )
        parts = execute_parts(image, mask, request)
    except RadiomicsError as exc:
        if task.on_error == "raise":
            raise
        return TaskResult(task.label, error=str(exc))
    return TaskResult(task.label, tuple(parts))


def segment_tasks(
    image: Volume, labelmap: LabelMap, labels: list[int], spec: TaskSpec
) -> Iterator[SegmentTask]:
    """The tasks for ``labels`` (every label has voxels): each segment's region, cut from
    the image, with the parts each task computes."""
    parameter_set, diagnostics, split = spec.parameter_set, spec.diagnostics, spec.split
    settings = parameter_set.settings()
    image_types = parameter_set.image_types()
    resampled = (
        settings.get("interpolator") is not None
        and settings.get("resampledPixelSpacing") is not None
    )
    crop = not (resampled or settings.get("preCrop") or diagnostics)
    image_sitk = image.to_sitk()
    mask_sitk = labelmap.volume.to_sitk()
    mask_sitk.CopyInformation(image_sitk)  # equal within tolerance (checked): make it exact
    normalized = False
    if crop and settings.get("normalize"):
        # Normalization uses whole-image statistics: apply it before cutting.
        image_sitk = pyradiomics_compat.normalize_image(image_sitk, settings)
        normalized = True
    names = {s.label: s.name for s in labelmap.segments}
    array = np.asarray(labelmap.volume.array)
    size = image_sitk.GetSize()
    for label in labels:
        box = bounding_box(array, label)
        if box is None:  # checked by the caller
            raise EmptyMaskError(f"segment {label} has no voxel")
        if crop:
            plan = plan_crops(
                image_types,
                settings,
                box=box,
                image_size=(size[0], size[1], size[2]),
                spacing_mm=image.spacing_mm,
            )
        else:
            plan = whole_image_plan(image_types, settings, image_size=(size[0], size[1], size[2]))
        for parts in _split_parts(plan, split):
            union = plan.union_of(parts)
            cut_image = _region(image_sitk, union)
            cut_mask = _region(mask_sitk, union)
            yield SegmentTask(
                label=label,
                segment_name=names[label],
                image=sitk.GetArrayFromImage(cut_image),
                mask=sitk.GetArrayFromImage(cut_mask),
                spacing_mm=_triple(cut_image.GetSpacing()),
                origin_mm=_triple(cut_image.GetOrigin()),
                direction=tuple(float(d) for d in cut_image.GetDirection()),
                plan=dataclasses.replace(plan, union=union),
                parameter_set=parameter_set,
                modality=image.modality,
                diagnostics=diagnostics,
                normalized=normalized,
                on_error=spec.on_error,
                parts=parts,
            )


def _part_weight(plan: CropPlan, part: int) -> int:
    """Rough relative cost of a part: one per feature image, one per filter run."""
    if part == SHAPE_PART:
        return 2
    group = plan.groups[part]
    if group.image_type == "Original":
        return 1
    if group.image_type == "Wavelet":
        return 1 + 8 * int(group.custom.get("level", 1))
    return 2


def _split_parts(plan: CropPlan, split: int) -> list[tuple[int, ...]]:
    """Split a segment's parts into at most ``split`` tasks of similar cost (greedy)."""
    parts = [SHAPE_PART, *range(len(plan.groups))]
    count = max(1, min(split, len(parts)))
    bins: list[list[int]] = [[] for _ in range(count)]
    loads = [0] * count
    for part in sorted(parts, key=lambda p: -_part_weight(plan, p)):
        lightest = loads.index(min(loads))
        bins[lightest].append(part)
        loads[lightest] += _part_weight(plan, part)
    return [tuple(sorted(b)) for b in bins if b]


def task_count(parameter_set: ParameterSet, split: int) -> int:
    """How many tasks each segment is split into."""
    plan = whole_image_plan(
        parameter_set.image_types(), parameter_set.settings(), image_size=(1, 1, 1)
    )
    return len(_split_parts(plan, split))


def _region(image: sitk.Image, region: Region) -> sitk.Image:
    if region.index == (0, 0, 0) and region.size == image.GetSize():
        return image
    cut: sitk.Image = sitk.RegionOfInterest(image, list(region.size), list(region.index))
    return cut


def _to_sitk(array: npt.NDArray[Any], task: SegmentTask) -> sitk.Image:
    result = sitk.GetImageFromArray(array)
    result.SetSpacing(task.spacing_mm)
    result.SetOrigin(task.origin_mm)
    result.SetDirection(task.direction)
    return result


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))
