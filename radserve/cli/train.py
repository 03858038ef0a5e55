"""The bodies of the ``radserve train``, ``export``, ``evaluate`` and ``compare`` commands.

Each raises :class:`~radserve.training.errors.TrainingError` (or the inference package's
errors for an unloadable model package) with a message fit for the terminal; the CLI turns
those into exit code 2.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console
from rich.table import Table

from radserve.training import (
    Evaluation,
    ExportResult,
    RunSummary,
    TrainResult,
    config_differences,
    evaluate_datalist,
    export_package,
    load_config,
    read_run,
    train,
    write_comparison,
    write_evaluation,
)

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
        write_evaluation(evaluation, out)
    return evaluation


def compare_command(runs: list[Path], *, cases: bool, out: Path | None) -> list[RunSummary]:
    """Print how the runs in ``runs`` validated, what differs in their configurations and,
    with ``cases``, each validation case's Dice at each run's best epoch."""
    summaries = [read_run(run) for run in runs]
    console = Console()
    table = Table(title=f"{len(summaries)} training run(s)")
    table.add_column("run", no_wrap=True)
    for column in ("best Dice", "at epoch", "last Dice", "epochs", "time (min)"):
        table.add_column(column, justify="right")
    top = max((s.best_dice for s in summaries if s.best_dice is not None), default=None)
    for s in summaries:
        best = _fmt(s.best_dice, 3)
        configured = f"/{s.epochs_configured}" if s.epochs_configured is not None else ""
        table.add_row(
            str(s.directory),
            f"[bold]{best}[/bold]" if s.best_dice is not None and s.best_dice == top else best,
            _fmt(s.best_epoch, 0),
            _fmt(s.last_dice, 3),
            f"{s.epochs_run}{configured}",
            f"{s.train_s / 60:.1f}",
        )
    console.print(table)

    differences = config_differences(summaries)
    if len(summaries) > 1:
        changed = Table(title="configuration differences" if differences else "same configuration")
        changed.add_column("key", no_wrap=True)
        for s in summaries:
            changed.add_column(s.name)
        for key, values in differences:
            changed.add_row(key, *("-" if v is None else str(v) for v in values))
        console.print(changed)

    if cases:
        names = sorted({case for s in summaries for case in s.case_dice})
        per_case = Table(title="validation Dice per case, at each run's best epoch")
        per_case.add_column("case")
        for s in summaries:
            per_case.add_column(s.name, justify="right")
        for case in names:
            per_case.add_row(case, *(_fmt(s.case_dice.get(case), 3) for s in summaries))
        console.print(per_case)
    if out is not None:
        write_comparison(summaries, out)
    return summaries


def _fmt(value: float | int | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
