"""The ``radserve`` command."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from radserve.cli.seg_labels import seg_from_labels_command, seg_to_labels_command
from radserve.cli.validate import validate_command

if TYPE_CHECKING:
    from rich.console import Console

    from radserve.dicom_io import LabelMap, SegmentMeasurements

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
    # Libraries (highdicom, pydicom) log at INFO per attribute copied: keep them to warnings.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("radserve").setLevel(logging.DEBUG if verbose else logging.INFO)


@app.command()
def convert(
    series_dir: Annotated[Path, typer.Argument(help="Folder, file or zip holding one series.")],
    out: Annotated[Path, typer.Argument(help="Output NIfTI file (.nii or .nii.gz).")],
) -> None:
    """Convert one DICOM image series to NIfTI with a correct affine."""
    from radserve.dicom_io import DicomIOError, read_series

    try:
        volume = read_series(series_dir)
    except DicomIOError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    volume.write_nifti(out)
    typer.echo(f"wrote {out} ({volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]} voxels)")


def _print_measurements(
    console: Console, labelmap: LabelMap, measurements: Sequence[SegmentMeasurements]
) -> None:
    from rich.table import Table

    if not measurements:
        searched = ", ".join(s.name for s in labelmap.segments)
        console.print(f"No findings: no segment found ({searched}).")
        return
    names = {s.label: s.name for s in labelmap.segments}
    table = Table(title="Segments")
    for column in ("segment", "voxels", "volume (ml)", "mean", "min", "max", "std"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for m in measurements:
        table.add_row(
            names[m.label],
            str(m.voxel_count),
            f"{m.volume_mm3 / 1000:.2f}",
            f"{m.mean:.1f}",
            f"{m.minimum:.0f}",
            f"{m.maximum:.0f}",
            f"{m.std:.1f}",
        )
    console.print(table)


@app.command()
def demo(
    study_dir: Annotated[
        Path, typer.Argument(help="Study folder with image/ (CT series) and an RTSTRUCT.")
    ] = Path("demo/study"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-output"),
    models_dir: Annotated[
        Path, typer.Option("--models-dir", help="Model packages the demo server loads.")
    ] = Path("models"),
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
    """
    if offline or not any(models_dir.glob("*/*/manifest.yaml")):
        if not offline:
            typer.echo(f"no model package under {models_dir}: running the offline DICOM demo")
        _offline_demo(study_dir, out)
        return
    _server_demo(study_dir, out, models_dir)


def _server_demo(study_dir: Path, out: Path, models_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from radserve.cli.server_demo import DemoError, run_server_demo
    from radserve.dicom_io import DicomIOError

    console = Console()
    try:
        with console.status("starting the demo...") as status:
            result = run_server_demo(
                study_dir, out, models_dir=models_dir, progress=lambda m: status.update(m)
            )
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

    _print_measurements(console, result.labelmap, result.measurements)

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


@app.command()
def deid(
    inputs: Annotated[Path, typer.Argument(help="DICOM file, folder or zip to de-identify.")],
    out: Annotated[Path, typer.Argument(help="Output folder (study/series/instance.dcm).")],
    salt: Annotated[
        str | None,
        typer.Option(
            "--salt",
            envvar="RADSERVE_DEID_SALT",
            show_envvar=True,
            help="Secret (16+ characters) keying UIDs, pseudonyms and date shifts.",
        ),
    ] = None,
    retain_uids: Annotated[bool, typer.Option(help="Retain UIDs Option.")] = False,
    modified_dates: Annotated[
        bool, typer.Option(help="Retain Longitudinal Temporal Information, Modified Dates.")
    ] = False,
    full_dates: Annotated[
        bool, typer.Option(help="Retain Longitudinal Temporal Information, Full Dates.")
    ] = False,
    patient_characteristics: Annotated[
        bool, typer.Option(help="Retain Patient Characteristics Option.")
    ] = False,
    device_identity: Annotated[bool, typer.Option(help="Retain Device Identity Option.")] = False,
    institution_identity: Annotated[
        bool, typer.Option(help="Retain Institution Identity Option.")
    ] = False,
    clean_descriptors: Annotated[bool, typer.Option(help="Clean Descriptors Option.")] = False,
) -> None:
    """De-identify DICOM (PS3.15 Basic Application Level Confidentiality Profile)."""
    from radserve.dicom_io import DeidOptions, DicomIOError, deidentify_files, resolve_salt

    try:
        options = DeidOptions(
            salt=resolve_salt(salt),
            retain_uids=retain_uids,
            retain_longitudinal_modified_dates=modified_dates,
            retain_longitudinal_full_dates=full_dates,
            retain_patient_characteristics=patient_characteristics,
            retain_device_identity=device_identity,
            retain_institution_identity=institution_identity,
            clean_descriptors=clean_descriptors,
        )
        report = deidentify_files(inputs, out, options=options)
    except DicomIOError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(
        f"wrote {len(report.written)} instance(s) in {report.series} series of "
        f"{report.studies} study(ies) to {out}"
    )
    for skipped in report.skipped:
        typer.echo(f"skipped {skipped.name}: {skipped.reason}", err=True)
    if report.burned_in_annotation:
        typer.echo(
            f"warning: {report.burned_in_annotation} instance(s) flagged with burned-in "
            "annotation; pixel data was not cleaned",
            err=True,
        )
    if not report.written:
        raise typer.Exit(code=1)


@app.command()
def infer(
    series_dir: Annotated[Path, typer.Argument(help="Folder, file or zip holding one series.")],
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Model package folder models/<name>/<version>.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            help="ONNX Runtime execution provider, in priority order (repeatable). "
            "Default: TensorRT, CUDA, CPU, whichever are available.",
        ),
    ] = None,
    threads: Annotated[
        int, typer.Option(help="Intra-op threads for ONNX Runtime (0: one per core).")
    ] = 0,
    no_radiomics: Annotated[
        bool,
        typer.Option(
            "--no-radiomics",
            help="Skip the radiomic features of the manifest's radiomics_parameter_set.",
        ),
    ] = False,
) -> None:
    """Segment one series with a model package; write the label map, SEG, SR and overlay.

    When the manifest names a radiomics parameter set, the SR carries each segment's radiomic
    features and features.json + features.csv are written too (unless --no-radiomics).
    """
    from rich.console import Console

    from radserve.dicom_io import DicomIOError, read_image_series
    from radserve.inference import InferenceError, Predictor, RuntimeSettings, load_model_package
    from radserve.radiomics import (
        CaseFeatures,
        RadiomicsError,
        RadiomicsRunner,
        resolve_parameter_set,
        write_csv,
        write_json,
    )
    from radserve.server import run_pipeline

    console = Console()
    try:
        package = load_model_package(model)
        reference = package.manifest.radiomics_parameter_set
        runner = None
        if reference is not None and not no_radiomics:
            runner = RadiomicsRunner(resolve_parameter_set(package.directory, reference))
        settings = RuntimeSettings(intra_op_threads=threads)
        if provider:
            settings = RuntimeSettings(providers=tuple(provider), intra_op_threads=threads)
        predictor = Predictor(package, runtime=settings)
        series = read_image_series(series_dir)
        with console.status(f"segmenting with {package.manifest.name} on {predictor.provider}..."):
            result = run_pipeline(series, predictor, radiomics=runner)
    except (DicomIOError, InferenceError, RadiomicsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    out.mkdir(parents=True, exist_ok=True)
    result.prediction.label_map.volume.write_nifti(out / "labelmap.nii.gz")
    written = result.results.save(out)
    if runner is not None:
        case = CaseFeatures(
            case=series.volume.series_instance_uid or series_dir.name,
            image=str(series_dir),
            mask=str(out / "labelmap.nii.gz"),
            segments=result.features,
        )
        write_json([case], out / "features.json")
        write_csv([case], out / "features.csv")
        console.print(
            f"radiomics {result.parameter_set}: "
            f"{sum(len(s.features) for s in result.features)} features of "
            f"{len(result.features)} segments in {result.radiomics_s:.2f} s"
        )
    _print_measurements(console, result.prediction.label_map, result.results.measurements)
    timings = result.prediction.timings
    console.print(
        f"{package.manifest.name} {package.manifest.version} on {result.prediction.provider}: "
        f"{timings.total_s:.2f} s (preprocess {timings.preprocess_s:.2f}, inference "
        f"{timings.inference_s:.2f}, postprocess {timings.postprocess_s:.2f})"
    )
    counts = ", ".join(f"{len(paths)} {kind}" for kind, paths in written.items())
    tables = " features.json, features.csv," if runner is not None else ""
    console.print(f"wrote labelmap.nii.gz,{tables} and {counts} to {out}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder of the instance store and job state.")
    ] = None,
    models_dir: Annotated[Path | None, typer.Option(help="Folder of the model packages.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML settings file (default: $RADSERVE_CONFIG).")
    ] = None,
) -> None:
    """Run the DICOMweb server. Settings: options, then RADSERVE_* variables, then the YAML file."""
    from radserve.server import QueueError, SettingsError, StoreError, load_settings
    from radserve.server import serve as run_server

    options = {"host": host, "port": port, "data_dir": data_dir, "models_dir": models_dir}
    try:
        settings = load_settings(config, **{k: v for k, v in options.items() if v is not None})
        run_server(settings)
    except (SettingsError, StoreError, QueueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
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
    from rich.progress import Progress

    from radserve.cli.extract import extract_batch_command, extract_command, summary
    from radserve.radiomics import RadiomicsError

    console = Console()
    if (cases is None) == (image is None or mask is None):
        typer.echo("error: give --image and --mask, or --cases", err=True)
        raise typer.Exit(code=2)
    try:
        if cases is not None:
            if out is None:
                typer.echo("error: a batch needs --out", err=True)
                raise typer.Exit(code=2)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("extracting", total=None)
                results = extract_batch_command(
                    cases,
                    out=out,
                    params=params,
                    workers=workers,
                    diagnostics=diagnostics,
                    modality=modality,
                    progress=lambda done, total: progress.update(task, completed=done, total=total),
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


app.command("seg-from-labels")(seg_from_labels_command)
app.command("seg-to-labels")(seg_to_labels_command)
app.command("validate")(validate_command)
