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


def test_deid_refuses_to_run_without_a_salt(
    tmp_path: Path, demo_study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RADSERVE_DEID_SALT", raising=False)
    result = runner.invoke(app, ["deid", str(demo_study), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "salt" in result.output.lower()
    assert not any((tmp_path / "out").rglob("*.dcm"))


def test_deid_writes_every_instance_of_the_study(tmp_path: Path, demo_study: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["deid", str(demo_study), str(out), "--salt", "a-long-enough-secret-salt"]
    )
    assert result.exit_code == 0, result.output
    n_inputs = len(list(demo_study.rglob("*.dcm")))
    assert len(list(out.rglob("*.dcm"))) == n_inputs
    assert f"wrote {n_inputs} instance(s) in 2 series of 1 study(ies)" in result.output
