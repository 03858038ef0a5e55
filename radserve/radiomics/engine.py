"""PyRadiomics' ``RadiomicsFeatureExtractor.execute``, step for step, on pre-cropped images.

The steps and the PyRadiomics functions they call are the stock ones (load and check the
mask, resegment, shape on the bounding box, then each filtered image cropped to the
bounding box), with three differences that do not change any value:

* each filtered image is computed on its region of a :class:`~.cropping.CropPlan` instead
  of the whole image;
* diagnostics (``additionalInfo``) are only computed when asked for;
* each feature class runs on its own: a class that fails (a segment too small for it)
  is reported as skipped with PyRadiomics' reason, and the other classes still come out.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

import radserve.radiomics.pyradiomics_compat as pyradiomics_compat
from radserve.radiomics.cropping import CropPlan, Region
from radserve.radiomics.errors import ExtractionError, MaskGeometryError, SegmentTooSmallError
from radserve.radiomics.features import RawExtraction
from radserve.radiomics.params import ParameterSet
from radserve.radiomics.shape_mesh import fast_shape

logger = logging.getLogger(__name__)

_SHAPE_CLASSES = ("shape", "shape2D")
# PyRadiomics logs this warning for every GLCM; it says nothing about the segment.
_NOISE = ("GLCM is symmetrical",)
_records: contextvars.ContextVar[list[logging.LogRecord] | None] = contextvars.ContextVar(
    "radiomics_log_records", default=None
)


SHAPE_PART = -1


@dataclass(frozen=True)
class PartsRequest:
    """What :func:`execute_parts` computes for one segment.

    Attributes:
        label: The segment's label value.
        parameter_set: The PyRadiomics parameters.
        plan: Regions per filtered image, in the full image's index space.
        parts: :data:`SHAPE_PART` (shape features and diagnostics) and indices of
            ``plan.groups``; all by default. The image must cover their regions.
        diagnostics: Also compute PyRadiomics' diagnostics (needs an uncropped plan to
            equal the stock values).
        normalized: The image is already normalized (``normalize`` was applied to the
            whole image before cutting), so it is not normalized again.
    """

    label: int
    parameter_set: ParameterSet
    plan: CropPlan
    parts: Sequence[int] | None = None
    diagnostics: bool = False
    normalized: bool = False


@dataclass(frozen=True)
class _Segment:
    """An image, the segment's mask on it, and its bounding box (PyRadiomics' ``boundingBox``)."""

    image: sitk.Image
    mask: sitk.Image
    box: Any


@dataclass(frozen=True)
class _FilteredImage:
    """One filtered image cut to the segment, with PyRadiomics' name and settings for it."""

    image: sitk.Image
    mask: sitk.Image
    type_name: str
    settings: dict[str, Any]


def execute_parts(
    image: sitk.Image, mask: sitk.Image, request: PartsRequest
) -> list[tuple[int, RawExtraction]]:
    """Extract some parts of one segment's features as ``RadiomicsFeatureExtractor.execute``
    does, so that one segment's filtered images can be computed by several processes
    (:func:`merge_parts` joins the parts).

    Args:
        image: The image, cut to ``request.plan.union`` (or whole).
        mask: The label map on the same grid.
        request: The segment, its parameters and the parts to compute.

    Returns:
        ``(part, result)`` per part, in the order of ``request.parts``.

    Raises:
        SegmentTooSmallError: PyRadiomics rejects the segment (one voxel, too few
            dimensions, smaller than ``minimumROISize``).
        MaskGeometryError: PyRadiomics finds the mask outside the image.
        ExtractionError: Any other failure before the feature classes run.
    """
    install_log_capture()
    plan = request.plan
    wanted = [SHAPE_PART, *range(len(plan.groups))] if request.parts is None else request.parts
    settings = request.parameter_set.settings()
    settings["label"] = request.label
    if request.normalized:
        settings["normalize"] = False
    _apply_tolerance(settings)
    classes = request.parameter_set.feature_classes()
    general = None
    if request.diagnostics and SHAPE_PART in wanted:
        general = pyradiomics_compat.general_info(settings, request.parameter_set.image_types())
    shape, segment = _load(image, mask, request.label, settings, general)
    texture = {k: v for k, v in classes.items() if k not in _SHAPE_CLASSES}
    results: list[tuple[int, RawExtraction]] = []
    for part in wanted:
        result = RawExtraction()
        if part == SHAPE_PART:
            if general is not None:
                result.diagnostics = {k: str(v) for k, v in general.getGeneralInfo().items()}
            for name in _SHAPE_CLASSES:
                if name in classes:
                    _shape_class(result, name, classes[name], shape, settings)
        else:
            group = plan.groups[part]
            region = group.region.relative_to(plan.union) if plan.union != group.region else None
            args = {**settings, **group.custom}
            _filtered_images(result, group.image_type, args, _cut(segment, region), texture)
        results.append((part, result))
    return results


def _load(
    image: sitk.Image,
    mask: sitk.Image,
    label: int,
    settings: dict[str, Any],
    general: Any,
) -> tuple[_Segment, _Segment]:
    """PyRadiomics' loading and mask checks: the segment for the shape features, and the
    segment for the filtered images (they differ when resegmenting)."""
    with _capture() as records:
        try:
            image, mask = pyradiomics_compat.load_image(image, mask, general, settings)
            box, corrected = pyradiomics_compat.check_mask(image, mask, settings)
            if corrected is not None:
                if general is not None:
                    general.addMaskElements(image, corrected, label, "corrected")
                mask = corrected
            resegmented = None
            if settings.get("resegmentRange") is not None:
                resegmented = pyradiomics_compat.resegment_mask(image, mask, settings)
                box, _ = pyradiomics_compat.check_mask(image, resegmented, settings)
                if general is not None:
                    general.addMaskElements(image, resegmented, label, "resegmented")
        except (ValueError, RuntimeError) as exc:
            raise _classify(exc, records) from exc
    shape_mask = mask
    if resegmented is not None and settings.get("resegmentShape"):
        shape_mask = resegmented
    if resegmented is not None and not settings.get("resegmentShape"):
        mask = resegmented
    return _Segment(image, shape_mask, box), _Segment(image, mask, box)


def merge_parts(parts: Iterable[tuple[int, RawExtraction]]) -> RawExtraction:
    """One segment's result from its parts, in PyRadiomics' order (shape first, then
    the filtered images in the parameter set's order)."""
    merged = RawExtraction()
    for _, part in sorted(parts, key=lambda item: item[0]):
        merged.values.update(part.values)
        merged.skipped.extend(part.skipped)
        merged.diagnostics.update(part.diagnostics)
    return merged


def install_log_capture() -> None:
    """Route PyRadiomics' log records to radserve (once per process).

    PyRadiomics prints warnings to stderr through its own handler; radserve instead keeps
    them with the segment they concern (skip reasons) and logs the rest at DEBUG.
    """
    radiomics_log = logging.getLogger("radiomics")
    if not any(isinstance(h, _CaptureHandler) for h in radiomics_log.handlers):
        pyradiomics_compat.replace_log_handler(_CaptureHandler())


class _CaptureHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink = _records.get()
        if sink is not None:
            sink.append(record)
        elif not record.getMessage().startswith(_NOISE):
            logger.debug("pyradiomics: %s", record.getMessage())


@contextmanager
def _capture() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    token = _records.set(records)
    try:
        yield records
    finally:
        _records.reset(token)


def _reason(records: list[logging.LogRecord], default: str) -> str:
    """The most telling PyRadiomics message: the last line of an error, else a warning."""
    for record in reversed(records):
        if record.levelno >= logging.ERROR:
            lines = [line for line in record.getMessage().splitlines() if line.strip()]
            if lines:
                return lines[-1].strip()
    for record in reversed(records):
        message = record.getMessage()
        if not message.startswith(_NOISE):
            return message.strip()
    return default


def _classify(exc: Exception, records: list[logging.LogRecord]) -> Exception:
    message = str(exc.args[0]) if exc.args else str(exc)
    lowered = message.lower()
    if "single voxel" in lowered or "1 segmented voxel" in lowered:
        return SegmentTooSmallError("the segment has a single voxel; PyRadiomics needs two")
    if "too few dimensions" in lowered or "too small" in lowered:
        return SegmentTooSmallError(f"the segment is too small: {message}")
    if "larger than image space" in lowered or "geometry mismatch" in lowered:
        return MaskGeometryError(f"the mask does not fit the image: {message.splitlines()[0]}")
    return ExtractionError(f"PyRadiomics failed: {message} ({_reason(records, 'no log')})")


def _apply_tolerance(settings: Mapping[str, Any]) -> None:
    tolerance = settings.get("geometryTolerance")
    if tolerance is not None:
        sitk.ProcessObject.SetGlobalDefaultCoordinateTolerance(float(tolerance))
        sitk.ProcessObject.SetGlobalDefaultDirectionTolerance(float(tolerance))


def _cut(segment: _Segment, region: Region | None) -> _Segment:
    if region is None:
        return segment
    index, size = list(region.index), list(region.size)
    shifted = np.array(segment.box, dtype=int).copy()
    shifted[0::2] -= np.array(region.index)
    shifted[1::2] -= np.array(region.index)
    return _Segment(
        sitk.RegionOfInterest(segment.image, size, index),
        sitk.RegionOfInterest(segment.mask, size, index),
        shifted,
    )


def _shape_class(
    result: RawExtraction,
    name: str,
    names: list[str] | None,
    segment: _Segment,
    settings: dict[str, Any],
) -> None:
    with _capture() as records:
        try:
            with fast_shape():
                values = pyradiomics_compat.compute_shape(
                    {name: names}, segment.image, segment.mask, segment.box, settings
                )
        except Exception as exc:  # PyRadiomics raises bare Exceptions from its C code
            reason = f"{type(exc).__name__}: {exc}"
            result.skipped.append((f"original_{name}_*", reason))
            return
    if not values:
        result.skipped.append((f"original_{name}_*", _reason(records, "not computed")))
    _store(result, values, records)


def _filtered_images(
    result: RawExtraction,
    image_type: str,
    args: dict[str, Any],
    segment: _Segment,
    classes: Mapping[str, list[str] | None],
) -> None:
    produced = 0
    with _capture() as records:
        try:
            generator = pyradiomics_compat.filtered_images(
                image_type, segment.image, segment.mask, args
            )
            for image, type_name, kwargs in generator:
                produced += 1
                cut_image, cut_mask = pyradiomics_compat.crop_to_mask(
                    image, segment.mask, segment.box
                )
                filtered = _FilteredImage(cut_image, cut_mask, type_name, kwargs)
                with pyradiomics_compat.binning_cache():
                    for name, names in classes.items():
                        feature_class = pyradiomics_compat.shared_binning(
                            pyradiomics_compat.feature_classes()[name]
                        )
                        _texture_class(result, feature_class, name, names, filtered)
        except Exception as exc:  # a failing filter skips its images only
            reason = f"{type(exc).__name__}: {exc}"
            result.skipped.append((_group_name(image_type, args), reason))
            return
    if produced == 0:
        result.skipped.append((_group_name(image_type, args), _reason(records, "no image")))


def _group_name(image_type: str, args: Mapping[str, Any]) -> str:
    """A name pattern for the images of one group (``log-sigma-3-0-mm-3D_*``)."""
    sigma = args.get("sigma") or []
    if image_type == "LoG" and len(sigma) == 1:
        return f"log-sigma-{str(sigma[0]).replace('.', '-')}-mm-3D_*"
    return f"{image_type}*"


def _texture_class(
    result: RawExtraction,
    feature_class: type,
    name: str,
    names: list[str] | None,
    filtered: _FilteredImage,
) -> None:
    """``RadiomicsFeatureExtractor.computeFeatures`` for one class."""
    type_name = filtered.type_name
    with _capture() as records:
        try:
            instance = feature_class(filtered.image, filtered.mask, **filtered.settings)
            for feature in names or []:
                instance.enableFeatureByName(feature)
            values = {f"{type_name}_{name}_{k}": v for k, v in instance.execute().items()}
        except Exception as exc:  # any failure of a class skips that class only
            result.skipped.append((f"{type_name}_{name}_*", f"{type(exc).__name__}: {exc}"))
            return
    _store(result, values, records)
    for feature in names or []:
        if f"{type_name}_{name}_{feature}" not in values:
            # PyRadiomics drops deprecated features that it no longer computes, silently.
            reason = "deprecated in PyRadiomics, which computes no value for it"
            result.skipped.append((f"{type_name}_{name}_{feature}", reason))


def _store(
    result: RawExtraction, values: Mapping[str, Any], records: list[logging.LogRecord]
) -> None:
    for name, value in values.items():
        number = float(value)
        if math.isfinite(number):
            result.values[name] = number
        else:
            result.skipped.append((name, _reason(records, "PyRadiomics returned no value")))
