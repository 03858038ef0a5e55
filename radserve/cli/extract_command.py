"""The ``radserve extract`` command: options in, :mod:`radserve.cli.extract` run, summary out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from radserve.radiomics import CaseFeatures


def extract(
    image: Annotated[
        Path | None, typer.Option(help="DICOM series folder, or NIfTI / NRRD image.")
    ] = None,
    mask: Annotated[
        Path | None, typer.Option(help="NIfTI / NRRD label map, DICOM SEG or RTSTRUCT.")
    ] = None,
    cases: Annotated[
        Path | None,
        typer.Option(help="Batch: CSV of cases with columns Case, Image, Mask (and Label)."),
    ] = None,
    params: Annotated[
        str, typer.Option(help="Parameter set: a name in configs/radiomics or a YAML path.")
    ] = "default",
    out: Annotated[
        Path | None,
        typer.Option(help="Feature table: .csv (PyRadiomics batch layout) or .json."),
    ] = None,
    label: Annotated[
        list[int] | None, typer.Option(help="Label to extract (repeat); default: every one.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: every core).")
    ] = None,
    modality: Annotated[
        str | None, typer.Option(help="Modality of a NIfTI / NRRD image (CT: HU units).")
    ] = None,
    diagnostics: Annotated[
        bool, typer.Option("--diagnostics", help="Add PyRadiomics' diagnostics columns.")
    ] = False,
) -> None:
    """Extract PyRadiomics features per segment, for one image and mask or a batch."""
    from rich.console import Console

    from radserve.cli.extract import extract_command, summary
    from radserve.radiomics import RadiomicsError

    console = Console()
    if (cases is None) == (image is None or mask is None):
        typer.echo("error: give --image and --mask, or --cases", err=True)
        raise typer.Exit(code=2)
    try:
        if cases is not None:
            results = _extract_batch(
                console, cases, out, params, workers, diagnostics=diagnostics, modality=modality
            )
        else:
            if image is None or mask is None:
                raise typer.Exit(code=2)
            with console.status("extracting features..."):
                results = [
                    extract_command(
                        image,
                        mask,
                        params=params,
                        out=out,
                        labels=label,
                        workers=workers,
                        diagnostics=diagnostics,
                        modality=modality,
                    )
                ]
    except RadiomicsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    for line in summary(results):
        console.print(line, highlight=False, markup=False)
    if out is not None:
        console.print(f"wrote {out}")
    if any(r.error is not None for r in results):
        raise typer.Exit(code=1)


def _extract_batch(
    console: Console,
    cases: Path,
    out: Path | None,
    params: str,
    workers: int | None,
    *,
    diagnostics: bool,
    modality: str | None,
) -> list[CaseFeatures]:
    """Extract every case of the batch CSV into the table at ``out``, showing progress."""
    from rich.progress import Progress

    from radserve.cli.extract import extract_batch_command

    if out is None:
        typer.echo("error: a batch needs --out", err=True)
        raise typer.Exit(code=2)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("extracting", total=None)
        return extract_batch_command(
            cases,
            out=out,
            params=params,
            workers=workers,
            diagnostics=diagnostics,
            modality=modality,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
