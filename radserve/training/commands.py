"""The bodies of the ``radserve train``, ``export`` and ``evaluate`` commands.

Each raises :class:`~radserve.training.errors.TrainingError` (or the inference package's
errors for an unloadable model package) with a message fit for the terminal; the CLI turns
those into exit code 2.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console
from rich.table import Table

from radserve.training.config import load_config
from radserve.training.evaluate import Evaluation, evaluate_datalist, write_json
from radserve.training.export import ExportResult, export_package
from radserve.training.loop import TrainResult, train

logger = logging.getLogger(__name__)


def train_command(config: Path, overrides: list[str], resume: bool) -> TrainResult:
    """Validate ``config`` (with ``--set key=value`` overrides), train, export if configured."""
    loaded = load_config(config, overrides)
    result = train(loaded, resume=resume)
    if loaded.config.export and loaded.config.export_dir is not None:
        export_package(result.best_checkpoint, loaded.resolve(loaded.config.export_dir))
    return result


def export_command(checkpoint: Path, out: Path) -> ExportResult:
    """Export ``checkpoint`` to the package folder ``out`` (``models/<name>/<version>/``)."""
    result = export_package(checkpoint, out)
    console = Console()
    console.print(
        f"wrote {result.directory}: ONNX vs PyTorch max |logit diff| "
        f"{result.parity.max_abs_logit_diff:.2e}, arg-max agreement "
        f"{result.parity.argmax_agreement:.6f}; validation Dice "
        f"{result.metrics.get('dice_mean', float('nan')):.3f}"
    )
    return result


def evaluate_command(model_dir: Path, datalist: Path, out: Path | None) -> Evaluation:
    """Evaluate the package in ``model_dir`` on every case of ``datalist``; print a table."""
    evaluation = evaluate_datalist(model_dir, datalist)
    table = Table(title=f"{model_dir}: {evaluation.summary['cases']} cases")
    for column in ("case", "label", "Dice", "HD95 (mm)", "volume error (%)"):
        table.add_column(column, justify="left" if column in ("case", "label") else "right")
    for c in evaluation.cases:
        table.add_row(c.case, c.name, f"{c.dice:.3f}", _fmt(c.hd95_mm), _fmt(c.volume_error_pct))
    s = evaluation.summary
    table.add_row(
        "mean",
        "",
        _fmt(s["dice_mean"], 3),
        _fmt(s["hd95_mm_mean"]),
        _fmt(s["volume_error_pct_mean"]),
    )
    Console().print(table)
    if out is not None:
        write_json(evaluation, out)
    return evaluation


def _fmt(value: float | int | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
