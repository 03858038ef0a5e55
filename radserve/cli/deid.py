"""The ``radserve deid`` command: de-identify DICOM files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


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
