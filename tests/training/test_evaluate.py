"""Evaluation metrics on known masks, and evaluation of a package through the Predictor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radserve.cli.train import evaluate_command
from radserve.training import dice, hd95_mm
from tests.training.conftest import TINY_CASES, TinyRun


def _box() -> np.ndarray:
    mask = np.zeros((20, 30, 30), dtype=bool)
    mask[5:15, 8:22, 8:22] = True
    return mask


def test_identical_masks() -> None:
    mask = _box()
    assert dice(mask, mask) == 1.0
    assert hd95_mm(mask, mask, (2.5, 1.0, 1.0)) == 0.0


def test_dice_of_half_overlap() -> None:
    a = np.zeros((4, 4, 4), dtype=bool)
    b = a.copy()
    a[:, :, :2] = True
    b[:, :, 1:3] = True
    assert dice(a, b) == pytest.approx(0.5)


def test_hd95_of_a_shifted_plate_is_the_shift_in_mm() -> None:
    # A one-voxel-thick plate moved by 3 slices of 2.5 mm: every surface point moves 7.5 mm.
    plate = np.zeros((20, 40, 40), dtype=bool)
    plate[5, 5:35, 5:35] = True
    shifted = np.roll(plate, 3, axis=0)
    assert hd95_mm(plate, shifted, (2.5, 0.8, 0.8)) == pytest.approx(7.5)
    # Along an in-plane axis with 0.8 mm pixels: 4 pixels = 3.2 mm.
    wall = np.zeros((20, 40, 40), dtype=bool)
    wall[2:18, 5:35, 10] = True
    assert hd95_mm(wall, np.roll(wall, 4, axis=2), (2.5, 0.8, 0.8)) == pytest.approx(3.2)


def test_empty_masks() -> None:
    empty, box = np.zeros((20, 30, 30), dtype=bool), _box()
    assert dice(empty, empty) == 1.0 and hd95_mm(empty, empty, (1, 1, 1)) == 0.0
    assert dice(empty, box) == 0.0 and hd95_mm(empty, box, (1, 1, 1)) is None


def test_evaluate_command_writes_cases_and_summary(
    tiny_run: TinyRun, tiny_datalist: Path, tmp_path: Path
) -> None:
    out = tmp_path / "metrics.json"
    evaluation = evaluate_command(tiny_run.export.directory, tiny_datalist, out)
    data = json.loads(out.read_text())
    assert [c["case"] for c in data["cases"]] == list(TINY_CASES)
    assert data["summary"]["cases"] == 3
    dices = [c["dice"] for c in data["cases"]]
    assert data["summary"]["dice_mean"] == pytest.approx(np.mean(dices))
    assert all(c["reference_ml"] > 0 for c in data["cases"])
    # The export evaluated STS_002 the same way: same Dice in the manifest.
    sts002 = next(c for c in evaluation.cases if c.case == "STS_002")
    manifest_dice = tiny_run.export.manifest.provenance.validation_metrics["dice_mean"]
    assert sts002.dice == pytest.approx(manifest_dice, abs=1e-6)
