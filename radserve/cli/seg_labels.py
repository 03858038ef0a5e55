"""Label map files and DICOM SEG: ``radserve seg-from-labels`` and ``radserve seg-to-labels``.

A labels JSON maps label values to segments: ``{"1": "Liver", "2": {"name": "Tumour",
"description": "...", "category": {"value": ..., "scheme": ..., "meaning": ...},
"type": {...}}}``. A string is the Segment Label; an object may also give the Segment
Description and the Segmented Property Category and Type codes (Tissue by default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from radserve.dicom_io import AlgorithmIdentity, Code, LabelMap, SegmentInfo

SegmentationType = Literal["BINARY", "LABELMAP"]
_SEGMENT_KEYS = frozenset({"name", "description", "category", "type"})
_CODE_KEYS = frozenset({"value", "scheme", "meaning"})


class LabelsFileError(ValueError):
    """A labels JSON file is missing, not JSON, or does not describe segments."""


@dataclass(frozen=True)
class SegmentFields:
    """What a labels JSON says about one label."""

    name: str
    description: str | None = None
    category: Code | None = None
    type: Code | None = None


@dataclass(frozen=True)
class SegFromLabelsResult:
    """The SEG written and how its Segment Numbers relate to the label values."""

    out: Path
    segments: tuple[SegmentInfo, ...]
    segment_numbers: dict[int, int]
    """Segment Number of each label value written."""


def read_labels_json(path: Path) -> dict[int, SegmentFields]:
    """Read a labels JSON file (label value -> name, or -> an object with more fields).

    Raises:
        LabelsFileError: The file is missing, is not JSON, or an entry is malformed.
    """
    if not path.is_file():
        raise LabelsFileError(f"{path.name}: labels file not found")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelsFileError(f"{path.name}: not a readable JSON file ({exc})") from exc
    if not isinstance(content, dict):
        raise LabelsFileError(f"{path.name}: expected an object mapping label numbers to names")
    return {
        _label_number(key, path.name): _segment_fields(value, key, path.name)
        for key, value in content.items()
    }


def _label_number(key: str, name: str) -> int:
    try:
        label = int(key)
    except ValueError:
        raise LabelsFileError(f"{name}: key {key!r} is not a label number") from None
    if not 1 <= label <= 65535:
        raise LabelsFileError(f"{name}: label {label} is not in 1..65535")
    return label


def _segment_fields(value: Any, key: str, name: str) -> SegmentFields:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise LabelsFileError(f"{name}: label {key}: expected a name or an object")
    unknown = set(value) - _SEGMENT_KEYS
    if unknown:
        raise LabelsFileError(f"{name}: label {key}: unknown field(s) {', '.join(sorted(unknown))}")
    segment_name = value.get("name")
    if not isinstance(segment_name, str) or not segment_name.strip():
        raise LabelsFileError(f"{name}: label {key}: a segment needs a non-empty name")
    description = value.get("description")
    if description is not None and not isinstance(description, str):
        raise LabelsFileError(f"{name}: label {key}: description must be text")
    return SegmentFields(
        name=segment_name,
        description=description or None,
        category=_code(value.get("category"), f"{name}: label {key}: category"),
        type=_code(value.get("type"), f"{name}: label {key}: type"),
    )


def _code(value: Any, where: str) -> Code | None:
    from radserve.dicom_io import Code

    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or set(value) != _CODE_KEYS
        or not all(isinstance(v, str) and v for v in value.values())
    ):
        raise LabelsFileError(f"{where}: expected {{'value', 'scheme', 'meaning'}} as text")
    return Code(value=value["value"], scheme=value["scheme"], meaning=value["meaning"])


def _with_fields(labelmap: LabelMap, fields: Mapping[int, SegmentFields]) -> LabelMap:
    segments = tuple(
        _with_segment_fields(s, fields[s.label]) if s.label in fields else s
        for s in labelmap.segments
    )
    return dataclasses.replace(labelmap, segments=segments)


def _with_segment_fields(segment: SegmentInfo, fields: SegmentFields) -> SegmentInfo:
    return dataclasses.replace(
        segment,
        description=fields.description,
        category=fields.category or segment.category,
        type=fields.type or segment.type,
    )


def _identity(labels: Path, names: Path | None) -> AlgorithmIdentity:
    """The identity written into the SEG; its hash of the inputs keeps UIDs per content."""
    digest = hashlib.sha256(labels.read_bytes())
    if names is not None:
        digest.update(names.read_bytes())
    sha256 = digest.hexdigest()
    from radserve.dicom_io import AlgorithmIdentity

    # Short enough for Software Versions to stay one LO value (64 characters).
    return AlgorithmIdentity(name="labels", version=sha256[:12], model_sha256=sha256)


def seg_from_labels(
    series_dir: Path,
    labels: Path,
    out: Path,
    *,
    names: Path | None = None,
    segmentation_type: SegmentationType = "BINARY",
) -> SegFromLabelsResult:
    """Write a label map file on a DICOM series as a DICOM SEG.

    Nothing is written unless every check passes; the file appears complete or not at all.

    Raises:
        LabelsFileError: The labels JSON is missing or malformed.
        DicomIOError: The series cannot be read, the label map is unreadable, off the series
            grid or empty.
        OSError: The SEG cannot be written.
    """
    from radserve.dicom_io import read_image_series, read_labelmap_file, write_seg

    fields = read_labels_json(names) if names is not None else {}
    series = read_image_series(series_dir)
    labelmap = read_labelmap_file(
        labels,
        reference=series.volume,
        segment_names={label: f.name for label, f in fields.items()},
    )
    labelmap = _with_fields(labelmap, fields)
    ds = write_seg(
        series,
        labelmap,
        algorithm=_identity(labels, names),
        segmentation_type=segmentation_type,
        series_description=f"SEG from {labels.name}"[:64],
    )
    partial = out.with_name(f".{out.name}.partial")
    try:
        ds.save_as(partial, enforce_file_format=True)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    # The SEG describes the segments with voxels, in label order (see write_seg).
    numbers = [int(item.SegmentNumber) for item in ds.SegmentSequence]
    present = set(labelmap.present_labels())
    written = [s for s in sorted(labelmap.segments, key=lambda s: s.label) if s.label in present]
    return SegFromLabelsResult(
        out=out,
        segments=tuple(written),
        segment_numbers={
            s.label: n for s, n in zip(written, [n for n in numbers if n != 0], strict=True)
        },
    )


def seg_to_labels(seg: Path, series_dir: Path, out: Path, *, later_wins: bool = False) -> LabelMap:
    """Read a DICOM SEG onto a series' grid and write it as a NIfTI or NRRD label map.

    Raises:
        DicomIOError: The series or SEG cannot be read, the SEG is not on the series grid,
            segments overlap (without ``later_wins``), or the output suffix is unsupported.
    """
    from radserve.dicom_io import read_seg, read_series, write_labelmap_file

    volume = read_series(series_dir)
    labelmap = read_seg(seg, reference=volume, overlap="later_wins" if later_wins else "error")
    write_labelmap_file(labelmap, out)
    return labelmap


def seg_from_labels_command(
    series_dir: Annotated[Path, typer.Argument(help="Folder, file or zip holding one series.")],
    labels: Annotated[
        Path, typer.Argument(help="Label map on the series grid: NIfTI (.nii, .nii.gz) or NRRD.")
    ],
    out: Annotated[Path, typer.Argument(help="Output DICOM SEG file.")],
    names: Annotated[
        Path | None,
        typer.Option(
            "--names",
            help='Labels JSON: {"1": "Liver", "2": {"name": ..., "description": ..., '
            '"category": {"value", "scheme", "meaning"}, "type": {...}}}. '
            'Default names: "Segment N".',
        ),
    ] = None,
    segmentation_type: Annotated[
        str,
        typer.Option(
            "--segmentation-type",
            help="BINARY (Segment Numbers 1..N in label order) or LABELMAP (keeps the labels).",
        ),
    ] = "BINARY",
) -> None:
    """Write a NIfTI / NRRD label map on a DICOM series as a DICOM SEG.

    The label map must lie on the series grid (axes may be permuted or flipped); it is never
    resampled. Labels without voxels are not written.
    """
    from radserve.dicom_io import DicomIOError

    kind = segmentation_type.upper()
    if kind not in ("BINARY", "LABELMAP"):
        typer.echo(f"error: unknown segmentation type {segmentation_type!r}", err=True)
        raise typer.Exit(code=2)
    try:
        result = seg_from_labels(
            series_dir,
            labels,
            out,
            names=names,
            segmentation_type="BINARY" if kind == "BINARY" else "LABELMAP",
        )
    except (DicomIOError, LabelsFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    except OSError as exc:
        typer.echo(f"error: {out.name}: cannot be written ({exc.strerror or exc})", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"wrote {out} ({kind} SEG, {len(result.segments)} segment(s))")
    for segment in result.segments:
        number = result.segment_numbers[segment.label]
        renumbered = "" if number == segment.label else f" (label {segment.label})"
        typer.echo(f"  segment {number}{renumbered}: {segment.name}")


def seg_to_labels_command(
    seg: Annotated[Path, typer.Argument(help="DICOM SEG file (BINARY, FRACTIONAL or LABELMAP).")],
    series_dir: Annotated[
        Path, typer.Argument(help="Folder, file or zip holding the series the SEG is on.")
    ],
    out: Annotated[
        Path, typer.Argument(help="Output label map: NIfTI (.nii, .nii.gz) or NRRD (.nrrd).")
    ],
    later_wins: Annotated[
        bool,
        typer.Option(
            "--later-wins",
            help="Where segments overlap, keep the higher Segment Number (default: refuse).",
        ),
    ] = False,
) -> None:
    """Read a DICOM SEG onto its series' grid and write it as a label map.

    Voxel values are the Segment Numbers; frames are placed by their position in patient
    space, never by frame order.
    """
    from radserve.dicom_io import DicomIOError

    try:
        labelmap = seg_to_labels(seg, series_dir, out, later_wins=later_wins)
    except DicomIOError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    present = set(labelmap.present_labels())
    typer.echo(f"wrote {out} ({len(present)} segment(s) with voxels)")
    for segment in labelmap.segments:
        empty = "" if segment.label in present else " (no voxels)"
        typer.echo(f"  {segment.label}: {segment.name}{empty}")
