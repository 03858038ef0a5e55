"""Evaluate a model package the way the server runs it: per-case Dice, HD95 and volume error.

Every case goes through :class:`radserve.inference.predictor.Predictor` (preprocessing, ONNX
Runtime sliding window, labels back on the source grid, small-component removal), and is
compared with its reference label map on the original image grid.

Metrics per case and label:

* **Dice** ``2|P & R| / (|P| + |R|)``; 1 when both are empty.
* **HD95** (mm): the larger of the two directed 95th-percentile distances between the
  surface voxels of prediction and reference, with the voxel spacing (Euclidean distance
  transforms, :func:`scipy.ndimage.distance_transform_edt`). 0 when both are empty,
  undefined (``None`` in JSON) when exactly one is.
* **Volume error** (%): ``(V_P - V_R) / V_R * 100``; undefined for an empty reference.

The summary is the mean of each metric over the cases where it is defined.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from radserve.inference import Predictor, RuntimeSettings, load_model_package
from radserve.training.datalist import Case, read_cases, read_datalist

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class CaseMetrics:
    """Metrics of one label in one case (``None``: undefined, see the module docstring)."""

    case: str
    label: int
    name: str
    dice: float
    hd95_mm: float | None
    volume_error_pct: float | None
    predicted_ml: float
    reference_ml: float


@dataclass(frozen=True)
class Evaluation:
    """Per-case metrics and their means."""

    cases: tuple[CaseMetrics, ...]

    @property
    def summary(self) -> dict[str, float | int | None]:
        """Mean Dice, HD95 and volume error (over defined values), and counts."""
        return {
            "cases": len({c.case for c in self.cases}),
            "dice_mean": _mean([c.dice for c in self.cases]),
            "hd95_mm_mean": _mean([c.hd95_mm for c in self.cases]),
            "volume_error_pct_mean": _mean([c.volume_error_pct for c in self.cases]),
            "abs_volume_error_pct_mean": _mean(
                [abs(c.volume_error_pct) for c in self.cases if c.volume_error_pct is not None]
            ),
        }

    def manifest_metrics(self) -> dict[str, float]:
        """The defined summary values, for the manifest's ``validation_metrics``."""
        return {k: float(v) for k, v in self.summary.items() if v is not None}

    def to_json(self) -> dict[str, Any]:
        """``{"cases": [...], "summary": {...}}``."""
        return {"cases": [asdict(c) for c in self.cases], "summary": self.summary}

    def case_table(self) -> str:
        """A Markdown table of every case and the means."""
        rows = [
            "| case | label | Dice | HD95 (mm) | volume error (%) | predicted (ml) "
            "| reference (ml) |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        rows += [
            f"| {c.case} | {c.name} | {c.dice:.3f} | {_fmt(c.hd95_mm)} | "
            f"{_fmt(c.volume_error_pct)} | {c.predicted_ml:.1f} | {c.reference_ml:.1f} |"
            for c in self.cases
        ]
        s = self.summary
        rows.append(
            f"| **mean** | | **{_fmt(s['dice_mean'], 3)}** | {_fmt(s['hd95_mm_mean'])} | "
            f"{_fmt(s['volume_error_pct_mean'])} | | |"
        )
        return "\n".join(rows)


def dice(prediction: Mask, reference: Mask) -> float:
    """Dice coefficient; 1 when both masks are empty."""
    total = int(prediction.sum()) + int(reference.sum())
    return 1.0 if total == 0 else 2.0 * int((prediction & reference).sum()) / total


def hd95_mm(prediction: Mask, reference: Mask, spacing_mm: Sequence[float]) -> float | None:
    """Symmetric 95th-percentile Hausdorff distance in mm (arrays and spacing in one order).

    Returns 0 when both masks are empty and ``None`` when exactly one is.
    """
    if not prediction.any() and not reference.any():
        return 0.0
    if not prediction.any() or not reference.any():
        return None
    surface_p, surface_r = _surface(prediction), _surface(reference)
    to_r = ndimage.distance_transform_edt(~surface_r, sampling=spacing_mm)
    to_p = ndimage.distance_transform_edt(~surface_p, sampling=spacing_mm)
    return float(max(np.percentile(to_r[surface_p], 95), np.percentile(to_p[surface_r], 95)))


def _surface(mask: Mask) -> Mask:
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))
    result: Mask = mask & ~eroded
    return result


def evaluate_package(
    model_dir: str | Path, cases: Sequence[Case], *, runtime: RuntimeSettings | None = None
) -> Evaluation:
    """Predict every case with the package's :class:`Predictor` and score it."""
    package = load_model_package(model_dir)
    predictor = Predictor(package, runtime=runtime or RuntimeSettings())
    results = []
    for case in cases:
        predicted = np.asarray(predictor.predict(case.image).label_map.volume.array)
        # Arrays are [k, j, i]: spacing in the same order.
        i, j, k = case.image.spacing_mm
        voxel_ml = i * j * k / 1000.0
        for spec in package.manifest.labels:
            p, r = predicted == spec.label, case.label == spec.label
            predicted_ml, reference_ml = float(p.sum()) * voxel_ml, float(r.sum()) * voxel_ml
            results.append(
                CaseMetrics(
                    case=case.name,
                    label=spec.label,
                    name=spec.name,
                    dice=dice(p, r),
                    hd95_mm=hd95_mm(p, r, (k, j, i)),
                    volume_error_pct=(
                        (predicted_ml - reference_ml) / reference_ml * 100.0
                        if reference_ml > 0
                        else None
                    ),
                    predicted_ml=predicted_ml,
                    reference_ml=reference_ml,
                )
            )
    return Evaluation(cases=tuple(results))


def evaluate_datalist(model_dir: str | Path, datalist: str | Path) -> Evaluation:
    """Evaluate a package on every case of a datalist (empty reference masks allowed).

    Raises:
        DatalistError: A case cannot be read (all such cases are listed).
    """
    package = load_model_package(model_dir)
    cases, _ = read_cases(
        read_datalist(datalist),
        skip_bad_cases=False,
        max_label=len(package.manifest.labels),
        require_foreground=False,
    )
    return evaluate_package(model_dir, cases)


def write_evaluation(evaluation: Evaluation, path: str | Path) -> None:
    """Write ``{"cases": [...], "summary": {...}}`` to ``path``."""
    Path(path).write_text(json.dumps(evaluation.to_json(), indent=2) + "\n", encoding="utf-8")


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(defined)) if defined else None


def _fmt(value: float | int | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
