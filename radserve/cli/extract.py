"""The ``radserve extract`` command's work: read, extract, write the table.

The typer commands in :mod:`radserve.cli` parse the options, call these functions and
print :func:`summary`; these functions do not print.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from radserve.radiomics import (
    DEFAULT_PARAMETER_SET,
    BatchOptions,
    CaseFeatures,
    ExtractionOptions,
    default_workers,
    extract_cases,
    extract_features,
    load_parameter_set,
    process_pool,
    read_case,
    read_cases_csv,
    write_table,
)


def extract_command(
    image: Path,
    mask: Path,
    *,
    params: str = DEFAULT_PARAMETER_SET,
    out: Path | None = None,
    labels: Sequence[int] | None = None,
    workers: int | None = None,
    diagnostics: bool = False,
    modality: str | None = None,
    case: str | None = None,
) -> CaseFeatures:
    """Extract the features of one image and mask; write them to ``out`` (CSV, or JSON
    for a ``.json`` path) when given.

    Args:
        image: DICOM series folder, or NIfTI / NRRD image.
        mask: NIfTI / NRRD label map, DICOM SEG or RTSTRUCT.
        params: Parameter set name (``configs/radiomics/<name>.yaml``) or YAML path.
        out: Output table.
        labels: Labels to extract (default: every segment with voxels).
        workers: Processes for the segments (default: every core).
        diagnostics: Add PyRadiomics' diagnostics columns.
        modality: Modality of a NIfTI / NRRD image (``CT`` gives HU units).
        case: Case name in the table (default: the folder holding the image).

    Raises:
        RadiomicsError: A subclass naming what is wrong with the inputs or parameters.
    """
    parameter_set = load_parameter_set(params)
    volume, labelmap = read_case(image, mask, modality=modality)
    count = len(labels) if labels else len(labelmap.present_labels())
    segments = extract_features(
        volume,
        labelmap,
        parameter_set=parameter_set,
        labels=labels,
        options=ExtractionOptions(
            workers=max(1, min(workers or default_workers(), count)), diagnostics=diagnostics
        ),
    )
    result = CaseFeatures(
        case=case or _case_name(image),
        image=str(image),
        mask=str(mask),
        segments=tuple(segments),
    )
    if out is not None:
        write_table([result], out)
    return result


def extract_batch_command(
    cases_csv: Path,
    *,
    out: Path,
    params: str = DEFAULT_PARAMETER_SET,
    workers: int | None = None,
    diagnostics: bool = False,
    modality: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[CaseFeatures]:
    """Extract every case of a cases CSV (columns ``Case``, ``Image``, ``Mask``, optional
    ``Label``) in parallel and write one table row per case and segment to ``out``.

    ``progress(done, total)`` is called after each case. Failed cases are in the result
    (and the table) with their error; the batch does not stop.
    """
    parameter_set = load_parameter_set(params)
    cases = read_cases_csv(cases_csv)
    total = len(cases)
    done = 0

    def advance(_: CaseFeatures) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    workers = max(1, min(workers or default_workers(), total))
    if workers == 1:
        options = BatchOptions(diagnostics=diagnostics, modality=modality, progress=advance)
        results = extract_cases(cases, parameter_set=parameter_set, options=options)
    else:
        with process_pool(workers) as pool:
            options = BatchOptions(
                workers=workers,
                pool=pool,
                diagnostics=diagnostics,
                modality=modality,
                progress=advance,
            )
            results = extract_cases(cases, parameter_set=parameter_set, options=options)
    write_table(results, out)
    return results


def summary(cases: Sequence[CaseFeatures]) -> list[str]:
    """One line per case and segment for the terminal: counts, never values."""
    lines: list[str] = []
    for case in cases:
        if case.error is not None:
            lines.append(f"{case.case}: failed: {case.error}")
            continue
        for segment in case.segments:
            skipped = f", {len(segment.skipped)} skipped" if segment.skipped else ""
            lines.append(
                f"{case.case} label {segment.label} ({segment.segment_name}): "
                f"{len(segment.features)} features{skipped} [{segment.parameter_set}]"
            )
            lines.extend(f"  skipped {s.name}: {s.reason}" for s in segment.skipped)
    return lines


def _case_name(image: Path) -> str:
    """Cases are usually folders (``STS_019/image.nii.gz``, ``study/image/``)."""
    return image.resolve().parent.name or image.name
