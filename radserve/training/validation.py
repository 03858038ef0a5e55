"""Validation during training: sliding-window inference and mean Dice per case."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.inferers.utils import sliding_window_inference
from torch import nn

from radserve.training.config import TrainingConfig
from radserve.training.transforms import IMAGE, LABEL


def dice_per_label(
    prediction: npt.NDArray[np.integer[Any]], truth: npt.NDArray[np.integer[Any]], labels: int
) -> float:
    """Mean Dice over labels 1..``labels`` (a label absent from both counts as 1)."""
    scores = []
    for label in range(1, labels + 1):
        p, t = prediction == label, truth == label
        total = int(p.sum()) + int(t.sum())
        scores.append(1.0 if total == 0 else 2.0 * int((p & t).sum()) / total)
    return float(np.mean(scores))


def validate(
    network: nn.Module,
    cases: Sequence[dict[str, Any]],
    config: TrainingConfig,
    device: torch.device,
) -> dict[str, float]:
    """Sliding-window inference on whole preprocessed validation images; Dice per case."""
    spec = config.inference
    network.eval()
    result = {}
    with torch.no_grad():
        for item in cases:
            image = torch.as_tensor(item[IMAGE]).unsqueeze(0).to(device)
            logits = sliding_window_inference(
                image,
                roi_size=spec.patch_size,
                sw_batch_size=spec.batch_size,
                predictor=network,
                overlap=spec.overlap,
                mode=spec.blending,
                sigma_scale=spec.sigma_scale,
            )
            assert isinstance(logits, torch.Tensor)
            predicted = torch.argmax(logits, dim=1)[0].cpu().numpy()
            truth = np.asarray(torch.as_tensor(item[LABEL])[0].cpu().numpy()).round()
            result[str(item["name"])] = dice_per_label(
                predicted, truth.astype(np.int64), len(config.package.labels)
            )
    network.train()
    return result
