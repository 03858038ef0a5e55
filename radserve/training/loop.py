"""The training loop: cached data, DiceCE + AdamW, warm-up + cosine, validation, checkpoints.

Each epoch reseeds the random transforms and the shuffle from ``seed + epoch``, so a run
resumed from a checkpoint continues exactly as an uninterrupted one would (on the same
device and thread count). ``last.pt`` is written every ``checkpoint_every`` epochs and at the
end, ``best.pt`` whenever the mean validation Dice improves (see
:mod:`radserve.training.checkpoint`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data.dataloader import DataLoader
from monai.data.dataset import CacheDataset
from monai.losses.dice import DiceCELoss
from monai.transforms.compose import Compose
from monai.utils.misc import set_determinism
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from radserve.training.checkpoint import (
    BEST,
    CONFIG,
    LAST,
    METRICS,
    CheckpointSource,
    TrainingState,
    load_checkpoint,
    save_checkpoint,
    write_config,
)
from radserve.training.config import LoadedConfig, OptimConfig, TrainingConfig
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
from radserve.training.validation import validate

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class _TrainingData:
    """The cached, augmented training cases and the preprocessed validation cases."""

    train_ds: CacheDataset
    validation_data: list[dict[str, Any]]
    training_names: list[str]
    validation_names: list[str]


@dataclass(frozen=True)
class _Model:
    """The network, where it runs, and what updates it."""

    device: torch.device
    network: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: DiceCELoss
    scaler: torch.amp.GradScaler
    use_amp: bool


@dataclass(frozen=True)
class _Run:
    """What stays fixed from one epoch of a run to the next."""

    loaded: LoadedConfig
    output_dir: Path
    data: _TrainingData
    model: _Model
    checkpoints: CheckpointSource
    steps_per_epoch: int
    deadline: float | None  # perf_counter() value, None without a time budget

    @property
    def config(self) -> TrainingConfig:
        return self.loaded.config


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
    write_config(output_dir / CONFIG, loaded)

    data = _prepare_data(loaded)
    model = _build_model(config, device)
    state = _resume(output_dir / LAST, loaded, model) if resume else TrainingState()
    logger.info(
        "%s on %s: %d parameters, %d threads, amp %s, from epoch %d",
        config.network.name,
        device,
        count_parameters(model.network),
        config.optim.num_threads,
        model.use_amp,
        state.epoch + 1,
    )
    run = _Run(
        loaded=loaded,
        output_dir=output_dir,
        data=data,
        model=model,
        checkpoints=CheckpointSource(
            loaded=loaded,
            network=model.network,
            optimizer=model.optimizer,
            extra={
                "training_cases": data.training_names,
                "validation_cases": data.validation_names,
                "config_dir": str(loaded.base_dir),
            },
        ),
        # A step takes batch_size cases, samples_per_case patches from each.
        steps_per_epoch=math.ceil(len(data.train_ds) / config.optim.batch_size),
        deadline=(
            started + 60.0 * config.optim.max_minutes
            if config.optim.max_minutes is not None
            else None
        ),
    )
    model.network.train()
    stop_reason = _run_epochs(run, state)
    save_checkpoint(output_dir / LAST, run.checkpoints, state)
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


def _prepare_data(loaded: LoadedConfig) -> _TrainingData:
    """Split the cases; cache the training set up to its first random transform."""
    config = loaded.config
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
    return _TrainingData(
        train_ds=train_ds,
        validation_data=validation_data,
        training_names=[c.name for c in training_cases],
        validation_names=[c.name for c in validation_cases],
    )


def _build_model(config: TrainingConfig, device: torch.device) -> _Model:
    """The network on ``device``, AdamW, DiceCE and the (AMP-only) gradient scaler."""
    out_channels = len(config.package.labels) + 1
    network = build_network(config.network, out_channels=out_channels).to(device)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.optim.learning_rate, weight_decay=config.optim.weight_decay
    )
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    use_amp = config.optim.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return _Model(
        device=device,
        network=network,
        optimizer=optimizer,
        loss_fn=loss_fn,
        scaler=scaler,
        use_amp=use_amp,
    )


def _resume(path: Path, loaded: LoadedConfig, model: _Model) -> TrainingState:
    """Load ``last.pt`` into the network and optimiser; the state it was saved at.

    Raises:
        TrainingError: No checkpoint at ``path``, or not a readable radserve checkpoint.
    """
    if not path.is_file():
        raise TrainingError(f"--resume: no checkpoint at {path}")
    checkpoint = load_checkpoint(path)
    if checkpoint["config_sha256"] != loaded.sha256:
        logger.warning("resuming from a checkpoint written with a different config")
    model.network.load_state_dict(checkpoint["model"])
    model.optimizer.load_state_dict(checkpoint["optimizer"])
    for value in model.optimizer.state.values():
        for key, tensor in value.items():
            if isinstance(tensor, torch.Tensor) and key != "step":
                value[key] = tensor.to(model.device)
    logger.info("resumed from %s at epoch %d", path, checkpoint["epoch"])
    return TrainingState(
        epoch=int(checkpoint["epoch"]),
        step=int(checkpoint["step"]),
        best_dice=float(checkpoint["best_dice"]),
        best_epoch=int(checkpoint["best_epoch"]),
        epochs_since_best=int(checkpoint["epochs_since_best"]),
        validation_dice=dict(checkpoint["validation_dice"]) or None,
    )


def _run_epochs(run: _Run, state: TrainingState) -> str:
    """Train epoch after epoch until the last, the time budget or the patience; why it stopped."""
    optim = run.config.optim
    with Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps, loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        while state.epoch < optim.epochs:
            epoch = state.epoch + 1
            epoch_started = time.perf_counter()
            losses = _train_epoch(run, state, epoch=epoch, progress=progress)
            state.epoch = epoch
            record: dict[str, Any] = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "lr": run.model.optimizer.param_groups[0]["lr"],
                "steps": len(losses),
                "train_s": round(time.perf_counter() - epoch_started, 2),
            }
            out_of_time = run.deadline is not None and time.perf_counter() > run.deadline
            last_epoch = epoch == optim.epochs or out_of_time
            if epoch % optim.validate_every == 0 or last_epoch:
                record.update(_validate_epoch(run, state))
            record["epoch_s"] = round(time.perf_counter() - epoch_started, 2)
            _record_epoch(run, state, record)
            if epoch % optim.checkpoint_every == 0 or last_epoch:
                save_checkpoint(run.output_dir / LAST, run.checkpoints, state)
            stop_reason = _stop_reason(optim, state, out_of_time=out_of_time)
            if stop_reason is not None:
                return stop_reason
    return "epochs done"


def _train_epoch(run: _Run, state: TrainingState, *, epoch: int, progress: Progress) -> list[float]:
    """One pass over the training set, reseeded from ``seed + epoch``; the loss of each step."""
    config = run.config
    train_ds = run.data.train_ds
    train_ds.transform.set_random_state(seed=(config.seed + epoch) % 2**32)
    generator = torch.Generator().manual_seed(config.seed + epoch)
    loader = DataLoader(
        train_ds,
        batch_size=config.optim.batch_size,
        shuffle=True,
        num_workers=0,
        generator=generator,
    )
    task = progress.add_task("train", total=run.steps_per_epoch, epoch=epoch, loss=0.0)
    losses = []
    for batch in loader:
        lr = learning_rate(config, step=state.step, steps_per_epoch=run.steps_per_epoch)
        losses.append(_train_step(run.model, batch, lr=lr))
        state.step += 1
        progress.update(task, advance=1, loss=float(np.mean(losses)))
    progress.remove_task(task)
    return losses


def _train_step(model: _Model, batch: dict[str, Any], *, lr: float) -> float:
    """One optimiser step at learning rate ``lr``; the step's loss."""
    for group in model.optimizer.param_groups:
        group["lr"] = lr
    images = batch[IMAGE].as_tensor().to(model.device)
    labels = batch[LABEL].as_tensor().to(model.device)
    model.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(model.device.type, enabled=model.use_amp):
        loss = model.loss_fn(model.network(images), labels)
    model.scaler.scale(loss).backward()
    model.scaler.step(model.optimizer)
    model.scaler.update()
    return float(loss.detach())


def _validate_epoch(run: _Run, state: TrainingState) -> dict[str, Any]:
    """Validate, track the best Dice (writing ``best.pt``); the epoch record's Dice fields."""
    dice = validate(run.model.network, run.data.validation_data, run.config, run.model.device)
    mean_dice = float(np.mean(list(dice.values())))
    if mean_dice > state.best_dice:
        state.best_dice, state.best_epoch = mean_dice, state.epoch
        state.validation_dice = dice
        state.epochs_since_best = 0
        save_checkpoint(run.output_dir / BEST, run.checkpoints, state)
    else:
        state.epochs_since_best += run.config.optim.validate_every
    return {"val_dice": mean_dice, "val_dice_cases": dice}


def _record_epoch(run: _Run, state: TrainingState, record: dict[str, Any]) -> None:
    """Append the epoch's record to ``metrics.jsonl`` and log it."""
    with (run.output_dir / METRICS).open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")
    logger.info(
        "epoch %d/%d loss %.4f lr %.2e%s (best %.4f @ %d) %.1f s",
        record["epoch"],
        run.config.optim.epochs,
        record["loss"],
        record["lr"],
        f" val_dice {record['val_dice']:.4f}" if "val_dice" in record else "",
        state.best_dice,
        state.best_epoch,
        record["epoch_s"],
    )


def _stop_reason(optim: OptimConfig, state: TrainingState, *, out_of_time: bool) -> str | None:
    """Why training stops after this epoch (time budget, then patience); ``None`` to go on."""
    if out_of_time:
        return f"time budget of {optim.max_minutes} min reached"
    if state.epochs_since_best >= optim.patience:
        return f"no better validation Dice for {state.epochs_since_best} epochs"
    return None
