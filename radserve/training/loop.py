"""The training loop: cached data, DiceCE + AdamW, warm-up + cosine, validation, checkpoints.

Each epoch reseeds the random transforms and the shuffle from ``seed + epoch``, so a run
resumed from a checkpoint continues exactly as an uninterrupted one would (on the same
device and thread count). Checkpoints hold only tensors and plain Python values and load
with ``torch.load(..., weights_only=True)``: ``last.pt`` every ``checkpoint_every`` epochs
and at the end, ``best.pt`` whenever the mean validation Dice improves.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.data.dataloader import DataLoader
from monai.data.dataset import CacheDataset
from monai.inferers.utils import sliding_window_inference
from monai.losses.dice import DiceCELoss
from monai.transforms.compose import Compose
from monai.utils.misc import set_determinism
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from radserve.training.config import LoadedConfig, TrainingConfig
from radserve.training.datalist import Case, read_cases, read_datalist, split_names
from radserve.training.errors import TrainingError
from radserve.training.networks import build_network, count_parameters
from radserve.training.transforms import (
    IMAGE,
    LABEL,
    augmentation_transforms,
    case_to_dict,
    preprocessing_transforms,
)

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "radserve-training-checkpoint/1"
LAST, BEST, METRICS, CONFIG = "last.pt", "best.pt", "metrics.jsonl", "config.yaml"


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        output_dir: Folder with the checkpoints, ``metrics.jsonl`` and ``config.yaml``.
        best_checkpoint: ``best.pt``.
        best_dice: Best mean validation Dice.
        best_epoch: Epoch (1-based) of the best Dice.
        epochs_run: Epochs completed (including those before a resume).
        wall_s: Seconds this process spent training (without a previous run's time).
        validation_dice: Per-case Dice at the best epoch.
    """

    output_dir: Path
    best_checkpoint: Path
    best_dice: float
    best_epoch: int
    epochs_run: int
    wall_s: float
    validation_dice: dict[str, float]


@dataclass
class _State:
    epoch: int = 0
    step: int = 0
    best_dice: float = -1.0
    best_epoch: int = 0
    epochs_since_best: int = 0
    validation_dice: dict[str, float] | None = None


def pick_device(config: TrainingConfig) -> torch.device:
    """``cuda`` when asked for or (``auto``) available, else ``cpu``."""
    wanted = config.optim.device
    if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def learning_rate(config: TrainingConfig, *, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to 0 at the last epoch."""
    optim = config.optim
    warmup = optim.warmup_epochs * steps_per_epoch
    total = max(optim.epochs * steps_per_epoch, warmup + 1)
    if step < warmup:
        return optim.learning_rate * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return optim.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def load_split_cases(loaded: LoadedConfig) -> tuple[list[Case], list[Case]]:
    """Read the datalist, report bad cases, and split into (training, validation) cases.

    Raises:
        DatalistError: Bad cases without ``skip_bad_cases``, or an impossible split.
    """
    config = loaded.config
    refs = read_datalist(loaded.resolve(config.data.datalist))
    cases, bad = read_cases(
        refs,
        skip_bad_cases=config.data.skip_bad_cases,
        max_label=len(config.package.labels),
        roi_names=config.data.roi_names,
    )
    if bad:
        logger.warning("skipping %d bad case(s): %s", len(bad), [b.name for b in bad])
    training, validation = split_names([c.name for c in cases], config.data.split)
    by_name = {c.name: c for c in cases}
    return [by_name[n] for n in training], [by_name[n] for n in validation]


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


def train(loaded: LoadedConfig, *, resume: bool = False) -> TrainResult:
    """Train the configured network; checkpoints and metrics go to ``output_dir``.

    Raises:
        DatalistError: Bad cases (without ``skip_bad_cases``) or an impossible split.
        TrainingError: ``resume`` without a checkpoint, or a checkpoint of another config.
    """
    config = loaded.config
    started = time.perf_counter()
    torch.set_num_threads(config.optim.num_threads)
    set_determinism(seed=config.seed)
    device = pick_device(config)
    output_dir = loaded.resolve(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_config(output_dir / CONFIG, loaded)

    training_cases, validation_cases = load_split_cases(loaded)
    logger.info(
        "%d training, %d validation cases (validation: %s)",
        len(training_cases),
        len(validation_cases),
        ", ".join(c.name for c in validation_cases),
    )
    pre = preprocessing_transforms(config.preprocessing)
    aug = augmentation_transforms(config.augmentation, patch_size=config.inference.patch_size)
    train_ds = CacheDataset(
        data=[case_to_dict(c) for c in training_cases],
        transform=Compose([*pre.transforms, *aug.transforms]),
        cache_rate=config.data.cache_rate,
        num_workers=0,
        progress=False,
    )
    validation_data = [pre(case_to_dict(c)) for c in validation_cases]
    training_names = [c.name for c in training_cases]
    validation_names = [c.name for c in validation_cases]
    del training_cases, validation_cases

    out_channels = len(config.package.labels) + 1
    network = build_network(config.network, out_channels=out_channels).to(device)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.optim.learning_rate, weight_decay=config.optim.weight_decay
    )
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    use_amp = config.optim.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    state = _State()
    if resume:
        state = _resume(output_dir / LAST, loaded, network, optimizer, device)
    logger.info(
        "%s on %s: %d parameters, %d threads, amp %s, from epoch %d",
        config.network.name,
        device,
        count_parameters(network),
        config.optim.num_threads,
        use_amp,
        state.epoch + 1,
    )

    # A step takes batch_size cases, samples_per_case patches from each.
    steps_per_epoch = math.ceil(len(train_ds) / config.optim.batch_size)
    deadline = (
        started + 60.0 * config.optim.max_minutes if config.optim.max_minutes is not None else None
    )
    extra = {
        "training_cases": training_names,
        "validation_cases": validation_names,
        "config_dir": str(loaded.base_dir),
    }
    metrics_path = output_dir / METRICS
    network.train()
    stop_reason = "epochs done"
    with Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps, loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        while state.epoch < config.optim.epochs:
            epoch = state.epoch + 1
            epoch_started = time.perf_counter()
            train_ds.transform.set_random_state(seed=(config.seed + epoch) % 2**32)
            generator = torch.Generator().manual_seed(config.seed + epoch)
            loader = DataLoader(
                train_ds,
                batch_size=config.optim.batch_size,
                shuffle=True,
                num_workers=0,
                generator=generator,
            )
            task = progress.add_task("train", total=steps_per_epoch, epoch=epoch, loss=0.0)
            losses = []
            for batch in loader:
                lr = learning_rate(config, step=state.step, steps_per_epoch=steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images = batch[IMAGE].as_tensor().to(device)
                labels = batch[LABEL].as_tensor().to(device)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, enabled=use_amp):
                    loss = loss_fn(network(images), labels)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                losses.append(float(loss.detach()))
                state.step += 1
                progress.update(task, advance=1, loss=float(np.mean(losses)))
            progress.remove_task(task)
            state.epoch = epoch
            record: dict[str, Any] = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "lr": optimizer.param_groups[0]["lr"],
                "steps": len(losses),
                "train_s": round(time.perf_counter() - epoch_started, 2),
            }
            out_of_time = deadline is not None and time.perf_counter() > deadline
            last_epoch = epoch == config.optim.epochs or out_of_time
            if epoch % config.optim.validate_every == 0 or last_epoch:
                dice = validate(network, validation_data, config, device)
                mean_dice = float(np.mean(list(dice.values())))
                record.update(val_dice=mean_dice, val_dice_cases=dice)
                if mean_dice > state.best_dice:
                    state.best_dice, state.best_epoch = mean_dice, epoch
                    state.validation_dice = dice
                    state.epochs_since_best = 0
                    _save(output_dir / BEST, loaded, network, optimizer, state, extra)
                else:
                    state.epochs_since_best += config.optim.validate_every
            record["epoch_s"] = round(time.perf_counter() - epoch_started, 2)
            with metrics_path.open("a", encoding="utf-8") as stream:
                stream.write(json.dumps(record) + "\n")
            logger.info(
                "epoch %d/%d loss %.4f lr %.2e%s (best %.4f @ %d) %.1f s",
                epoch,
                config.optim.epochs,
                record["loss"],
                record["lr"],
                f" val_dice {record['val_dice']:.4f}" if "val_dice" in record else "",
                state.best_dice,
                state.best_epoch,
                record["epoch_s"],
            )
            if epoch % config.optim.checkpoint_every == 0 or last_epoch:
                _save(output_dir / LAST, loaded, network, optimizer, state, extra)
            if out_of_time:
                stop_reason = f"time budget of {config.optim.max_minutes} min reached"
                break
            if state.epochs_since_best >= config.optim.patience:
                stop_reason = f"no better validation Dice for {state.epochs_since_best} epochs"
                break
    _save(output_dir / LAST, loaded, network, optimizer, state, extra)
    wall = time.perf_counter() - started
    logger.info(
        "stopped after epoch %d (%s): best validation Dice %.4f at epoch %d, %.0f s",
        state.epoch,
        stop_reason,
        state.best_dice,
        state.best_epoch,
        wall,
    )
    return TrainResult(
        output_dir=output_dir,
        best_checkpoint=output_dir / BEST,
        best_dice=state.best_dice,
        best_epoch=state.best_epoch,
        epochs_run=state.epoch,
        wall_s=wall,
        validation_dice=dict(state.validation_dice or {}),
    )


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


def _write_config(path: Path, loaded: LoadedConfig) -> None:
    """The run's configuration after overrides, for ``radserve compare`` and for people."""
    partial = path.with_suffix(".partial")
    partial.write_text(loaded.text, encoding="utf-8")
    partial.replace(path)


def _save(
    path: Path,
    loaded: LoadedConfig,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: _State,
    extra: dict[str, Any],
) -> None:
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "epoch": state.epoch,
        "step": state.step,
        "best_dice": state.best_dice,
        "best_epoch": state.best_epoch,
        "epochs_since_best": state.epochs_since_best,
        "validation_dice": dict(state.validation_dice or {}),
        "model": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "config_yaml": loaded.text,
        "config_sha256": loaded.sha256,
        **extra,
    }
    partial = path.with_suffix(".partial")
    torch.save(checkpoint, partial)
    partial.replace(path)


def _resume(
    path: Path,
    loaded: LoadedConfig,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> _State:
    if not path.is_file():
        raise TrainingError(f"--resume: no checkpoint at {path}")
    checkpoint = load_checkpoint(path)
    if checkpoint["config_sha256"] != loaded.sha256:
        logger.warning("resuming from a checkpoint written with a different config")
    network.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    for value in optimizer.state.values():
        for key, tensor in value.items():
            if isinstance(tensor, torch.Tensor) and key != "step":
                value[key] = tensor.to(device)
    logger.info("resumed from %s at epoch %d", path, checkpoint["epoch"])
    return _State(
        epoch=int(checkpoint["epoch"]),
        step=int(checkpoint["step"]),
        best_dice=float(checkpoint["best_dice"]),
        best_epoch=int(checkpoint["best_epoch"]),
        epochs_since_best=int(checkpoint["epochs_since_best"]),
        validation_dice=dict(checkpoint["validation_dice"]) or None,
    )
