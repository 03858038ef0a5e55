"""The ``radserve`` command: help everywhere, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from radserve.cli import app

runner = CliRunner()


def _command_names() -> list[str]:
    return sorted(get_command(app).commands)  # type: ignore[attr-defined]


def test_top_level_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in _command_names():
        assert name in result.output


@pytest.mark.parametrize("name", _command_names())
def test_every_command_has_help(name: str) -> None:
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert len(result.output.splitlines()) > 3


def test_convert_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["convert", str(tmp_path / "nope"), str(tmp_path / "o.nii.gz")])
    assert result.exit_code == 2
    assert "error" in result.output.lower()
    assert not (tmp_path / "o.nii.gz").exists()
