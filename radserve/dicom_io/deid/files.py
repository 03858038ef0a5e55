"""De-identifying files: every instance of a file, a folder or a zip archive, written once.

:func:`deidentify_files` reads each input, applies :func:`radserve.dicom_io.deid.dataset.deidentify`
and writes the result under folders named by its new Study and Series Instance UIDs.
Inputs that are not readable and complete DICOM are listed in the :class:`DeidReport`;
nothing about them or the patients is logged.
"""

from __future__ import annotations

import functools
import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from radserve.dicom_io.deid.dataset import DeidOptions, deidentify
from radserve.dicom_io.errors import DeidentificationError, InvalidDicomError
from radserve.dicom_io.reading.instances import DEFAULT_MAX_INSTANCE_BYTES, read_instance

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedInput:
    """An input that was not de-identified: its name (relative to the input) and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class DeidReport:
    """What :func:`deidentify_files` did.

    Attributes:
        written: The files written, ``<out>/<Study UID>/<Series UID>/<SOP UID>.dcm``.
        skipped: Inputs that are not readable, complete DICOM instances, or repeat an instance
            already written.
        studies: Number of studies written.
        series: Number of series written.
        burned_in_annotation: Written instances flagged Burned In Annotation = YES, whose
            pixel data may still show identifying text (pixel data is never changed).
    """

    written: tuple[Path, ...]
    skipped: tuple[SkippedInput, ...]
    studies: int
    series: int
    burned_in_annotation: int


def deidentify_files(inputs: Path, out_dir: Path, *, options: DeidOptions) -> DeidReport:
    """De-identify every instance in a file, a folder (recursively) or a zip archive.

    Each instance is written once, named by its new SOP Instance UID under folders named by
    its new Study and Series Instance UIDs. Inputs that are not readable and complete DICOM
    are skipped and listed in the report; nothing about them or the patients is logged.

    Raises:
        DeidentificationError: ``inputs`` does not exist.
    """
    if not inputs.exists():
        raise DeidentificationError(f"input not found: {inputs.name}")
    out_root = out_dir.resolve()
    written: dict[Path, None] = {}
    skipped: list[SkippedInput] = []
    studies: set[str] = set()
    series: set[str] = set()
    burned_in = 0
    for name, load in _sources(inputs, exclude=out_root):
        try:
            ds = load()  # read_instance rejects truncated and oversized instances
            out = deidentify(ds, options=options)
        except InvalidDicomError as exc:  # its message names the problem, never a value
            skipped.append(SkippedInput(name, str(exc).split(": ", 1)[-1]))
            continue
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            skipped.append(SkippedInput(name, f"cannot be de-identified ({type(exc).__name__})"))
            continue
        study_uid = str(out.get("StudyInstanceUID", "")).strip() or "no-study-uid"
        series_uid = str(out.get("SeriesInstanceUID", "")).strip() or "no-series-uid"
        path = out_root / study_uid / series_uid / f"{out.SOPInstanceUID}.dcm"
        if path in written:
            skipped.append(SkippedInput(name, "repeats an instance already written"))
            continue
        _write(out, path)
        written[path] = None
        studies.add(study_uid)
        series.add(series_uid)
        burned_in += str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
    logger.info(
        "de-identified %d instance(s) in %d series; skipped %d input(s)",
        len(written),
        len(series),
        len(skipped),
    )
    if burned_in:
        logger.warning("%d instance(s) flagged with burned-in annotation", burned_in)
    return DeidReport(
        written=tuple(written),
        skipped=tuple(skipped),
        studies=len(studies),
        series=len(series),
        burned_in_annotation=burned_in,
    )


def _sources(inputs: Path, *, exclude: Path) -> Iterator[tuple[str, Callable[[], Dataset]]]:
    if inputs.is_dir():
        files = sorted(
            p for p in inputs.rglob("*") if p.is_file() and not p.resolve().is_relative_to(exclude)
        )
        for path in files:
            yield from _file_sources(path, path.relative_to(inputs).as_posix())
    else:
        yield from _file_sources(inputs, inputs.name)


def _file_sources(path: Path, name: str) -> Iterator[tuple[str, Callable[[], Dataset]]]:
    if not zipfile.is_zipfile(path):
        yield name, functools.partial(read_instance, path)
        return
    with zipfile.ZipFile(path) as archive:
        for member in sorted(m for m in archive.namelist() if not m.endswith("/")):
            yield f"{name}/{member}", functools.partial(_read_member, archive, member)


def _read_member(archive: zipfile.ZipFile, member: str) -> Dataset:
    with archive.open(member) as fp:  # bounded: the size in the archive may lie
        data = fp.read(DEFAULT_MAX_INSTANCE_BYTES + 1)
    return read_instance(data)  # raises InstanceTooLargeError past the limit


def _write(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    ds.save_as(partial, enforce_file_format=False)
    partial.replace(path)
