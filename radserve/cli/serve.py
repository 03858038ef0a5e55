"""The ``radserve serve`` command: run the DICOMweb server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder of the instance store and job state.")
    ] = None,
    models_dir: Annotated[Path | None, typer.Option(help="Folder of the model packages.")] = None,
    viewer_dir: Annotated[
        Path | None, typer.Option(help="Installed OHIF viewer to serve at /viewer.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML settings file (default: $RADSERVE_CONFIG).")
    ] = None,
) -> None:
    """Run the DICOMweb server. Settings: options, then RADSERVE_* variables, then the YAML file."""
    from radserve.server import QueueError, SettingsError, StoreError, load_settings
    from radserve.server import serve as run_server

    options = {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "models_dir": models_dir,
        "viewer_dir": viewer_dir,
    }
    try:
        settings = load_settings(config, **{k: v for k, v in options.items() if v is not None})
        run_server(settings)
    except (SettingsError, StoreError, QueueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
