"""Feature tables: JSON and CSV writers, one row per case and segment.

The CSV follows PyRadiomics' batch output: the input columns (``Case``, ``Image``,
``Mask``, plus ``Label`` and ``Segment``), then ``diagnostics_*`` columns when present, then
one column per feature with its PyRadiomics name. A feature without a value is an empty
cell; the JSON lists it with the reason.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radserve.radiomics.features import SegmentFeatures

INPUT_COLUMNS = ("Case", "Image", "Mask", "Label", "Segment")


@dataclass(frozen=True)
class CaseFeatures:
    """The features of one case (an image and its mask).

    Attributes:
        case: Case identifier.
        image: Where the image came from (path or series), as given.
        mask: Where the mask came from.
        segments: One result per extracted segment.
        error: Why the case has no result, when it failed as a whole.
    """

    case: str
    image: str
    mask: str
    segments: tuple[SegmentFeatures, ...] = field(default=())
    error: str | None = None


def segment_record(segment: SegmentFeatures) -> dict[str, Any]:
    """One segment as plain JSON-ready data (also the server's job-result feature table)."""
    return {
        "label": segment.label,
        "segment": segment.segment_name,
        "parameter_set": segment.parameter_set,
        "features": [
            {
                "name": f.name,
                "value": f.value,
                "ibsi_code": f.ibsi_code,
                "unit": f.unit.value,
                "code": {"value": f.code.value, "scheme": f.code.scheme, "meaning": f.code.meaning},
            }
            for f in segment.features
        ],
        "skipped": [{"name": s.name, "reason": s.reason} for s in segment.skipped],
        "diagnostics": dict(segment.diagnostics),
    }


def feature_table(segments: Sequence[SegmentFeatures]) -> list[dict[str, Any]]:
    """The features of several segments as JSON-ready records."""
    return [segment_record(s) for s in segments]


def write_json(cases: Sequence[CaseFeatures], path: str | Path) -> None:
    """Write cases, segments, features (with codes and units) and skip reasons as JSON."""
    document = {
        "cases": [
            {
                "case": case.case,
                "image": case.image,
                "mask": case.mask,
                "error": case.error,
                "segments": feature_table(case.segments),
            }
            for case in cases
        ]
    }
    Path(path).write_text(json.dumps(document, indent=2, allow_nan=False), encoding="utf-8")


def csv_rows(cases: Sequence[CaseFeatures]) -> tuple[list[str], list[dict[str, str]]]:
    """The CSV header and rows (see the module docstring); a failed case is one row with
    only its input columns."""
    diagnostics: dict[str, None] = {}
    features: dict[str, None] = {}
    rows: list[dict[str, str]] = []
    for case in cases:
        base = {"Case": case.case, "Image": case.image, "Mask": case.mask}
        if not case.segments:
            rows.append({**base, "Label": "", "Segment": ""})
            continue
        for segment in case.segments:
            row = {**base, "Label": str(segment.label), "Segment": segment.segment_name}
            for key, value in segment.diagnostics:
                diagnostics.setdefault(key)
                row[key] = value
            for feature in segment.features:
                features.setdefault(feature.name)
                row[feature.name] = repr(feature.value)
            rows.append(row)
    return [*INPUT_COLUMNS, *diagnostics, *features], rows


def write_csv(cases: Sequence[CaseFeatures], path: str | Path) -> None:
    """Write one row per case and segment (PyRadiomics' batch layout)."""
    header, rows = csv_rows(cases)
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_table(cases: Sequence[CaseFeatures], path: str | Path) -> None:
    """Write JSON for a ``.json`` path, CSV otherwise."""
    if str(path).lower().endswith(".json"):
        write_json(cases, path)
    else:
        write_csv(cases, path)
