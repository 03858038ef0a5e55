"""The ``radserve demo`` command: the main job end to end on the bundled study."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from radserve.cli.tables import print_measurements

if TYPE_CHECKING:
    from rich.console import Console

    from radserve.cli.server_demo import ServerDemoOptions


def demo(
    study_dir: Annotated[
        Path, typer.Argument(help="Study folder with image/ (CT series) and an RTSTRUCT.")
    ] = Path("demo/study"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-output"),
    models_dir: Annotated[
        Path, typer.Option("--models-dir", help="Model packages the demo server loads.")
    ] = Path("models"),
    viewer_dir: Annotated[
        Path | None,
        typer.Option(help="Installed OHIF viewer (radserve viewer install) to show results in."),
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Afterwards, keep serving the results (and the viewer) until Ctrl-C."
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the --serve server.")] = 8000,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="No server and no model: run the DICOM steps on the study's own RTSTRUCT.",
        ),
    ] = False,
) -> None:
    """Run the main job end to end on the bundled study and show what it produced.

    By default: start a real server, send the study over STOW-RS, wait for the routed job,
    fetch the SEG and SR over WADO-RS, and compare the model with the radiologist's contour.
    With --serve, the results stay served (at --port), with the viewer if --viewer-dir.
    """
    if offline or not any(models_dir.glob("*/*/manifest.yaml")):
        if not offline:
            typer.echo(f"no model package under {models_dir}: running the offline DICOM demo")
        _offline_demo(study_dir, out)
        return
    from radserve.cli.server_demo import ServerDemoOptions

    result_dir = _server_demo(
        study_dir, out, ServerDemoOptions(models_dir=models_dir, viewer_dir=viewer_dir)
    )
    if viewer_dir is not None:
        url = f"http://127.0.0.1:{port}/viewer/viewer?StudyInstanceUIDs={result_dir[1]}"
        typer.echo(f"Viewer: {url}")
        if not serve:
            typer.echo("  (to open it, run the demo with --serve: `make demo-serve`)")
    if serve:
        _serve_results(result_dir[0], models_dir, viewer_dir, port)


def _serve_results(data_dir: Path, models_dir: Path, viewer_dir: Path | None, port: int) -> None:
    """Serve the demo's store until Ctrl-C, with a one-off token to log in with."""
    import secrets

    from radserve.server import load_settings
    from radserve.server import serve as run_server

    token = secrets.token_urlsafe(24)
    typer.echo(f"Serving the results at http://127.0.0.1:{port}/ until Ctrl-C.")
    typer.echo(f"Log in (viewer) or authenticate (API: 'Authorization: Bearer ...') with: {token}")
    settings = load_settings(
        data_dir=data_dir,
        models_dir=models_dir,
        viewer_dir=viewer_dir,
        port=port,
        dev_token=token,
        routing_enabled=False,
    )
    run_server(settings)


def _server_demo(study_dir: Path, out: Path, options: ServerDemoOptions) -> tuple[Path, str]:
    """Run the server demo and print its report; the kept data folder and the study's UID."""
    from rich.console import Console
    from rich.table import Table

    from radserve.cli.server_demo import DemoError, run_server_demo
    from radserve.dicom_io import DicomIOError

    console = Console()
    try:
        with console.status("starting the demo...") as status:
            result = run_server_demo(study_dir, out, options, progress=lambda m: status.update(m))
    except (DemoError, DicomIOError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    job = result.job
    console.print(
        f"job {job['id']}: {job['model']['name']} {job['model']['version']} on "
        f"{job['provider']}, STOW {result.stow_s:.2f} s, job {result.job_s:.2f} s"
    )
    stages = Table(title="Job stages (s)")
    for stage in job["timings_s"]:
        stages.add_column(stage.removesuffix("_s"), justify="right")
    stages.add_row(*(f"{v:.2f}" for v in job["timings_s"].values()))
    console.print(stages)
    table = Table(title="Segments (from the SR fetched over WADO-RS)")
    table.add_column("segment")
    for column in ("volume (ml)", "mean HU", "min HU", "max HU"):
        table.add_column(column, justify="right")
    for name, values in result.sr_measurements.items():
        table.add_row(
            name,
            f"{values.get('Volume', float('nan')) / 1000:.2f}",
            *(
                f"{values.get(f'Attenuation Coefficient ({d})', float('nan')):.1f}"
                for d in ("Mean", "Minimum", "Maximum")
            ),
        )
    console.print(table)
    _print_radiomics(console, result.features, result.features_csv)
    if result.dice_vs_reference is not None:
        console.print(
            f"Dice of the model's mask against the radiologist's contour (RTSTRUCT): "
            f"{result.dice_vs_reference:.3f}"
        )
    console.print(f"SEG and SR: {out}/seg.dcm, {out}/sr.dcm; key slice overlay: {result.png}")
    return result.data_dir, result.study_instance_uid


# A few radiomic features of the original image to show; the rest are in the table.
_HEADLINE_FEATURES = (
    ("original_shape_Sphericity", "sphericity", "{:.3f}"),
    ("original_shape_Maximum3DDiameter", "max 3D diameter (mm)", "{:.1f}"),
    ("original_firstorder_Entropy", "entropy", "{:.2f}"),
    ("original_glcm_Contrast", "GLCM contrast", "{:.2f}"),
    ("original_glszm_ZoneEntropy", "GLSZM zone entropy", "{:.2f}"),
)


def _print_radiomics(
    console: Console, segments: list[dict[str, Any]], csv_path: Path | None
) -> None:
    from rich.table import Table

    if not segments:
        return
    table = Table(title="Radiomic features (a few of them; all are in the SR and the table)")
    table.add_column("segment")
    table.add_column("features", justify="right")
    for _, heading, _ in _HEADLINE_FEATURES:
        table.add_column(heading, justify="right")
    for segment in segments:
        values = {f["name"]: f["value"] for f in segment["features"]}
        table.add_row(
            str(segment["segment"]),
            str(len(values)),
            *(
                fmt.format(values[name]) if name in values else "-"
                for name, _, fmt in _HEADLINE_FEATURES
            ),
        )
    console.print(table)
    if csv_path is not None:
        console.print(f"Feature table (PyRadiomics batch CSV): {csv_path}")


def _offline_demo(study_dir: Path, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from radserve.cli.demo import run_demo
    from radserve.dicom_io import DicomIOError

    console = Console()
    try:
        with console.status("running the DICOM pipeline on the study..."):
            result = run_demo(study_dir, out)
    except DicomIOError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc

    print_measurements(console, result.labelmap, result.measurements)

    files = Table(title=f"Written to {out}")
    files.add_column("object")
    files.add_column("files", justify="right")
    files.add_column("dciodvfy errors", justify="right")
    for kind, paths in result.written.items():
        errors = result.validator_errors
        files.add_row(kind, str(len(paths)), "n/a" if errors is None else str(errors[kind]))
    console.print(files)
    status = "identical" if result.seg_round_trip_equal else "DIFFERENT"
    console.print(f"SEG read back onto the CT grid: mask {status} to the source mask")
    console.print(f"key slice overlay: {result.png}")
    failed = not result.seg_round_trip_equal or (
        result.validator_errors is not None and any(result.validator_errors.values())
    )
    if failed:
        raise typer.Exit(code=1)
