"""Batch extraction over a CSV of cases, one process per case.

The cases CSV has a header with at least ``Image`` and ``Mask`` columns (PyRadiomics'
batch input); ``Case`` (or ``ID``) names the case and an optional ``Label`` selects one
segment. Relative paths are relative to the CSV's folder. A case that fails is reported
with its error and the batch goes on.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from radserve.radiomics.errors import InputError, RadiomicsError
from radserve.radiomics.extract import ExtractionOptions, extract_features
from radserve.radiomics.inputs import read_case
from radserve.radiomics.params import ParameterSet
from radserve.radiomics.pool import WorkerPool, bounded_map, process_pool
from radserve.radiomics.tables import CaseFeatures

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseSpec:
    """One row of the cases CSV.

    Attributes:
        case: Case identifier.
        image: Image path (DICOM folder or image file).
        mask: Mask path (label map file, SEG or RTSTRUCT).
        label: One label to extract, or None for every segment.
    """

    case: str
    image: Path
    mask: Path
    label: int | None = None


@dataclass(frozen=True)
class BatchOptions:
    """How :func:`extract_cases` runs.

    Attributes:
        workers: Cases extracted at the same time (1: one after the other, in this
            process).
        pool: A worker pool of ``workers`` processes to run on (else one is started and
            shut down for the batch); see :func:`~radserve.radiomics.pool.process_pool`.
        diagnostics: Add PyRadiomics' diagnostics.
        modality: Modality of NIfTI / NRRD images (``CT`` gives HU units).
        progress: Called with each case's result as it completes.
    """

    workers: int = 1
    pool: WorkerPool | None = None
    diagnostics: bool = False
    modality: str | None = None
    progress: Callable[[CaseFeatures], None] | None = None


@dataclass(frozen=True)
class _CaseJob:
    index: int
    spec: CaseSpec
    parameter_set: ParameterSet
    diagnostics: bool
    modality: str | None


def read_cases_csv(path: str | Path) -> list[CaseSpec]:
    """Read a cases CSV (see the module docstring).

    Raises:
        InputError: Missing file, missing columns, or a bad label.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = {name.strip().lower(): name for name in reader.fieldnames or []}
            missing = [c for c in ("image", "mask") if c not in columns]
            if missing:
                raise InputError(f"{path.name}: missing column(s) {missing}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the cases file {path.name}: {exc}") from exc
    id_column = columns.get("case") or columns.get("id")
    cases: list[CaseSpec] = []
    for number, row in enumerate(rows, start=1):
        label_text = (row.get(columns.get("label", ""), "") or "").strip()
        try:
            label = int(label_text) if label_text else None
        except ValueError as exc:
            raise InputError(
                f"{path.name} row {number}: label {label_text!r} is no integer"
            ) from exc
        cases.append(
            CaseSpec(
                case=(row.get(id_column, "") if id_column else "").strip() or f"case{number}",
                image=path.parent / row[columns["image"]].strip(),
                mask=path.parent / row[columns["mask"]].strip(),
                label=label,
            )
        )
    return cases


def extract_cases(
    cases: list[CaseSpec],
    *,
    parameter_set: ParameterSet,
    options: BatchOptions | None = None,
) -> list[CaseFeatures]:
    """Extract every case, ``options.workers`` cases at a time, in the order of ``cases``.

    Memory stays bounded: each worker reads its own case, and at most two cases per worker
    are queued.
    """
    options = options if options is not None else BatchOptions()
    jobs = (
        _CaseJob(index, spec, parameter_set, options.diagnostics, options.modality)
        for index, spec in enumerate(cases)
    )
    results: dict[int, CaseFeatures] = {}
    for index, result in _run(jobs, workers=options.workers, pool=options.pool):
        results[index] = result
        if options.progress is not None:
            options.progress(result)
    return [results[index] for index in range(len(cases))]


def run_case(job: _CaseJob) -> tuple[int, CaseFeatures]:
    """Read and extract one case; errors become the case's ``error``."""
    return job.index, _extract_case(job)


def _extract_case(job: _CaseJob) -> CaseFeatures:
    spec = job.spec
    try:
        image, labelmap = read_case(spec.image, spec.mask, modality=job.modality)
        segments = extract_features(
            image,
            labelmap,
            parameter_set=job.parameter_set,
            labels=None if spec.label is None else [spec.label],
            options=ExtractionOptions(diagnostics=job.diagnostics, on_error="skip"),
        )
    except RadiomicsError as exc:
        logger.warning("case %s failed: %s", spec.case, exc)
        return CaseFeatures(spec.case, str(spec.image), str(spec.mask), error=str(exc))
    return CaseFeatures(spec.case, str(spec.image), str(spec.mask), segments=tuple(segments))


def _run(
    jobs: Iterator[_CaseJob], *, workers: int, pool: WorkerPool | None
) -> Iterator[tuple[int, CaseFeatures]]:
    if pool is None and workers <= 1:
        for job in jobs:
            yield run_case(job)
        return
    active = pool if pool is not None else process_pool(workers)
    try:
        yield from bounded_map(active, run_case, jobs, limit=2 * workers)
    finally:
        if pool is None:
            active.close(cancel_queued=True)
