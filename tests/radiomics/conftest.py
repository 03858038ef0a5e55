"""Shared inputs for the radiomics tests: real STS CT cases and stock PyRadiomics."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import SimpleITK as sitk

from radserve.dicom_io import LabelMap, Volume
from radserve.radiomics import ParameterSet, read_case

# Values must equal a stock RadiomicsFeatureExtractor.execute to this relative tolerance.
RTOL = 1e-6


def sts_case(shared_data: Path, case: str) -> tuple[Volume, LabelMap]:
    """An STS CT case from ../shared/data (NIfTI image and GTV mask), as CT."""
    folder = shared_data / "sts_ct" / "nifti" / case
    volume, labelmap = read_case(folder / "image.nii.gz", folder / "mask.nii.gz")
    volume = dataclasses.replace(volume, modality="CT")
    return volume, LabelMap(volume.with_array(labelmap.volume.array), labelmap.segments)


def stock_features(
    parameter_set: ParameterSet, image: sitk.Image, mask: sitk.Image, label: int = 1
) -> dict[str, float]:
    """The stock ``RadiomicsFeatureExtractor.execute`` values (diagnostics dropped)."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    extractor = RadiomicsFeatureExtractor(parameter_set.parameters())
    result = extractor.execute(image, mask, label=label)
    return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


def mismatches(ours: Mapping[str, float], stock: Mapping[str, float]) -> list[Any]:
    """Features whose values differ beyond :data:`RTOL` (or that only one side has)."""
    wrong: list[Any] = sorted(set(ours) ^ set(stock))
    for name, value in stock.items():
        if name in ours and not math.isclose(ours[name], value, rel_tol=RTOL, abs_tol=1e-12):
            wrong.append((name, ours[name], value))
    return wrong


@pytest.fixture(scope="session")
def sts_019(shared_data: Path) -> tuple[Volume, LabelMap]:
    """The smallest STS tumour (5564 voxels)."""
    return sts_case(shared_data, "STS_019")
