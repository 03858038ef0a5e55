"""The ``radserve train``, ``export``, ``evaluate`` and ``compare`` commands.

Their bodies are in :mod:`radserve.cli.train`; these parse the options and turn the errors
into exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    config: Annotated[Path, typer.Argument(help="Training config YAML (configs/train/).")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override key=value (value parsed as YAML); repeatable."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from output_dir/last.pt.")
    ] = False,
) -> None:
    """Train a segmentation model with MONAI from a YAML config."""
    from radserve.cli.train import train_command
    from radserve.training import TrainingError

    try:
        train_command(config, set_ or [], resume)
    except TrainingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc


def export(
    checkpoint: Annotated[Path, typer.Argument(help="A training checkpoint (best.pt, last.pt).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Package folder models/<name>/<version>/.")
    ],
) -> None:
    """Export a checkpoint to a verified model package (model.onnx + manifest.yaml)."""
    from radserve.cli.train import export_command
    from radserve.inference import InferenceError
    from radserve.training import TrainingError

    try:
        export_command(checkpoint, out)
    except (TrainingError, InferenceError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Package folder models/<name>/<version>/.")],
    datalist: Annotated[Path, typer.Argument(help="JSON or CSV datalist of labelled cases.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write metrics JSON.")] = None,
) -> None:
    """Evaluate a model package on labelled cases through the server's inference path."""
    from radserve.cli.train import evaluate_command
    from radserve.inference import InferenceError
    from radserve.training import TrainingError

    try:
        evaluate_command(model_dir, datalist, out)
    except (TrainingError, InferenceError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc


def compare(
    runs: Annotated[
        list[Path], typer.Argument(help="Training run folders (each config's output_dir).")
    ],
    cases: Annotated[
        bool, typer.Option("--cases", help="Also show each validation case's Dice.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the comparison as JSON.")
    ] = None,
) -> None:
    """Compare training runs: best validation Dice, configuration differences, per-case Dice."""
    from radserve.cli.train import compare_command
    from radserve.training import TrainingError

    try:
        compare_command(runs, cases=cases, out=out)
    except TrainingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
