"""``radserve compare``: training runs side by side, from a real (tiny) run's folder."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from radserve.cli import app
from radserve.training import (
    BEST,
    CONFIG,
    LAST,
    MAX_CONFIG_BYTES,
    MAX_LINE_BYTES,
    METRICS,
    TrainingError,
    config_differences,
    read_run,
)
from tests.training.conftest import TinyRun

runner = CliRunner()


def _copy_run(tiny_run: TinyRun, target: Path) -> Path:
    shutil.copytree(tiny_run.result.output_dir, target)
    return target


def test_a_run_reads_as_training_reported_it(tiny_run: TinyRun) -> None:
    out = tiny_run.result.output_dir
    assert (out / CONFIG).read_text(encoding="utf-8") == tiny_run.loaded.text
    run = read_run(out)
    result = tiny_run.result
    assert (run.best_dice, run.best_epoch) == (result.best_dice, result.best_epoch)
    assert dict(run.case_dice) == result.validation_dice
    assert run.epochs_run == result.epochs_run == run.epochs_configured
    assert run.config == yaml.safe_load(tiny_run.loaded.text)
    assert run.train_s > 0


def test_differences_between_runs_and_a_run_without_config_yaml(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    old = _copy_run(tiny_run, tmp_path / "old")
    (old / CONFIG).unlink()  # runs from before config.yaml: the checkpoint has it
    changed = _copy_run(tiny_run, tmp_path / "changed")
    config = yaml.safe_load((changed / CONFIG).read_text(encoding="utf-8"))
    config["network"]["dropout"] = 0.25
    config["output_dir"] = "elsewhere"  # differs in every pair of runs: not shown
    (changed / CONFIG).write_text(yaml.safe_dump(config), encoding="utf-8")

    runs = [read_run(old), read_run(changed)]
    assert runs[0].config == yaml.safe_load(tiny_run.loaded.text)
    dropout = yaml.safe_load(tiny_run.loaded.text)["network"].get("dropout")
    assert config_differences(runs) == [("network.dropout", [dropout, 0.25])]

    for name in (BEST, LAST):
        (old / name).unlink()
    assert read_run(old).config is None  # still compared on its metrics
    assert read_run(old).best_dice == tiny_run.result.best_dice


def test_a_resumed_epoch_counts_once_with_its_latest_record(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    run = _copy_run(tiny_run, tmp_path / "run")
    lines = (run / METRICS).read_text(encoding="utf-8").splitlines()
    again = json.loads(lines[-1])
    again["val_dice"] = 0.999
    (run / METRICS).write_text("\n".join([*lines, json.dumps(again)]) + "\n", encoding="utf-8")
    summary = read_run(run)
    assert summary.epochs_run == len(lines)
    assert (summary.best_dice, summary.best_epoch) == (0.999, again["epoch"])


def test_a_partial_last_line_is_ignored_with_a_warning(
    tiny_run: TinyRun, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _copy_run(tiny_run, tmp_path / "run")
    with (run / METRICS).open("a", encoding="utf-8") as stream:
        stream.write('{"epoch": 3, "loss": 0.5, "val_d')  # killed while writing
    with caplog.at_level(logging.WARNING):
        summary = read_run(run)
    assert summary.epochs_run == tiny_run.result.epochs_run
    assert "partial last line" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"epoch": 1}\nnot json\n{"epoch": 2}\n', r"metrics.jsonl:2: not valid JSON"),
        (b'{"epoch": 1}\n[1, 2]\n', r"metrics.jsonl:2: not an epoch record"),
        (b'{"loss": 0.5}\n', r"metrics.jsonl:1: not an epoch record"),
        (b'{"epoch": 0}\n', r"metrics.jsonl:1: not an epoch record"),
        (b'{"epoch": true}\n', r"metrics.jsonl:1: not an epoch record"),
        (b'{"epoch": 1, "name": "\xff\xfe"}\n', r"metrics.jsonl:1: not UTF-8 text"),
        (b'{"epoch": 1, "pad": "' + b"x" * MAX_LINE_BYTES + b'"}\n', r"1: line longer than"),
    ],
)
def test_malformed_metrics_are_refused_with_file_and_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / METRICS).write_bytes(content)
    with pytest.raises(TrainingError, match=message):
        read_run(tmp_path)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="not a run folder"):
        read_run(tmp_path / "missing")
    with pytest.raises(TrainingError, match=r"metrics.jsonl: no such file"):
        read_run(tmp_path)
    (tmp_path / METRICS).write_text('{"epoch": 1}\n', encoding="utf-8")
    (tmp_path / CONFIG).write_text("a: [\n", encoding="utf-8")
    with pytest.raises(TrainingError, match=r"config\.yaml: not valid YAML"):
        read_run(tmp_path)
    (tmp_path / CONFIG).write_text("- a list\n", encoding="utf-8")
    with pytest.raises(TrainingError, match="not a mapping"):
        read_run(tmp_path)
    (tmp_path / CONFIG).write_text("optim: 5\nnetwork: [1]\n", encoding="utf-8")
    assert read_run(tmp_path).epochs_configured is None  # odd, but still comparable
    (tmp_path / CONFIG).write_bytes(b"a: " + b"x" * MAX_CONFIG_BYTES + b"\n")
    with pytest.raises(TrainingError, match="larger than"):
        read_run(tmp_path)


def test_metrics_without_a_validation_compare_as_not_validated(tmp_path: Path) -> None:
    (tmp_path / METRICS).write_text('{"epoch": 1, "loss": 1.2, "epoch_s": 9.5}\n')
    run = read_run(tmp_path)
    assert (run.best_dice, run.best_epoch, run.last_dice, run.case_dice) == (None, None, None, {})
    assert (run.epochs_run, run.train_s) == (1, 9.5)


def test_the_command_prints_and_writes_the_comparison(tiny_run: TinyRun, tmp_path: Path) -> None:
    other = _copy_run(tiny_run, tmp_path / "other")
    out = tmp_path / "comparison.json"
    result = runner.invoke(
        app,
        ["compare", str(tiny_run.result.output_dir), str(other), "--cases", "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "same configuration" in result.output
    assert "STS_002" in result.output  # the per-case table
    assert f"{tiny_run.result.best_dice:.3f}" in result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert [r["best_dice"] for r in document["runs"]] == [tiny_run.result.best_dice] * 2
    assert document["differences"] == {}

    refused = runner.invoke(app, ["compare", str(tmp_path / "nope")])
    assert refused.exit_code == 2
    assert "error:" in refused.output and "not a run folder" in refused.output
