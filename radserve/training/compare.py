"""Compare training runs: how each validated, and what differs in their configurations.

A run folder (a config's ``output_dir``) holds ``metrics.jsonl`` (one JSON object per epoch,
validation Dice every ``validate_every`` epochs), ``config.yaml`` (the configuration after
``--set`` overrides) and the checkpoints. Runs written before ``config.yaml`` existed still
carry their configuration in ``best.pt`` / ``last.pt``.

``metrics.jsonl`` is read line by line. A last line cut short (the run was killed while
writing it) is ignored with a warning; any other line that is not a JSON object with an
``epoch`` is an error naming the file and line. An epoch logged twice (a run resumed from a
checkpoint older than its last log line) counts once, with its latest record.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from radserve.training.checkpoint import BEST, CONFIG, LAST, METRICS, load_checkpoint
from radserve.training.errors import TrainingError

logger = logging.getLogger(__name__)

CHECKPOINTS = (BEST, LAST)
MAX_LINE_BYTES = 1 << 20  # an epoch's record is well under a kilobyte per validation case
MAX_CONFIG_BYTES = 1 << 20  # a training config is a few kilobytes

# Keys that differ between any two runs without saying anything about the model.
_IGNORED_KEYS = ("output_dir",)


@dataclass(frozen=True)
class RunSummary:
    """One training run, as :func:`read_run` finds it.

    Attributes:
        directory: The run folder.
        config: The configuration (parsed YAML); ``None`` when the folder has none.
        epochs_run: Epochs logged.
        epochs_configured: ``optim.epochs`` of the configuration.
        best_dice: Best mean validation Dice (``None`` before the first validation).
        best_epoch: Epoch of ``best_dice``.
        last_dice: Mean validation Dice of the last validation.
        train_s: Seconds of the logged epochs (training and validation).
        case_dice: Per-case validation Dice at ``best_epoch``.
    """

    directory: Path
    config: Mapping[str, Any] | None
    epochs_run: int
    epochs_configured: int | None
    best_dice: float | None
    best_epoch: int | None
    last_dice: float | None
    train_s: float
    case_dice: Mapping[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run folder's name."""
        return self.directory.name

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record."""
        return {
            "run": str(self.directory),
            "epochs_run": self.epochs_run,
            "epochs_configured": self.epochs_configured,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "last_dice": self.last_dice,
            "train_s": round(self.train_s, 2),
            "case_dice": dict(self.case_dice),
            "config": self.config,
        }


def read_run(directory: str | Path) -> RunSummary:
    """Summarise the run in ``directory``.

    Raises:
        TrainingError: No such folder, no ``metrics.jsonl``, a malformed line in it, or an
            unreadable configuration.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TrainingError(f"{directory}: not a run folder")
    records = _epoch_records(directory / METRICS)
    config = _read_config(directory)
    validated = [r for r in records if _is_number(r.get("val_dice"))]
    best = max(validated, key=lambda r: float(r["val_dice"]), default=None)
    optim = config.get("optim") if config is not None else None
    epochs = optim.get("epochs") if isinstance(optim, dict) else None
    cases = best.get("val_dice_cases") if best is not None else None
    return RunSummary(
        directory=directory,
        config=config,
        epochs_run=max((int(r["epoch"]) for r in records), default=0),
        epochs_configured=int(epochs) if isinstance(epochs, int) else None,
        best_dice=float(best["val_dice"]) if best is not None else None,
        best_epoch=int(best["epoch"]) if best is not None else None,
        last_dice=float(validated[-1]["val_dice"]) if validated else None,
        train_s=sum(float(r["epoch_s"]) for r in records if _is_number(r.get("epoch_s"))),
        case_dice={str(k): float(v) for k, v in (cases or {}).items() if _is_number(v)}
        if isinstance(cases, dict)
        else {},
    )


def config_differences(runs: Sequence[RunSummary]) -> list[tuple[str, list[Any]]]:
    """The configuration keys (dotted) whose values differ between ``runs``, with each run's
    value (``None`` where a run lacks the key or its configuration)."""
    flat = [_flatten(run.config) if run.config is not None else {} for run in runs]
    keys = sorted({key for values in flat for key in values})
    differences = []
    for key in keys:
        if key in _IGNORED_KEYS:
            continue
        values = [values.get(key) for values in flat]
        if any(v != values[0] for v in values[1:]):
            differences.append((key, values))
    return differences


def write_comparison(runs: Sequence[RunSummary], path: str | Path) -> None:
    """Write the runs and their configuration differences as JSON."""
    document = {
        "runs": [run.to_json() for run in runs],
        "differences": {key: values for key, values in config_differences(runs)},
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _epoch_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise TrainingError(f"{path}: no such file (is this a training run's output_dir?)")
    by_epoch: dict[int, dict[str, Any]] = {}
    for number, line, complete in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if not complete:
                logger.warning("%s: ignoring a partial last line (line %d)", path, number)
                continue
            raise TrainingError(f"{path}:{number}: not valid JSON") from None
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise TrainingError(f"{path}:{number}: not an epoch record (no positive 'epoch')")
        by_epoch[epoch] = record
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """``(line number, text, ends with a newline)`` of the non-blank lines of ``path``."""
    with path.open("rb") as stream:
        number = 0
        while True:
            raw = stream.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise TrainingError(f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise TrainingError(f"{path}:{number}: not UTF-8 text") from None
            if text.strip():
                yield number, text, text.endswith("\n")


def _read_config(directory: Path) -> dict[str, Any] | None:
    path = directory / CONFIG
    if path.is_file():
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise TrainingError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config")
        text = path.read_text(encoding="utf-8", errors="replace")
        source = str(path)
    else:
        checkpoint = next((directory / n for n in CHECKPOINTS if (directory / n).is_file()), None)
        if checkpoint is None:
            logger.warning("%s: no %s and no checkpoint; configuration unknown", directory, CONFIG)
            return None
        text = str(load_checkpoint(checkpoint).get("config_yaml", ""))
        source = f"{checkpoint} (config_yaml)"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TrainingError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise TrainingError(f"{source}: the configuration is not a mapping")
    return data


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
