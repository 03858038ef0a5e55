"""The ``radserve`` command: the Typer app, with each command group's module registered."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from radserve.cli.deid import deid
from radserve.cli.demo_command import demo
from radserve.cli.extract_command import extract
from radserve.cli.seg_labels import seg_from_labels_command, seg_to_labels_command
from radserve.cli.series import convert, infer
from radserve.cli.serve import serve
from radserve.cli.train_commands import compare, evaluate, export, train
from radserve.cli.validate import validate_command
from radserve.cli.viewer import viewer

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


app.command()(convert)
app.command()(demo)
app.command()(deid)
app.command()(infer)
app.command()(serve)
app.command()(train)
app.command()(export)
app.command()(evaluate)
app.command()(compare)
app.command()(extract)
app.command("seg-from-labels")(seg_from_labels_command)
app.command("seg-to-labels")(seg_to_labels_command)
app.command("validate")(validate_command)
app.add_typer(viewer, name="viewer")
