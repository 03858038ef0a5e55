"""Loading checkpoints: only radserve checkpoints, only with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from radserve.training import TrainingError, load_checkpoint


def test_a_radserve_checkpoint_loads_with_its_tensors(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    weight = torch.arange(6.0).reshape(2, 3)
    torch.save({"format": "radserve-training-checkpoint/1", "model": {"w": weight}}, path)
    checkpoint = load_checkpoint(path)
    torch.testing.assert_close(checkpoint["model"]["w"], weight)


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(TrainingError, match="not a radserve training checkpoint"):
        load_checkpoint(path)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="cannot load checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
