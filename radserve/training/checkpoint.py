"""Checkpoints and the files of a run folder.

A run folder (a config's ``output_dir``) holds ``config.yaml`` (the configuration after
overrides), ``metrics.jsonl`` (one JSON object per epoch), ``last.pt`` and ``best.pt``.
Checkpoints hold only tensors and plain Python values and load with
``torch.load(..., weights_only=True)``; each is written to a ``.partial`` file first and then
renamed, so a killed run never leaves half a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radserve.training.config import LoadedConfig
from radserve.training.errors import TrainingError

CHECKPOINT_FORMAT = "radserve-training-checkpoint/1"
LAST, BEST, METRICS, CONFIG = "last.pt", "best.pt", "metrics.jsonl", "config.yaml"


@dataclass
class TrainingState:
    """Where a run stands; saved in every checkpoint and restored on resume.

    Attributes:
        epoch: Epochs completed (1-based number of the last one).
        step: Optimiser steps taken.
        best_dice: Best mean validation Dice (-1 before the first validation).
        best_epoch: Epoch of ``best_dice``.
        epochs_since_best: Epochs validated without improving on ``best_dice``.
        validation_dice: Per-case Dice at ``best_epoch``.
    """

    epoch: int = 0
    step: int = 0
    best_dice: float = -1.0
    best_epoch: int = 0
    epochs_since_best: int = 0
    validation_dice: dict[str, float] | None = None


@dataclass(frozen=True)
class CheckpointSource:
    """What every checkpoint of one run is written from, besides its :class:`TrainingState`.

    Attributes:
        loaded: The run's configuration (its text and hash go into the checkpoint).
        network: The network being trained.
        optimizer: Its optimiser.
        extra: Further plain values stored as top-level keys (case names, config folder).
    """

    loaded: LoadedConfig
    network: nn.Module
    optimizer: torch.optim.Optimizer
    extra: Mapping[str, Any]


def save_checkpoint(path: Path, source: CheckpointSource, state: TrainingState) -> None:
    """Write a checkpoint of ``source`` at ``state`` to ``path`` (atomically)."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "epoch": state.epoch,
        "step": state.step,
        "best_dice": state.best_dice,
        "best_epoch": state.best_epoch,
        "epochs_since_best": state.epochs_since_best,
        "validation_dice": dict(state.validation_dice or {}),
        "model": {k: v.detach().cpu() for k, v in source.network.state_dict().items()},
        "optimizer": source.optimizer.state_dict(),
        "config_yaml": source.loaded.text,
        "config_sha256": source.loaded.sha256,
        **source.extra,
    }
    partial = path.with_suffix(".partial")
    torch.save(checkpoint, partial)
    partial.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint, loaded with ``weights_only=True``.

    Raises:
        TrainingError: Missing or unreadable file, or not a radserve checkpoint.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise TrainingError(f"cannot load checkpoint {path}: {exc}") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a radserve training checkpoint")
    return checkpoint


def write_config(path: Path, loaded: LoadedConfig) -> None:
    """The run's configuration after overrides, for ``radserve compare`` and for people."""
    partial = path.with_suffix(".partial")
    partial.write_text(loaded.text, encoding="utf-8")
    partial.replace(path)
