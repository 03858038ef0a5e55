"""Tiny threshold model packages that name the small radiomics parameter set (see
:data:`tests.onnx_models.SMALL_SET`), so that tests with radiomics stay quick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.onnx_models import (
    SMALL_SET_FILE,
    manifest_dict,
    threshold_model,
    write_package,
)

THRESHOLD_HU = 300.5  # CT values are integers: never a tie
WINDOW_HU = (-1000.0, 1000.0)


def bone_package(
    root: Path,
    *,
    name: str = "bone-radiomics",
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    radiomics_parameter_set: str | None = SMALL_SET_FILE,
    threshold_hu: float = THRESHOLD_HU,
    **sections: Any,
) -> Path:
    """A threshold model package (label 1 "Bone" above ``threshold_hu``) whose manifest names
    ``radiomics_parameter_set``, with :data:`SMALL_SET` written into the package folder;
    ``sections`` replace or merge further manifest entries (see ``manifest_dict``)."""
    model = threshold_model((threshold_hu - WINDOW_HU[0]) / (WINDOW_HU[1] - WINDOW_HU[0]))
    manifest = manifest_dict(
        model,
        name=name,
        preprocessing={
            "orientation": "RAS",
            "target_spacing_mm": list(spacing_mm),
            "intensity": {
                "window_hu": list(WINDOW_HU),
                "normalisation": {"method": "scale_to_unit"},
            },
        },
        inference={"patch_size": [64, 64, 32], "overlap": 0.25, "batch_size": 2},
        radiomics_parameter_set=radiomics_parameter_set,
        **sections,
    )
    return write_package(root, model, manifest)
