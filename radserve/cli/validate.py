"""``radserve validate``: is each file a readable DICOM instance, and a sound SEG, SR or SC?

Checks, per file: it reads as a DICOM instance (not truncated) and its pixel data decodes;
a SEG is parsed by highdicom and read by radserve's SEG reader onto the grid its own frames
define; an SR is read as a TID 1500 measurement report; a Secondary Capture decodes to Rows
x Columns. When the dicom3tools validator ``dciodvfy`` is on PATH, its errors are reported
too: they fail the SEG, SR and SC objects (what radserve writes is held to the standard) and,
with ``--strict``, every file; for other objects they are shown as warnings, since radserve
reads source data with such quirks.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from radserve.dicom_io import Volume

_SEG_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"})
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_DCIODVFY_TIMEOUT_S = 120
_SHOWN_VALIDATOR_ERRORS = 3


@dataclass(frozen=True)
class FileReport:
    """The outcome of validating one file.

    Attributes:
        path: The file.
        kind: ``SEG``, ``SR``, ``SC``, the Modality of another object, or ``?`` if unreadable.
        problems: What fails the file.
        warnings: What is reported without failing it.
    """

    path: Path
    kind: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """One line: the path, OK or FAILED, the kind, then problems and warnings."""
        status = "OK" if self.ok else "FAILED"
        details = [*self.problems, *(f"warning: {w}" for w in self.warnings)]
        return f"{self.path}: {status} [{self.kind}]" + "".join(f"; {d}" for d in details)


def _kind(ds: Dataset) -> str:
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "") or "")
    if sop_class in _SEG_CLASSES or modality == "SEG":
        return "SEG"
    if sop_class.startswith(_SR_PREFIX):
        return "SR"
    if sop_class.startswith(_SC_PREFIX):
        return "SC"
    return modality or "no Modality"


def _seg_grid(ds: Dataset) -> Volume:
    """The grid a SEG's own frames define, to read it onto without its source series."""
    import highdicom as hd
    import numpy as np

    from radserve.dicom_io import Volume

    seg = hd.seg.Segmentation.from_dataset(ds, copy=True)
    geometry = seg.get_volume_geometry()
    if geometry is None:
        raise ValueError("the SEG frames do not form a regular volume")
    affine = np.asarray(geometry.affine, dtype=np.float64)
    # highdicom indexes (slice, row, column); a Volume's i, j, k are (column, row, slice).
    axes = affine[:3, [2, 1, 0]]
    spacing = np.linalg.norm(axes, axis=0)
    origin = affine[:3, 3]
    return Volume(
        array=np.zeros(geometry.spatial_shape, dtype=np.uint8),
        spacing_mm=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction=axes / spacing,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")) or None,
    )


def _check_seg(ds: Dataset) -> list[str]:
    from radserve.dicom_io import DicomIOError, read_seg

    missing = [k for k in ("SegmentSequence", "SharedFunctionalGroupsSequence") if k not in ds]
    if missing:
        return [f"SEG: no {', '.join(missing)}"]
    try:
        grid = _seg_grid(ds)
        labelmap = read_seg(ds, reference=grid, overlap="later_wins")
    except (DicomIOError, ValueError, AttributeError, KeyError, IndexError, TypeError) as exc:
        return [f"SEG: {exc}"]
    if not labelmap.segments:
        return ["SEG: no segment described"]
    return []


def _check_sr(ds: Dataset) -> list[str]:
    from radserve.dicom_io import DicomIOError, read_sr_measurements

    try:
        read_sr_measurements(ds)
    except DicomIOError as exc:
        return [f"SR: {exc}"]
    return []


def _check_pixels(ds: Dataset, kind: str) -> list[str]:
    from radserve.dicom_io import DicomIOError, decode_pixel_arrays

    if "PixelData" not in ds:
        return ["SC: no Pixel Data"] if kind == "SC" else []
    try:
        (pixels,) = decode_pixel_arrays([ds], workers=1)
    except DicomIOError as exc:
        return [f"pixel data: {exc}"]
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frame_axes = 1 if int(ds.get("NumberOfFrames", 1) or 1) > 1 else 0
    if kind == "SC" and tuple(pixels.shape[frame_axes : frame_axes + 2]) != (rows, columns):
        return [f"SC: pixel data of shape {pixels.shape} for {rows} x {columns}"]
    return []


def _dciodvfy_errors(exe: str, path: Path) -> list[str]:
    from radserve.dicom_io import ValidatorUnavailableError, run_dciodvfy

    try:
        report = run_dciodvfy(path, executable=exe, timeout_s=_DCIODVFY_TIMEOUT_S)
    except ValidatorUnavailableError as exc:
        return [str(exc)]
    return [line.strip() for line in report.errors]


def _summarise(errors: list[str]) -> str:
    shown = "; ".join(errors[:_SHOWN_VALIDATOR_ERRORS])
    more = len(errors) - _SHOWN_VALIDATOR_ERRORS
    return f"dciodvfy: {len(errors)} error(s): {shown}" + (
        f" (and {more} more)" if more > 0 else ""
    )


def validate_file(path: Path, *, dciodvfy: str | None, strict: bool = False) -> FileReport:
    """Validate one file (see the module); ``dciodvfy`` is the validator's path, if any."""
    from radserve.dicom_io import DicomIOError, read_instance

    try:
        ds = read_instance(path)
    except DicomIOError as exc:
        return FileReport(path=path, kind="?", problems=(str(exc),))
    kind = _kind(ds)
    problems = _check_pixels(ds, kind)
    if kind == "SEG":
        problems += _check_seg(ds)
    elif kind == "SR":
        problems += _check_sr(ds)
    warnings: list[str] = []
    if dciodvfy is not None:
        errors = _dciodvfy_errors(dciodvfy, path)
        if errors:
            fails = strict or kind in ("SEG", "SR", "SC")
            (problems if fails else warnings).append(_summarise(errors))
    return FileReport(path=path, kind=kind, problems=tuple(problems), warnings=tuple(warnings))


def validate_command(
    files: Annotated[list[Path], typer.Argument(help="DICOM files to check.")],
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="dciodvfy errors fail every file, not only SEG, SR and SC objects."
        ),
    ] = False,
) -> None:
    """Check DICOM files: readable, pixel data decodes, SEG / SR / SC structure, dciodvfy.

    Prints one line per file (OK or FAILED, then the problems). A SEG must be read by
    highdicom and by radserve onto the grid of its frames; an SR must be a TID 1500
    measurement report; a Secondary Capture must decode to Rows x Columns. When dciodvfy
    (Debian package dicom3tools) is on PATH its errors are reported: they fail SEG, SR and SC
    objects, and other objects only with --strict. Exit code 1 if any file fails.
    """
    exe = shutil.which("dciodvfy")
    if exe is None:
        typer.echo("note: dciodvfy not found on PATH (dicom3tools): not run", err=True)
    failed = 0
    for path in files:
        report = validate_file(path, dciodvfy=exe, strict=strict)
        typer.echo(report.line())
        failed += not report.ok
    if failed:
        typer.echo(f"{failed} of {len(files)} file(s) failed", err=True)
        raise typer.Exit(code=1)
