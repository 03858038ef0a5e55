"""The ``radserve`` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="radserve: DICOMweb AI inference server for radiology.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
) -> None:
    """radserve: DICOMweb AI inference server for radiology."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def convert(
    series_dir: Annotated[Path, typer.Argument(help="Folder, file or zip holding one series.")],
    out: Annotated[Path, typer.Argument(help="Output NIfTI file (.nii or .nii.gz).")],
) -> None:
    """Convert one DICOM image series to NIfTI with a correct affine."""
    from radserve.dicom_io.errors import DicomIOError
    from radserve.dicom_io.series import read_series

    try:
        volume = read_series(series_dir)
    except DicomIOError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    volume.write_nifti(out)
    typer.echo(f"wrote {out} ({volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]} voxels)")
