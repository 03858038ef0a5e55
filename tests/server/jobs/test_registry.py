"""The model registry: every package loaded once, bad ones refused, turns shared."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from radserve.dicom_io import Volume
from radserve.inference import CPU, ModelNotFoundError, Prediction, RuntimeSettings
from radserve.server import ModelRegistry, ModelRegistryError, version_key
from tests.onnx_models import manifest_dict, threshold_model, write_package

CPU_ONLY = RuntimeSettings(providers=(CPU,), intra_op_threads=1)


def _package(root: Path, name: str, version: str) -> Path:
    model = threshold_model(0.5)
    return write_package(root, model, manifest_dict(model, name=name, version=version))


def test_every_version_is_loaded_and_names_resolve_to_the_newest(tmp_path: Path) -> None:
    for name, version in (("bone", "1.9.0"), ("bone", "1.10.0"), ("lung", "0.1.0")):
        _package(tmp_path, name, version)
    registry = ModelRegistry(tmp_path / "models", runtime=CPU_ONLY)
    assert [m.key for m in registry.models] == ["bone/1.9.0", "bone/1.10.0", "lung/0.1.0"]
    assert [m.key for m in registry.latest()] == ["bone/1.10.0", "lung/0.1.0"]
    assert registry.resolve("bone").version == "1.10.0"
    assert registry.resolve("bone/1.9.0").version == "1.9.0"
    assert {m.predictor.provider for m in registry.models} == {CPU}
    with pytest.raises(ModelNotFoundError, match=r"no model 'bone/2\.0\.0' is loaded \(loaded: "):
        registry.resolve("bone/2.0.0")
    assert version_key("1.10.0") > version_key("1.9.0")


def test_a_bad_package_stops_the_start_naming_folder_and_problem(tmp_path: Path) -> None:
    _package(tmp_path, "bone", "1.0.0")
    broken = _package(tmp_path, "lung", "1.0.0")
    (broken / "model.onnx").write_bytes(threshold_model(0.25))  # not the manifest's sha256
    with pytest.raises(ModelRegistryError, match=r"models/lung/1\.0\.0 cannot be loaded: .*sha256"):
        ModelRegistry(tmp_path / "models", runtime=CPU_ONLY)


def test_empty_or_malformed_models_folders_are_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "README.md").write_text("plain files are ignored")
    with pytest.raises(ModelRegistryError, match="no model package under"):
        ModelRegistry(models, runtime=CPU_ONLY)
    assert ModelRegistry(models, runtime=CPU_ONLY, require_models=False).models == ()
    (models / "bone").mkdir()
    with pytest.raises(ModelRegistryError, match="holds no <version>/ folder"):
        ModelRegistry(models, runtime=CPU_ONLY)


def test_predictions_wait_for_a_shared_turn(tmp_path: Path) -> None:
    _package(tmp_path, "bone", "1.0.0")
    _package(tmp_path, "lung", "1.0.0")
    registry = ModelRegistry(tmp_path / "models", runtime=CPU_ONLY, inference_concurrency=1)
    volume = Volume(
        array=np.linspace(-1000, 1000, 16 * 32 * 32, dtype=np.float32).reshape(16, 32, 32),
        spacing_mm=(1.0, 1.0, 1.0),
        origin_mm=(0.0, 0.0, 0.0),
        direction=np.eye(3),
    )
    results: list[Prediction] = []
    with registry.turn():  # another model's prediction holds the only turn
        thread = threading.Thread(
            target=lambda: results.append(registry.get("lung").predictor.predict(volume))
        )
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not results
    thread.join(30)
    assert len(results) == 1
    assert (results[0].label_map.volume.array == 1).sum() == (volume.array > 0).sum()
