"""The ``radserve viewer`` commands: install the OHIF web viewer served at /viewer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

viewer = typer.Typer(help="The OHIF web viewer served at /viewer.", no_args_is_help=True)


@viewer.command("install")
def install(
    viewer_dir: Annotated[
        Path, typer.Argument(help="Folder to install into (then set RADSERVE_VIEWER_DIR).")
    ] = Path(".viewer"),
    tarball: Annotated[
        Path | None,
        typer.Option(help="Install from this downloaded @ohif/app tarball instead of npm."),
    ] = None,
    npm: Annotated[str, typer.Option(help="The npm executable.")] = "npm",
) -> None:
    """Download the pinned OHIF release with npm, check its integrity hash, install it."""
    from radserve.server import OHIF_VERSION, ViewerInstallError, install_viewer

    typer.echo(f"installing OHIF {OHIF_VERSION} into {viewer_dir} ...")
    try:
        install_viewer(viewer_dir, tarball=tarball, npm=npm)
    except ViewerInstallError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"OHIF {OHIF_VERSION} installed; serve it with RADSERVE_VIEWER_DIR={viewer_dir}")
