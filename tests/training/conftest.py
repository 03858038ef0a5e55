"""Fixtures for the training tests: small real cases and one tiny trained, exported model.

The cases are real STS CTs from ``../shared/data``, cropped around the tumour so that a
two-epoch run of ``configs/train/tiny_smoke.yaml`` takes seconds on a CPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radserve.training import (
    ExportResult,
    LoadedConfig,
    TrainResult,
    export_package,
    load_config,
    train,
)
from tests.conftest import REPO_ROOT

TINY_CONFIG = REPO_ROOT / "configs" / "train" / "tiny_smoke.yaml"
TINY_CASES = ("STS_002", "STS_019", "STS_025")
CROP_VOXELS = (72, 72, 16)  # i, j, k


def crop_case(source: Path, target: Path, *, size: tuple[int, int, int] = CROP_VOXELS) -> None:
    """Copy ``source/{image,mask}.nii.gz`` to ``target``, cropped around the mask's centre."""
    image = sitk.ReadImage(str(source / "image.nii.gz"))
    mask = sitk.ReadImage(str(source / "mask.nii.gz"))
    kji = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    centre = kji.mean(axis=0)[::-1].round().astype(int)  # i, j, k
    start = [
        int(np.clip(c - s // 2, 0, n - s))
        for c, s, n in zip(centre, size, image.GetSize(), strict=True)
    ]
    target.mkdir(parents=True, exist_ok=True)
    for name, img in (("image.nii.gz", image), ("mask.nii.gz", mask)):
        sitk.WriteImage(sitk.RegionOfInterest(img, list(size), start), str(target / name))


@pytest.fixture(scope="session")
def tiny_datalist(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSON datalist of three cropped real cases (relative paths)."""
    root = tmp_path_factory.mktemp("tiny_cases")
    for name in TINY_CASES:
        crop_case(shared_data / "sts_ct" / "nifti" / name, root / "cases" / name)
    entries = [
        {"name": n, "image": f"cases/{n}/image.nii.gz", "label": f"cases/{n}/mask.nii.gz"}
        for n in TINY_CASES
    ]
    path = root / "datalist.json"
    path.write_text(json.dumps({"training": entries}), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_config(
    tiny_datalist: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., LoadedConfig]:
    """``tiny_smoke.yaml`` on the cropped cases, writing into a new folder per call."""

    def make(*overrides: str) -> LoadedConfig:
        out = tmp_path_factory.mktemp("run")
        return load_config(
            TINY_CONFIG,
            [f"data.datalist={tiny_datalist}", f"output_dir={out}", *overrides],
        )

    return make


@dataclass(frozen=True)
class TinyRun:
    """A trained and exported tiny model."""

    loaded: LoadedConfig
    result: TrainResult
    export: ExportResult


@pytest.fixture(scope="session")
def tiny_run(
    tiny_config: Callable[..., LoadedConfig], tmp_path_factory: pytest.TempPathFactory
) -> TinyRun:
    """Train the tiny config for two epochs and export it to ``models/tiny-smoke/0.0.1``."""
    loaded = tiny_config()
    result = train(loaded)
    package = tmp_path_factory.mktemp("models") / "tiny-smoke" / "0.0.1"
    export = export_package(result.best_checkpoint, package)
    return TinyRun(loaded=loaded, result=result, export=export)
