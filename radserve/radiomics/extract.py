"""Radiomic features per segment: PyRadiomics on a :class:`Volume` and a :class:`LabelMap`.

:func:`extract_features` checks the inputs (same grid, labels that exist, segments with
voxels), cuts each segment's region from the image into tasks
(:mod:`radserve.radiomics.tasks`), and runs PyRadiomics' extraction steps on them
(:mod:`radserve.radiomics.engine`), in this process or on a worker pool
(:mod:`radserve.radiomics.pool`).

With several workers, segments run in parallel, and workers to spare split each segment's
filtered images between them (the shape features and each filtered image are independent
"parts", merged back in PyRadiomics' order). At most two tasks per worker are queued, so
memory stays bounded. Values equal those of a stock ``RadiomicsFeatureExtractor.execute``
on the whole image (``tests/radiomics``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from radserve.dicom_io import LabelMap, Volume
from radserve.radiomics.engine import merge_parts
from radserve.radiomics.errors import (
    EmptyMaskError,
    MaskGeometryError,
    RadiomicsTimeoutError,
    UnknownLabelError,
)
from radserve.radiomics.features import SegmentFeatures
from radserve.radiomics.params import ParameterSet, load_parameter_set
from radserve.radiomics.pool import DeadlinePassedError, WorkerPool, bounded_map, process_pool
from radserve.radiomics.tasks import (
    OnError,
    SegmentTask,
    TaskResult,
    TaskSpec,
    run_task,
    segment_tasks,
    task_count,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractionOptions:
    """How :func:`extract_features` runs.

    Attributes:
        workers: Processes to use when ``pool`` is not given (1: in this process).
            Workers beyond the number of segments split each segment's filtered images.
        pool: A worker pool to run on (kept by long-lived callers such as the server);
            see :func:`~radserve.radiomics.pool.process_pool`.
        diagnostics: Also return PyRadiomics' ``diagnostics_*`` entries (costs the
            whole-image work of the stock call).
        on_error: ``"raise"`` (default) stops on a segment PyRadiomics rejects (e.g. one
            voxel); ``"skip"`` returns it without features and with the reason.
        progress: Called with each segment's result as it completes.
        deadline: A :func:`time.monotonic` time after which extraction stops waiting. On a
            worker pool the wait ends at the deadline and the running tasks are terminated
            (their workers are replaced); in this process it is checked between tasks,
            since a running PyRadiomics call cannot be interrupted.
    """

    workers: int = 1
    pool: WorkerPool | None = None
    diagnostics: bool = False
    on_error: OnError = "raise"
    progress: Callable[[SegmentFeatures], None] | None = None
    deadline: float | None = None


def extract_features(
    image: Volume,
    labelmap: LabelMap,
    *,
    parameter_set: ParameterSet | str = "default",
    labels: Sequence[int] | None = None,
    options: ExtractionOptions | None = None,
) -> list[SegmentFeatures]:
    """Extract the radiomic features of each segment of ``labelmap``.

    Args:
        image: The image, in modality units (HU for CT).
        labelmap: Segments on the same grid as ``image``.
        parameter_set: A :class:`ParameterSet` or the name of one in ``configs/radiomics``.
        labels: Labels to extract; by default every segment that has voxels.
        options: How to run (workers, pool, diagnostics, errors, progress, deadline);
            by default in this process, raising on a segment PyRadiomics rejects.

    Returns:
        One :class:`SegmentFeatures` per label, in label order.

    Raises:
        MaskGeometryError: The label map is not on the image grid.
        UnknownLabelError: A requested label is not a segment of the label map.
        EmptyMaskError: The label map, or a requested segment, has no voxel.
        SegmentTooSmallError: PyRadiomics rejects a segment (with ``on_error="raise"``).
        ParameterSetError: Unknown or invalid parameter set.
        RadiomicsTimeoutError: ``deadline`` passed; it carries the segments that finished.
        WorkerStoppedError: A worker process died (out of memory, killed).
    """
    options = options if options is not None else ExtractionOptions()
    if isinstance(parameter_set, str):
        parameter_set = load_parameter_set(parameter_set)
    check_grid(image, labelmap.volume)
    wanted = _labels(labelmap, labels)
    pool = options.pool
    pool_size = pool.max_workers if pool is not None else options.workers
    # Spare workers split each segment's filtered images between them.
    split = max(1, pool_size // len(wanted)) if pool_size > 1 else 1
    spec = TaskSpec(
        parameter_set, diagnostics=options.diagnostics, on_error=options.on_error, split=split
    )
    tasks = segment_tasks(image, labelmap, wanted, spec)
    names = {s.label: s.name for s in labelmap.segments}
    expected = task_count(parameter_set, split)
    received: dict[int, list[TaskResult]] = {label: [] for label in wanted}
    results: dict[int, SegmentFeatures] = {}
    workers = min(options.workers, len(wanted) * expected)
    try:
        for task_result in _run(tasks, workers=workers, pool=pool, deadline=options.deadline):
            done = received[task_result.label]
            done.append(task_result)
            if len(done) < expected:
                continue
            result = _assemble(
                task_result.label, names[task_result.label], done, parameter_set, image.modality
            )
            results[result.label] = result
            if options.progress is not None:
                options.progress(result)
    except DeadlinePassedError:
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


def _run(
    tasks: Iterator[SegmentTask],
    *,
    workers: int,
    pool: WorkerPool | None,
    deadline: float | None,
) -> Iterator[TaskResult]:
    if pool is None and workers <= 1:
        for task in tasks:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlinePassedError
            yield run_task(task)
        return
    own = pool is None
    active = pool if pool is not None else process_pool(workers)
    limit = 2 * max(workers, active.max_workers)
    timed_out = False
    try:
        yield from bounded_map(active, run_task, tasks, limit=limit, deadline=deadline)
    except DeadlinePassedError:
        timed_out = True
        raise
    finally:
        if own and timed_out:
            active.stop()
        elif own:
            active.close(cancel_queued=True)


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
