"""End to end: tiny training, checkpoints, resume, export, ONNX parity, the served package."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from radserve.inference import Predictor, RuntimeSettings, load_model_package
from radserve.training import (
    CONFIG_FILE,
    LAST,
    METRICS,
    ExportError,
    LoadedConfig,
    load_checkpoint,
    read_cases,
    read_datalist,
    restore,
    train,
    verify_onnx,
)
from tests.training.conftest import TinyRun


def test_training_writes_metrics_and_safe_checkpoints(tiny_run: TinyRun) -> None:
    out = tiny_run.result.output_dir
    records = [json.loads(line) for line in (out / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(np.isfinite(r["loss"]) and 0.0 <= r["val_dice"] <= 1.0 for r in records)
    assert set(records[-1]["val_dice_cases"]) == {"STS_002"}  # forced into validation
    checkpoint = torch.load(out / LAST, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 2
    assert checkpoint["config_yaml"] == tiny_run.loaded.text
    assert checkpoint["validation_cases"] == ["STS_002"]
    assert tiny_run.result.best_dice == max(r["val_dice"] for r in records)


def test_resume_continues_exactly(
    tiny_run: TinyRun, tiny_config: Callable[..., LoadedConfig]
) -> None:
    first = tiny_config("optim.epochs=1")
    train(first)
    # Same output folder, two epochs: continues from the one-epoch checkpoint.
    second = tiny_config(f"output_dir={first.config.output_dir}")
    result = train(second, resume=True)
    assert result.epochs_run == 2
    records = [json.loads(line) for line in (result.output_dir / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    resumed = load_checkpoint(result.output_dir / LAST)["model"]
    straight = load_checkpoint(tiny_run.result.output_dir / LAST)["model"]
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-5)


def test_resume_without_checkpoint_fails(tiny_config: Callable[..., LoadedConfig]) -> None:
    from radserve.training import TrainingError

    with pytest.raises(TrainingError, match="no checkpoint"):
        train(tiny_config(), resume=True)


def test_export_writes_a_package_the_server_accepts(tiny_run: TinyRun) -> None:
    package_dir = tiny_run.export.directory
    assert sorted(p.name for p in package_dir.iterdir()) == [
        "MODEL_CARD.md",
        "manifest.yaml",
        "model.onnx",
        CONFIG_FILE,
    ]
    package = load_model_package(package_dir)
    manifest = package.manifest
    assert manifest.labels[0].category.value == "49755003"
    assert manifest.labels[0].type.value == "108369006"
    assert manifest.radiomics_parameter_set == "default"
    assert manifest.provenance.intended_use == "research use; not for diagnostic use"
    assert "CC BY 3.0" in manifest.provenance.dataset
    metrics = manifest.provenance.validation_metrics
    assert 0.0 <= metrics["dice_mean"] <= 1.0
    assert metrics["onnx_argmax_agreement"] >= 0.999
    assert (package_dir / CONFIG_FILE).read_text() == tiny_run.loaded.text
    assert manifest.provenance.training_config_sha256 == tiny_run.loaded.sha256
    card = (package_dir / "MODEL_CARD.md").read_text()
    assert "## Validation" in card
    assert "a run configured for 2 epochs" in card

    cases, _ = read_cases(
        read_datalist(tiny_run.loaded.resolve(tiny_run.loaded.config.data.datalist)),
        skip_bad_cases=False,
        max_label=1,
    )
    prediction = Predictor(package, runtime=RuntimeSettings(providers=("CPUExecutionProvider",)))
    label_map = prediction.predict(cases[0].image).label_map
    assert label_map.volume.array.shape == cases[0].image.shape
    assert set(np.unique(label_map.volume.array)) <= {0, 1}


def test_onnx_has_dynamic_axes_and_matches_pytorch(tiny_run: TinyRun) -> None:
    model = onnx.load(str(tiny_run.export.directory / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    _, _, network = restore(tiny_run.result.best_checkpoint)
    session = ort.InferenceSession(
        str(tiny_run.export.directory / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    # Neither the export's example patch (16, 16, 8) nor batch size 1.
    image = np.random.default_rng(0).random((3, 1, 20, 12, 16), dtype=np.float32)
    actual = session.run(None, {"image": image})[0]
    with torch.no_grad():
        expected = network(torch.from_numpy(image)).numpy()
    assert actual.shape == (3, 2, 20, 12, 16)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_tampered_export_fails_verification(tiny_run: TinyRun, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_run.export.directory / "model.onnx"))
    weights = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(weights)
    weights.CopyFrom(numpy_helper.from_array(-values * 5.0, weights.name))
    tampered = tmp_path / "model.onnx"
    onnx.save(model, str(tampered))
    _, _, network = restore(tiny_run.result.best_checkpoint)
    image = np.random.default_rng(1).random((1, 24, 24, 16), dtype=np.float32)
    with pytest.raises(ExportError, match="arg-max agreement"):
        verify_onnx(network, tampered, [image])
    report = verify_onnx(network, tiny_run.export.directory / "model.onnx", [image])
    assert report.argmax_agreement >= 0.999 and report.max_abs_logit_diff < 1e-3


def test_export_refuses_a_folder_not_named_name_version(tiny_run: TinyRun, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"tiny-smoke/0\.0\.1"):
        from radserve.training import export_package

        export_package(tiny_run.result.best_checkpoint, tmp_path / "wrong" / "1.0.0")
