"""Radiomic features per segment: PyRadiomics on a :class:`Volume` and a :class:`LabelMap`.

:func:`extract_features` checks the inputs (same grid, labels that exist, segments with
voxels), cuts each segment's region from the image (see :mod:`radserve.radiomics.cropping`),
and runs PyRadiomics' extraction steps on it (:mod:`radserve.radiomics.engine`).

With several workers, segments run in parallel, and workers to spare split each segment's
filtered images between them (the shape features and each filtered image are independent
"parts", merged back in PyRadiomics' order). At most two tasks per worker are queued, so
memory stays bounded. Values equal those of a stock ``RadiomicsFeatureExtractor.execute``
on the whole image (``tests/radiomics``).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from radserve.dicom_io import LabelMap, Volume
from radserve.radiomics.cropping import (
    CropPlan,
    Region,
    bounding_box,
    plan_crops,
    whole_image_plan,
)
from radserve.radiomics.engine import SHAPE_PART, execute_parts, merge_parts
from radserve.radiomics.errors import (
    EmptyMaskError,
    MaskGeometryError,
    RadiomicsError,
    RadiomicsTimeoutError,
    UnknownLabelError,
)
from radserve.radiomics.features import RawExtraction, SegmentFeatures
from radserve.radiomics.params import ParameterSet, load_parameter_set

logger = logging.getLogger(__name__)

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
            :func:`~radserve.radiomics.engine.execute_parts`); None for all.
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


def extract_features(
    image: Volume,
    labelmap: LabelMap,
    *,
    parameter_set: ParameterSet | str = "default",
    labels: Sequence[int] | None = None,
    workers: int = 1,
    executor: Executor | None = None,
    diagnostics: bool = False,
    on_error: OnError = "raise",
    progress: Callable[[SegmentFeatures], None] | None = None,
    deadline: float | None = None,
) -> list[SegmentFeatures]:
    """Extract the radiomic features of each segment of ``labelmap``.

    Args:
        image: The image, in modality units (HU for CT).
        labelmap: Segments on the same grid as ``image``.
        parameter_set: A :class:`ParameterSet` or the name of one in ``configs/radiomics``.
        labels: Labels to extract; by default every segment that has voxels.
        workers: Processes to use when ``executor`` is not given (1: in this process).
            Workers beyond the number of segments split each segment's filtered images.
        executor: A process pool to run on (kept by long-lived callers such as the server);
            see :func:`process_pool`.
        diagnostics: Also return PyRadiomics' ``diagnostics_*`` entries (costs the
            whole-image work of the stock call).
        on_error: ``"raise"`` (default) stops on a segment PyRadiomics rejects (e.g. one
            voxel); ``"skip"`` returns it without features and with the reason.
        progress: Called with each segment's result as it completes.
        deadline: A :func:`time.monotonic` time after which extraction stops waiting. On a
            process pool the wait ends at the deadline (the caller then stops the pool's
            running tasks, e.g. with :func:`stop_pool`); in this process it is checked
            between tasks, since a running PyRadiomics call cannot be interrupted.

    Returns:
        One :class:`SegmentFeatures` per label, in label order.

    Raises:
        MaskGeometryError: The label map is not on the image grid.
        UnknownLabelError: A requested label is not a segment of the label map.
        EmptyMaskError: The label map, or a requested segment, has no voxel.
        SegmentTooSmallError: PyRadiomics rejects a segment (with ``on_error="raise"``).
        ParameterSetError: Unknown or invalid parameter set.
        RadiomicsTimeoutError: ``deadline`` passed; it carries the segments that finished.
    """
    if isinstance(parameter_set, str):
        parameter_set = load_parameter_set(parameter_set)
    check_grid(image, labelmap.volume)
    wanted = _labels(labelmap, labels)
    pool_size = int(getattr(executor, "_max_workers", workers)) if executor else workers
    # Spare workers split each segment's filtered images between them.
    split = max(1, pool_size // len(wanted)) if pool_size > 1 else 1
    tasks = _tasks(image, labelmap, wanted, parameter_set, diagnostics, on_error, split)
    names = {s.label: s.name for s in labelmap.segments}
    expected = _task_count(parameter_set, split)
    received: dict[int, list[TaskResult]] = {label: [] for label in wanted}
    results: dict[int, SegmentFeatures] = {}
    workers = min(workers, len(wanted) * expected)
    try:
        for task_result in _run(tasks, workers=workers, executor=executor, deadline=deadline):
            done = received[task_result.label]
            done.append(task_result)
            if len(done) < expected:
                continue
            result = _assemble(
                task_result.label, names[task_result.label], done, parameter_set, image.modality
            )
            results[result.label] = result
            if progress is not None:
                progress(result)
    except _DeadlineError:
        unfinished = [label for label in wanted if label not in results]
        raise RadiomicsTimeoutError(
            f"radiomics did not finish in time: {len(unfinished)} of {len(wanted)} segment(s) "
            "unfinished",
            completed=[results[label] for label in wanted if label in results],
            unfinished=unfinished,
        ) from None
    return [results[label] for label in wanted]


def check_grid(image: Volume, mask: Volume) -> None:
    """Raise :class:`MaskGeometryError` unless ``mask`` lies on the voxel grid of ``image``.

    The message says whether the mask is outside the image or on another grid.
    """
    found = image.grid_differences(mask)
    if not found:
        return
    if not _overlap(image, mask):
        raise MaskGeometryError("the mask lies outside the image: their extents do not overlap")
    differences = [
        f"shape {mask.shape} vs {image.shape}" if what == "shape" else what for what in found
    ]
    raise MaskGeometryError(
        f"the mask is on another grid than the image ({', '.join(differences)}); "
        "resample it onto the image grid first"
    )


def run_task(task: SegmentTask) -> TaskResult:
    """Extract one segment, or some of its parts (in this process or a worker)."""
    image = _to_sitk(task.image, task)
    mask = _to_sitk(task.mask, task)
    try:
        parts = execute_parts(
            image,
            mask,
            label=task.label,
            parameter_set=task.parameter_set,
            plan=task.plan,
            parts=task.parts,
            diagnostics=task.diagnostics,
            normalized=task.normalized,
        )
    except RadiomicsError as exc:
        if task.on_error == "raise":
            raise
        return TaskResult(task.label, error=str(exc))
    return TaskResult(task.label, tuple(parts))


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool for extraction: spawned workers (safe next to threads), one ITK
    thread each so that ``workers`` processes use ``workers`` cores."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
    )


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with_parent, args=(parent.sentinel,), name="parent-watch", daemon=True
        ).start()


def _exit_with_parent(sentinel: int) -> None:
    """Stop this worker when the process that started it is gone.

    A killed server (SIGKILL, out of memory) cannot shut its pool down, and a worker that
    waits for its next task would otherwise live on, holding memory, until the machine
    restarts. The sentinel becomes ready when the parent process ends.
    """
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


class _DeadlineError(Exception):
    """Extraction's deadline passed (turned into :class:`RadiomicsTimeoutError`)."""


def _run(
    tasks: Iterator[SegmentTask],
    *,
    workers: int,
    executor: Executor | None,
    deadline: float | None,
) -> Iterator[TaskResult]:
    if executor is None and workers <= 1:
        for task in tasks:
            if deadline is not None and time.monotonic() >= deadline:
                raise _DeadlineError
            yield run_task(task)
        return
    own = executor is None
    pool = executor if executor is not None else process_pool(workers)
    limit = 2 * max(workers, getattr(pool, "_max_workers", workers))
    timed_out = False
    try:
        yield from bounded_map(pool, run_task, tasks, limit=limit, deadline=deadline)
    except _DeadlineError:
        timed_out = True
        raise
    finally:
        if own and timed_out:
            stop_pool(pool)
        elif own:
            pool.shutdown(wait=True, cancel_futures=True)


def bounded_map(
    pool: Executor,
    function: Callable[[Any], Any],
    items: Iterator[Any],
    *,
    limit: int,
    deadline: float | None = None,
) -> Iterator[Any]:
    """Run ``function`` over ``items`` on ``pool`` with at most ``limit`` items in flight
    (so memory stays bounded), yielding results as they complete.

    Raises:
        _DeadlineError: ``deadline`` (:func:`time.monotonic`) passed; the items not started
            are cancelled, the running ones are left to the caller.
    """
    pending: set[Future[Any]] = set()

    def completed() -> set[Future[Any]]:
        nonlocal pending
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        done, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
        if not done:
            for future in pending:
                future.cancel()
            raise _DeadlineError
        return done

    for item in items:
        pending.add(pool.submit(function, item))
        if len(pending) >= limit:
            for future in completed():
                yield future.result()
    while pending:
        for future in completed():
            yield future.result()


def stop_pool(pool: Executor) -> None:
    """Shut ``pool`` down without waiting, terminating the tasks its processes still run.

    :class:`~concurrent.futures.ProcessPoolExecutor` cannot cancel a running task; its
    worker processes are terminated instead (the pool cannot be used afterwards).
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _labels(labelmap: LabelMap, labels: Sequence[int] | None) -> list[int]:
    present = set(labelmap.present_labels())
    if labels is None:
        wanted = [s.label for s in labelmap.segments if s.label in present]
        if not wanted:
            raise EmptyMaskError("the mask has no segmented voxel")
        return wanted
    known = {s.label for s in labelmap.segments}
    unknown = sorted(set(labels) - known)
    if unknown:
        raise UnknownLabelError(
            f"labels {unknown} are not segments of the label map (segments: {sorted(known)})"
        )
    empty = sorted(set(labels) - present)
    if empty:
        raise EmptyMaskError(f"segments {empty} have no voxel")
    return list(dict.fromkeys(labels))


def _tasks(
    image: Volume,
    labelmap: LabelMap,
    labels: list[int],
    parameter_set: ParameterSet,
    diagnostics: bool,
    on_error: OnError,
    split: int,
) -> Iterator[SegmentTask]:
    from radiomics import imageoperations

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
        image_sitk = imageoperations.normalizeImage(image_sitk, **settings)
        normalized = True
    names = {s.label: s.name for s in labelmap.segments}
    array = np.asarray(labelmap.volume.array)
    size = image_sitk.GetSize()
    for label in labels:
        box = bounding_box(array, label)
        if box is None:  # checked by _labels
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
                on_error=on_error,
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


def _task_count(parameter_set: ParameterSet, split: int) -> int:
    plan = whole_image_plan(
        parameter_set.image_types(), parameter_set.settings(), image_size=(1, 1, 1)
    )
    return len(_split_parts(plan, split))


def _assemble(
    label: int,
    name: str,
    results: list[TaskResult],
    parameter_set: ParameterSet,
    modality: str | None,
) -> SegmentFeatures:
    errors = [r.error for r in results if r.error is not None]
    if errors:
        logger.warning("segment %d skipped: %s", label, errors[0])
        return SegmentFeatures.failed(
            label=label,
            segment_name=name,
            parameter_set=parameter_set.identifier,
            reason=errors[0],
        )
    raw = merge_parts(part for result in results for part in result.parts)
    return SegmentFeatures.from_raw(
        raw,
        label=label,
        segment_name=name,
        parameter_set=parameter_set.identifier,
        modality=modality,
    )


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


def _overlap(image: Volume, mask: Volume) -> bool:
    def extent(volume: Volume) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        k, j, i = volume.shape
        corners = np.array(
            [[a, b, c] for a in (-0.5, i - 0.5) for b in (-0.5, j - 0.5) for c in (-0.5, k - 0.5)]
        )
        points = volume.index_to_lps(corners)
        return points.min(axis=0), points.max(axis=0)

    low_a, high_a = extent(image)
    low_b, high_b = extent(mask)
    return bool(np.all(low_a < high_b) and np.all(low_b < high_a))
