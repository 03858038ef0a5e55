"""The ``radserve convert`` and ``infer`` commands: one image series in, files out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from radserve.cli.tables import print_measurements

if TYPE_CHECKING:
    from rich.console import Console

    from radserve.server import PipelineResult


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
    from radserve.radiomics import RadiomicsError, RadiomicsRunner, resolve_parameter_set
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
        _write_features(console, result, series_dir, series.volume.series_instance_uid, out)
    print_measurements(console, result.prediction.label_map, result.results.measurements)
    timings = result.prediction.timings
    console.print(
        f"{package.manifest.name} {package.manifest.version} on {result.prediction.provider}: "
        f"{timings.total_s:.2f} s (preprocess {timings.preprocess_s:.2f}, inference "
        f"{timings.inference_s:.2f}, postprocess {timings.postprocess_s:.2f})"
    )
    counts = ", ".join(f"{len(paths)} {kind}" for kind, paths in written.items())
    tables = " features.json, features.csv," if runner is not None else ""
    console.print(f"wrote labelmap.nii.gz,{tables} and {counts} to {out}")


def _write_features(
    console: Console,
    result: PipelineResult,
    series_dir: Path,
    series_uid: str | None,
    out: Path,
) -> None:
    """Write the radiomic features as features.json and features.csv and say how many."""
    from radserve.radiomics import CaseFeatures, write_csv, write_json

    case = CaseFeatures(
        case=series_uid or series_dir.name,
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
