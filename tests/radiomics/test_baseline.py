"""PyRadiomics' own baseline through radserve's extraction path: every class, every case.

``../shared/data/pyradiomics/baseline/baseline_<class>.csv`` holds, per test column, the
reference values and the settings they were computed with (``diagnostics_Configuration_*``).
Columns with the same case, settings and image types are extracted once, with all their
classes enabled, through :func:`radserve.radiomics.extract.extract_features`.

The ``*_2D`` cases of the shape2D baseline use a single-slice mask that is not in the data
folder; it is the slice of the 3D label whose voxel count and bounding box the baseline's
diagnostics give, which this test finds and uses.
"""

from __future__ import annotations

import ast
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radserve.dicom_io import LabelMap
from radserve.radiomics import ParameterSet, extract_features, read_case

RTOL = 1e-6
# The brain1 shape baseline predates PyRadiomics 3's mesh (it was made by 2.0.1b1); the stock
# 3.0.1 extractor gives radserve's values. PyRadiomics' own test allows 3 %.
OLDER_BASELINE = {
    ("brain1", "original_shape_MeshVolume"),
    ("brain1", "original_shape_SurfaceArea"),
    ("brain1", "original_shape_Sphericity"),
    ("brain1", "original_shape_SurfaceVolumeRatio"),
}
OLDER_RTOL = 1e-3


@dataclass
class _Group:
    test: str
    case: str
    settings: dict[str, Any]
    image_types: dict[str, Any]
    mask_diagnostics: dict[str, str]
    classes: set[str] = field(default_factory=set)
    expected: dict[str, float] = field(default_factory=dict)


def _groups(baseline_dir: Path) -> list[_Group]:
    groups: dict[tuple[str, ...], _Group] = {}
    for path in sorted(baseline_dir.glob("baseline_*.csv")):
        feature_class = path.stem.removeprefix("baseline_")
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        for index, test in enumerate(rows[0][1:], start=1):
            column = {row[0]: row[index] for row in rows[1:]}
            settings = ast.literal_eval(column["diagnostics_Configuration_Settings"])
            if feature_class == "shape":  # as PyRadiomics' tests: shape is never resegmented
                settings["resegmentRange"] = None
            image_types = ast.literal_eval(column["diagnostics_Configuration_EnabledImageTypes"])
            case = column["diagnostics_Configuration_TestCase"]
            key = (test, case, repr(sorted(settings.items())), repr(image_types))
            group = groups.setdefault(
                key,
                _Group(
                    test,
                    case,
                    settings,
                    image_types,
                    {k: v for k, v in column.items() if k.startswith("diagnostics_Mask-original")},
                ),
            )
            group.classes.add(feature_class)
            group.expected.update(
                {k: float(v) for k, v in column.items() if not k.startswith("diagnostics_") and v}
            )
    return list(groups.values())


def _single_slice(labelmap: LabelMap, diagnostics: dict[str, str], label: int) -> LabelMap:
    """The one slice of the 3D label that matches the 2D case's voxel count and box."""
    voxels = int(diagnostics["diagnostics_Mask-original_VoxelNum"])
    i0, j0, _, width, height, _ = ast.literal_eval(
        diagnostics["diagnostics_Mask-original_BoundingBox"]
    )
    array = np.asarray(labelmap.volume.array)
    for k in range(array.shape[0]):
        hit = array[k] == label
        if int(hit.sum()) != voxels:
            continue
        rows, columns = np.nonzero(hit)
        if (columns.min(), rows.min(), np.ptp(columns) + 1, np.ptp(rows) + 1) == (
            i0,
            j0,
            width,
            height,
        ):
            single = np.zeros_like(array)
            single[k][hit] = label
            return LabelMap(labelmap.volume.with_array(single), labelmap.segments)
    raise AssertionError("no slice of the 3D label matches the 2D case")


def test_pyradiomics_baseline_is_reproduced(shared_data: Path) -> None:
    folder = shared_data / "pyradiomics"
    groups = _groups(folder / "baseline")
    assert {c for g in groups for c in g.classes} == {
        "firstorder",
        "glcm",
        "gldm",
        "glrlm",
        "glszm",
        "ngtdm",
        "shape",
        "shape2D",
    }
    compared = 0
    wrong: list[tuple[str, str, float, float]] = []
    for group in groups:
        base_case = group.case.removesuffix("_2D")
        volume, labelmap = read_case(
            folder / f"{base_case}_image.nrrd", folder / f"{base_case}_label.nrrd"
        )
        label = int(group.settings.get("label", 1))
        if group.case.endswith("_2D"):
            labelmap = _single_slice(labelmap, group.mask_diagnostics, label)
        parameter_set = ParameterSet.from_dict(
            group.test,
            {
                "imageType": group.image_types,
                "featureClass": {name: None for name in sorted(group.classes)},
                "setting": group.settings,
            },
        )
        (result,) = extract_features(volume, labelmap, parameter_set=parameter_set, labels=[label])
        values = result.values()
        for name, expected in group.expected.items():
            compared += 1
            tolerance = OLDER_RTOL if (group.test, name) in OLDER_BASELINE else RTOL
            value = values.get(name, math.nan)
            if not math.isclose(value, expected, rel_tol=tolerance, abs_tol=1e-12):
                wrong.append((group.test, name, value, expected))
    assert wrong == []
    assert compared == 3370, compared  # every baseline value of every class and column
